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
