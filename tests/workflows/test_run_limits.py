"""Runs that cannot run away (issue 13, findings 5 and 6): limits every run obeys, the warning
for cycles no While node bounds, cancel, and the recovery loop giving up on a run whose resume
keeps raising. Real SQLite stores under the test's KEEL_HOME; the CLI as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from keel import workflows
from keel.store import SQLiteStore
from keel.workflows import Engine
from keel.workflows.errors import RunFinishedError

CYCLE = """
name: spin
nodes:
  - {id: start, type: start, state: {n: 0}}
  - {id: count, type: set_state, assign: {n: state.n + 1}}
  - id: again
    type: if_else
    branches: [{name: more, condition: "state.n >= 0"}]
  - {id: done, type: end}
edges:
  - {from: start, to: count}
  - {from: count, to: again}
  - {from: again, port: more, to: count}
  - {from: again, port: else, to: done}
"""

GROW = """
name: grow
nodes:
  - {id: start, type: start, state: {s: "xxxxxxxxxx"}}
  - {id: loop, type: while, condition: "size(state.s) < 200000", max_iterations: 100}
  - {id: double, type: set_state, assign: {s: state.s + state.s}}
  - {id: show, type: transform, expression: state.s}
  - {id: done, type: end, output: "'ok'"}
edges:
  - {from: start, to: loop}
  - {from: loop, port: body, to: double}
  - {from: double, to: loop}
  - {from: loop, port: next, to: show}
  - {from: show, to: done}
LIMITS
"""

APPROVAL = """
name: ask
nodes:
  - {id: start, type: start}
  - {id: ask, type: human_approval, message: "ok?"}
  - {id: done, type: end}
edges:
  - {from: start, to: ask}
  - {from: ask, port: approved, to: done}
  - {from: ask, port: rejected, to: done}
"""


def _run(spec: str, store: SQLiteStore, **kwargs: object) -> workflows.RunResult:
    # A bound on the test itself: the old engine looped forever on CYCLE.
    return asyncio.run(asyncio.wait_for(workflows.arun(workflows.load(spec), "go", store=store, **kwargs), 120))


def test_an_if_else_cycle_stops_at_max_steps_with_the_limit_named(store: SQLiteStore) -> None:
    result = _run(CYCLE, store)
    assert result.status == "failed"
    assert "limits.max_steps" in result.error and "1000 steps" in result.error
    assert "limits: {max_steps: ...}" in result.error  # the spec field to raise
    rec = workflows.Runs(store).get(result.run_id)
    assert rec.seq == 1001  # 1,000 steps, then the refused one, recorded with the error
    last = workflows.Runs(store).steps(result.run_id)[-1]
    assert last.error == result.error and last.node_id in ("count", "again")


def test_max_steps_is_set_per_spec(store: SQLiteStore) -> None:
    result = _run(CYCLE + "limits: {max_steps: 50}\n", store)
    assert result.status == "failed" and "(the limit is 50)" in result.error
    assert workflows.Runs(store).get(result.run_id).seq == 51


def test_validate_warns_about_a_cycle_outside_while_and_not_about_a_while_loop(spec_file) -> None:
    wf = workflows.validate(workflows.load(CYCLE))
    assert len(wf.warnings) == 1
    w = wf.warnings[0]
    assert "count -> again -> count" in w.message and "limits.max_steps (1000)" in w.message
    assert w.node_id == "count" and w.line is not None
    assert workflows.validate(workflows.load(GROW.replace("LIMITS", ""))).warnings == []
    path = spec_file(CYCLE, "spin.yaml")
    r = subprocess.run([sys.executable, "-m", "keel", "workflows", "validate", str(path)], capture_output=True,
                       text=True, cwd=path.parent)
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "count -> again -> count" in r.stderr and ": ok" in r.stdout


class _TickingClock:
    """Ten seconds pass every time the engine looks at the clock."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def now(self) -> float:
        self.t += 10
        return self.t


def test_max_seconds_counts_the_time_a_run_is_executed(store: SQLiteStore) -> None:
    result = _run(CYCLE + "limits: {max_seconds: 100}\n", store, clock=_TickingClock())
    assert result.status == "failed"
    assert "limits.max_seconds" in result.error and "(the limit is 100 s)" in result.error
    assert workflows.Runs(store).get(result.run_id).seq < 20


