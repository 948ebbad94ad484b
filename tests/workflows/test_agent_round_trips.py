"""What a worker writes for an Agent run, and when (decision 0036): on both backends.

A run a worker takes from the queue is in the store already, so the pure steps before an Agent node
that only asks its model (no tools, no handoffs, no memory) need no commit of their own: the whole
run is one checkpoint, as Start -> Transform -> End is. Its claim stands for the cancellation check
before the model call. An Agent node with tools still has its run committed before the model is
asked (tool results are memoized against the stored step), and a cancel that lands while the model
answers still wins: the checkpoint's compare-and-set fails and nothing of the answer is stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

from keel.testing import scripted
from keel.workflows import Engine, Runs, Versions, publish
from keel.workflows.queue import RunQueue
from keel.workflows.worker import Worker

MODEL_ONLY = """
    name: ask
    nodes:
      - {id: start, type: start}
      - {id: bot, type: agent, model: "scripted:asker", instructions: Answer.}
      - {id: end, type: end}
    edges: [{from: start, to: bot}, {from: bot, to: end}]
    """

WITH_TOOL = """
    name: ask
    nodes:
      - {id: start, type: start}
      - id: bot
        type: agent
        model: "scripted:asker"
        instructions: Answer.
        tools: ["tests.workflows.tools_for_tests:stored_seq"]
      - {id: end, type: end}
    edges: [{from: start, to: bot}, {from: bot, to: end}]
    """


class _Recording:
    """The store, recording the text of every statement the worker sends (deferred ones too)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.sql: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def execute(self, sql: str, params: Any = ()) -> int:
        self.sql.append(sql)
        return self._store.execute(sql, params)

    def query(self, sql: str, params: Any = ()) -> list[dict]:
        self.sql.append(sql)
        return self._store.query(sql, params)

    def executemany(self, sql: str, rows: Any) -> None:
        self.sql.append(sql)
        self._store.executemany(sql, rows)

    def defer(self, sql: str, params: Any = (), *, many: bool = False, check: Any = None) -> None:
        self.sql.append(sql)
        inner = getattr(self._store, "defer", None)
        if inner is not None:
            inner(sql, params, many=many, check=check)
        elif many:
            self._store.executemany(sql, params)
        else:
            changed = self._store.execute(sql, params)
            if check is not None:
                check(changed)

    def count(self, start: str) -> int:
        return sum(" ".join(s.split()).startswith(start) for s in self.sql)


def _queue(store: Any, inputs: list[str]) -> list[str]:
    """Queue runs of the published workflow as ``keel serve --no-execute`` does."""
    engine, queue = Engine(store), RunQueue(store)
    version = Versions(store).get("ask")
    ids = []
    for text in inputs:
        run = engine.create(version, text, _defer=True)
        with store.transaction():
            engine.queue_rows(run)
            queue.add(run.id)
        ids.append(run.id)
    return ids


async def _work(store: Any, runs: int) -> None:
    worker = Worker(store, concurrency=8, recover_every=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, grace=10))
    try:
        for _ in range(3000):
            if worker.finished >= runs:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert worker.finished == runs


def _steps(store: Any, run_id: str) -> list[str]:
    return [s.node_id for s in Runs(store).steps(run_id)]


async def test_a_queued_model_only_agent_run_is_one_checkpoint_with_no_cancel_check(spec_file, store) -> None:
    publish(spec_file(MODEL_ONLY), store=store)
    ids = _queue(store, ["one", "two", "three"])
    recording = _Recording(store)
    with scripted("asker") as model:
        for _ in ids:
            model.reply(respond=lambda request: "said " + request.messages[-1].content)
        await _work(recording, len(ids))
    for run_id, text in zip(ids, ["one", "two", "three"], strict=True):
        rec = Runs(store).get(run_id)
        assert (rec.status, rec.output) == ("succeeded", f"said {text}")
        assert _steps(store, run_id) == ["start", "bot", "end"]
        memos = store.query("SELECT COUNT(*) AS n FROM workflow_memos WHERE run_id = ?", (run_id,))
        calls = store.query("SELECT COUNT(*) AS n FROM model_calls WHERE trace_id = ?", (rec.trace_id,))
        assert memos[0]["n"] == 1 and calls[0]["n"] == 1  # the model call's records, with the checkpoint
    assert recording.count("UPDATE workflow_runs SET seq") == len(ids)  # one checkpoint per run
    assert recording.count("SELECT status, owner FROM workflow_runs") == 0  # the claim was the check


async def test_an_agent_with_tools_has_its_run_committed_before_the_tool_runs(spec_file, store) -> None:
    from tests.workflows import tools_for_tests

    publish(spec_file(WITH_TOOL), store=store)
    [run_id] = _queue(store, ["go"])
    tools_for_tests.STORED_SEQ.clear()
    recording = _Recording(store)
    with scripted("asker") as model:
        model.reply(tool_calls=[("stored_seq", {})])
        model.reply("done")
        await _work(recording, 1)
    rec = Runs(store).get(run_id)
    assert (rec.status, rec.output) == ("succeeded", "done"), rec.error
    assert tools_for_tests.STORED_SEQ == [1]  # the Start step was on disk when the tool ran
    assert _steps(store, run_id) == ["start", "bot", "end"]
    assert recording.count("UPDATE workflow_runs SET seq") == 2  # before the Agent step, and the end


async def test_a_cancel_while_the_model_answers_stores_nothing_of_the_answer(spec_file, store) -> None:
    """Two runs that commit together; one is cancelled from another engine while its model answers.
    Its checkpoint's compare-and-set fails (on PostgreSQL inside the pipeline that carries COMMIT),
    so the batch is written again without it: the other run's checkpoint stands, this one's is gone."""
    publish(spec_file(MODEL_ONLY), store=store)
    keep, drop = _queue(store, ["keep", "drop"])

    def respond(request: Any) -> str:
        text = request.messages[-1].content
        if text == "drop":
            Engine(store).cancel(drop, by="ops")  # only the store says so
        return "said " + text

    with scripted("asker") as model:
        model.reply(respond=respond)
        model.reply(respond=respond)
        await _work(store, 2)
    kept, dropped = Runs(store).get(keep), Runs(store).get(drop)
    assert (kept.status, kept.output) == ("succeeded", "said keep")
    assert _steps(store, keep) == ["start", "bot", "end"]
    assert (dropped.status, dropped.error) == ("cancelled", "cancelled by ops")
    assert _steps(store, drop) == []
    assert store.query("SELECT COUNT(*) AS n FROM workflow_memos WHERE run_id = ?", (drop,))[0]["n"] == 0
    assert store.query("SELECT COUNT(*) AS n FROM run_queue")[0]["n"] == 0
