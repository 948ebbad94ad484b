"""Connector sessions are pooled (docs/connectors.md, "Connections"): runs on one event loop
share one live MCP session per connector (a real stdio server subprocess, started once), a
session whose server died is reopened on the next call, a changed connector gets a new session,
and a connector whose server cannot be reached fails its node naming it."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from pathlib import Path

import pytest

from keel.connectors import Connector, Connectors
from keel.store import open_store
from keel.workflows import arun

pytest.importorskip("mcp")

SERVER = Path(__file__).with_name("counting_mcp_server.py")


def _spec(path: Path) -> Path:
    path.write_text("""
name: counter
nodes:
  - {id: start, type: start}
  - {id: ask, type: mcp, connector: counter, tool: whoami, arguments: {note: "input_as_text"}}
  - {id: done, type: end, output: "string(input.output_parsed.pid) + ' ' + string(input.output_parsed.calls)"}
edges:
  - {from: start, to: ask}
  - {from: ask, to: done}
""")
    return path


def test_runs_share_a_pooled_session_that_is_reopened_when_its_server_dies(keel_home: Path, tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    store = open_store(keel_home)
    registry = Connectors(store)
    registry.add(Connector(name="counter", server=f"stdio:{shlex.quote(sys.executable)} {shlex.quote(str(SERVER))} "
                           f"{shlex.quote(str(starts))}", approval={"*": "never"}))
    spec = _spec(tmp_path / "counter.yaml")

    async def runs() -> list[str]:
        from keel.connectors.pool import pool

        out = []
        for i in range(3):  # three runs, one server process: its call count goes 1, 2, 3
            result = await arun(spec, f"run {i}", store=store)
            assert result.status == "succeeded", result.error
            out.append(result.output)
        pid = int(out[-1].split()[0])
        os.kill(pid, signal.SIGKILL)  # the server dies between runs
        await asyncio.sleep(0)
        result = await arun(spec, "after the crash", store=store)
        assert result.status == "succeeded", result.error  # reopened, not failed
        out.append(result.output)
        # The admin changes the connector: the next run gets a session for the new version.
        c = registry.get("counter", secrets=True)
        registry.add(c.model_copy(update={"timeout": 30.0}), replace=True)
        result = await arun(spec, "after the change", store=store)
        assert result.status == "succeeded", result.error
        out.append(result.output)
        assert pool().names() == ["counter"]
        return out

    try:
        out = asyncio.run(runs())
    finally:
        store.close()
    pids = [o.split()[0] for o in out]
    calls = [o.split()[1] for o in out]
    assert pids[0] == pids[1] == pids[2] and calls[:3] == ["1", "2", "3"]
    assert pids[3] != pids[0] and calls[3] == "1"
    assert pids[4] != pids[3] and calls[4] == "1"
    assert len(starts.read_text().split()) == 3  # one start per session, not per run


def test_a_connector_that_cannot_be_reached_fails_its_node_naming_it(keel_home: Path, tmp_path: Path) -> None:
    store = open_store(keel_home)
    try:
        fails = "import sys; sys.exit('counter: no licence')"
        Connectors(store).add(Connector(name="counter", server=f"stdio:{shlex.quote(sys.executable)} -c "
                                        f"{shlex.quote(fails)}", approval={"*": "never"}))
        result = asyncio.run(arun(_spec(tmp_path / "counter.yaml"), "x", store=store))
    finally:
        store.close()
    assert result.status == "failed"
    assert "connector 'counter' is down" in result.error and "keel connectors test counter" in result.error
    assert "counter: no licence" in result.error  # the server's own words, from its stderr


class _Sessions:
    """An opener whose sessions are plain objects; it records which are open, and its close can
    be made slow (as a server that takes its time to exit)."""

    def __init__(self) -> None:
        self.open: list[object] = []
        self.slow_close = asyncio.Event()
        self.slow_close.set()

    async def __call__(self, stack) -> object:
        s = object()
        self.open.append(s)

        async def close() -> None:
            await self.slow_close.wait()
            self.open.remove(s)

        stack.push_async_callback(close)
        await asyncio.sleep(0)
        return s


def test_pool_concurrent_reopen_cancel_and_guarded_drop() -> None:
    from keel.connectors.pool import ConnectorPool

    async def main() -> None:
        p, opener = ConnectorPool(), _Sessions()
        first = await p.client("c", "v1", opener)
        # Two steps see the connector changed while the old session takes its time to close:
        # both end up with one new session, and no session is left open unpooled.
        opener.slow_close.clear()
        a = asyncio.create_task(p.client("c", "v2", opener))
        b = asyncio.create_task(p.client("c", "v2", opener))
        await asyncio.sleep(0.05)
        opener.slow_close.set()
        ca, cb = await asyncio.gather(a, b)
        assert ca is cb and opener.open == [ca] and first not in opener.open

        # A step whose failed call used an old client does not close the session another
        # step has just reopened.
        await p.drop("c", only_if=first)
        assert opener.open == [ca] and p.names() == ["c"]
        await p.drop("c", only_if=ca)
        assert opener.open == [] and p.names() == []

        # A caller cancelled while a session closes (a step timeout) is cancelled, not swallowed.
        await p.client("c", "v3", opener)
        opener.slow_close.clear()
        closing = asyncio.create_task(p.drop("c"))
        await asyncio.sleep(0.05)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        opener.slow_close.set()

    asyncio.run(main())


def test_the_pool_of_a_closed_loop_is_forgotten() -> None:
    from keel.connectors import pool as pool_mod

    async def touch() -> None:
        pool_mod.pool()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(touch())
    loop.close()
    assert loop in pool_mod._pools
    asyncio.run(touch())
    assert loop not in pool_mod._pools
