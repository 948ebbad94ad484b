"""The queue in front of local generation (issue 19): a bounded number run, a bounded number
wait, the rest are refused at once, and the line's length is reported (also by /readyz)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from keel.models.local_queue import GenerationQueue, LocalQueueFullError, local_generations
from keel.models.local_queue import queue as process_queue


async def _until(predicate) -> None:
    for _ in range(6000):  # a guard against a hang (a queue that never fills), not a timing check
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the queue never reached the expected state")


def test_the_queue_runs_one_keeps_a_bounded_line_in_order_and_refuses_the_rest() -> None:
    q = GenerationQueue(concurrency=1, max_waiting=2)
    order: list[str] = []

    async def main() -> None:
        release = {name: asyncio.Event() for name in "abc"}

        async def job(name: str) -> None:
            async with q.slot():
                order.append(name)
                await release[name].wait()

        a = asyncio.create_task(job("a"))
        await _until(lambda: q.stats()["running"] == 1)
        b = asyncio.create_task(job("b"))
        await _until(lambda: q.stats()["waiting"] == 1)
        c = asyncio.create_task(job("c"))
        await _until(lambda: q.stats()["waiting"] == 2)
        assert q.stats() == {"running": 1, "waiting": 2, "concurrency": 1, "max_waiting": 2}
        with pytest.raises(LocalQueueFullError) as refused:  # the line is full: refused at once
            async with q.slot("local model m.gguf"):
                pass
        assert "1 local generations are running and 2 are waiting" in refused.value.message
        assert "KEEL_LOCAL_QUEUE" in refused.value.hint and refused.value.status_code == 429
        assert order == ["a"]
        for name, task in (("a", a), ("b", b), ("c", c)):
            release[name].set()
            await task
        assert order == ["a", "b", "c"]  # first come, first served
        assert q.stats()["running"] == 0 and q.stats()["waiting"] == 0

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_the_line_without_taking_a_slot() -> None:
    q = GenerationQueue(concurrency=1, max_waiting=4)

    async def main() -> None:
        hold = asyncio.Event()

        async def holder() -> None:
            async with q.slot():
                await hold.wait()

        async def waiter() -> None:
            async with q.slot():
                pass

        first = asyncio.create_task(holder())
        await _until(lambda: q.stats()["running"] == 1)
        gone = asyncio.create_task(waiter())
        await _until(lambda: q.stats()["waiting"] == 1)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert q.stats()["waiting"] == 0
        hold.set()
        await first
        assert q.stats()["running"] == 0
        async with q.slot():  # the slot is free again
            assert q.stats()["running"] == 1

    asyncio.run(main())


def test_local_model_generations_wait_in_the_queue_and_readyz_reports_it(tmp_path, monkeypatch) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    pytest.importorskip("tokenizers")
    from keel.models._retry import RetryPolicy
    from keel.models.local import LocalModel
    from keel.models.types import ModelSettings, TextDelta
    from keel.testing._tiny_gguf import write_tiny_gguf

    monkeypatch.setattr(process_queue, "concurrency", 1)
    monkeypatch.setattr(process_queue, "max_waiting", 1)
    path = write_tiny_gguf(tmp_path / "tiny.gguf", seed=0)
    model = LocalModel(str(path), retry=RetryPolicy(max_attempts=1))
    settings = ModelSettings(max_tokens=16, seed=3)

    async def main() -> None:
        # A streams its first words and is held there (its consumer reads no further): it
        # keeps the only slot, so B waits in line and C is refused.
        a = model.generate("Say something", stream=True, settings=settings).__aiter__()
        assert isinstance(await a.__anext__(), TextDelta)
        assert local_generations()["running"] == 1
        async def second():
            return await model.generate("Say something else", settings=settings)

        b = asyncio.create_task(second())
        await _until(lambda: local_generations()["waiting"] == 1)
        with pytest.raises(LocalQueueFullError):
            await model.generate("And a third thing", settings=settings)
        assert not b.done()
        # /readyz of the server in this process reports the line
        from starlette.testclient import TestClient

        from keel.operate.server.app import create_app
        from keel.operate.server.settings import ServeSettings

        report: dict = {}

        def ask() -> None:
            with TestClient(create_app(ServeSettings(mcp=False))) as client:
                report.update(client.get("/readyz").json())

        thread = threading.Thread(target=ask)
        thread.start()
        await asyncio.to_thread(thread.join)
        assert report["local_generations"] == {"running": 1, "waiting": 1, "concurrency": 1, "max_waiting": 1}
        async for _ in a:  # A finishes: B gets the slot and answers
            pass
        assert (await b).text is not None
        assert local_generations()["running"] == 0 and local_generations()["waiting"] == 0

    asyncio.run(main())