def test_state_and_output_sizes_are_limited(store: SQLiteStore) -> None:
    result = _run(GROW.replace("LIMITS", "limits: {max_state_bytes: 5000}"), store)
    assert result.status == "failed"
    assert "limits.max_state_bytes" in result.error and "after node 'double'" in result.error
    result = _run(GROW.replace("LIMITS", "limits: {max_output_bytes: 5000}"), store)
    assert result.status == "failed"
    assert "limits.max_output_bytes" in result.error and "node 'show'" in result.error
    assert _run(GROW.replace("LIMITS", ""), store).status == "succeeded"  # the defaults let it through


def test_a_lone_surrogate_in_the_input_is_refused(store: SQLiteStore) -> None:
    import pytest

    with pytest.raises(workflows.WorkflowError, match=r"input\.messages\[0\]\.content contains a lone"):
        asyncio.run(workflows.arun(
            workflows.load(CYCLE), json.loads('{"messages": [{"role": "user", "content": "a\\ud800"}]}'),
            store=store))
    assert workflows.Runs(store).list() == []


def _keel(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "KEEL_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, env=env,
                          cwd=home, timeout=120)


def test_cancel_a_waiting_run_from_the_cli(store: SQLiteStore, keel_home: Path) -> None:
    waiting = _run(APPROVAL, store)
    assert waiting.status == "waiting"
    r = _keel(keel_home, "runs", "cancel", waiting.run_id[:12], "--reason", "not needed")
    assert r.returncode == 0, r.stderr
    assert f"run {waiting.run_id}: cancelled" in r.stdout
    rec = workflows.Runs(store).get(waiting.run_id)
    assert rec.status == "cancelled" and rec.error == "cancelled: not needed" and rec.finished_at
    assert workflows.Runs(store).approvals(status="cancelled", run_id=rec.id)[0].id == waiting.approval.id
    listed = _keel(keel_home, "runs", "list", "--status", "cancelled")
    assert waiting.run_id in listed.stdout
    again = _keel(keel_home, "runs", "cancel", waiting.run_id)
    assert again.returncode != 0 and "Traceback" not in again.stderr
    assert "has finished already: cancelled" in again.stderr and "fix:" in again.stderr
    # Nobody picks a cancelled run up again, and its approval cannot be answered.
    assert asyncio.run(Engine(store).recover()) == []
    import pytest

    with pytest.raises(workflows.ApprovalError, match="already answered: cancelled"):
        workflows.approve(waiting.approval.id, store=store)


def test_a_run_cancelled_elsewhere_stops_its_driving_engine(store: SQLiteStore) -> None:
    version = workflows.publish(workflows.load(CYCLE + "limits: {max_steps: 10000000}\n"), store=store)

    async def go() -> tuple[workflows.RunResult, int]:
        engine = Engine(store)
        task = asyncio.ensure_future(engine.start(version, "go"))
        while not store.query("SELECT 1 FROM workflow_runs"):
            await asyncio.sleep(0.01)
        run_id = store.query("SELECT id FROM workflow_runs")[0]["id"]
        Engine(store).cancel(run_id, by="ops")  # another engine: only the store says so
        result = await asyncio.wait_for(task, 60)
        return result, store.query("SELECT seq FROM workflow_runs")[0]["seq"]

    result, seq = asyncio.run(go())
    assert result.status == "cancelled" and result.error == "cancelled by ops"
    assert seq < 10_000
    with __import__("pytest").raises(RunFinishedError):
        Engine(store).cancel(result.run_id)


def test_recovery_gives_up_on_a_run_whose_resume_keeps_raising(store: SQLiteStore) -> None:
    waiting = _run(APPROVAL, store)
    # A run whose stored variables cannot be read back: every resume raises the same way.
    store.execute("UPDATE workflow_runs SET status = 'running', owner = NULL, context = '{broken' WHERE id = ?",
                  (waiting.run_id,))
    engine = Engine(store)
    for _ in range(2):
        results = asyncio.run(engine.recover())
        assert [r.status for r in results] == ["running"]
        assert workflows.Runs(store).get(waiting.run_id).status == "running"
    results = asyncio.run(engine.recover())
    rec = workflows.Runs(store).get(waiting.run_id)
    assert rec.status == "failed" and results[0].status == "failed"
    assert "could not be resumed (3 times in a row, same error): JSONDecodeError" in rec.error
    assert asyncio.run(engine.recover()) == []  # not claimed again
