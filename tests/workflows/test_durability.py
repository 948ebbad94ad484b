"""Durability with real processes: kill -9 at random points, restart, nothing lost or repeated."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.store import open_store
from keel.workflows import Runs

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("crash_worker.py")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "CRASH_EFFECTS": str(tmp_path / "effects.db"),
            "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}


@pytest.mark.slow
def test_crash_injection_every_run_completes_once_and_no_side_effect_repeats(tmp_path: Path) -> None:
    runs, env = 200, _env(tmp_path)
    subprocess.run([sys.executable, str(WORKER), "init", str(runs)], env=env, check=True, timeout=60)
    rng = random.Random(4)
    kills, attempts, deadline = 0, 0, time.time() + 90
    while time.time() < deadline:
        attempts += 1
        worker = subprocess.Popen([sys.executable, str(WORKER), "work"], env=env)
        try:
            # the first workers are killed at a random moment; after 8 kills one may finish
            worker.wait(timeout=rng.uniform(0.5, 1.2) if kills < 8 else 60)
            assert worker.returncode == 0
            break
        except subprocess.TimeoutExpired:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
            kills += 1
    assert kills >= 2, "the workers finished before enough kills landed"

    store = open_store()
    rows = store.query("SELECT id, status, input, output FROM workflow_runs")
    assert len(rows) == runs
    assert {r["status"] for r in rows} == {"succeeded"}
    for r in rows:
        order = json.loads(r["input"])
        assert json.loads(r["output"]) == {"answer": f"done: charged order {order}", "paid": True}
    # each run executed each node exactly once, in order, and ended exactly once
    steps = store.query("SELECT run_id, seq, node_id FROM workflow_steps ORDER BY run_id, seq")
    by_run: dict[str, list[str]] = {}
    for s in steps:
        by_run.setdefault(s["run_id"], []).append(s["node_id"])
    assert len(by_run) == runs
    assert all(nodes == ["start", "pay", "mark", "shape", "done"] for nodes in by_run.values())
    # exactly one side effect per run, though a tool in flight at a kill may have been called twice
    effects = sqlite3.connect(tmp_path / "effects.db")
    per_run = effects.execute("SELECT run_id, COUNT(*) FROM effects GROUP BY run_id").fetchall()
    assert len(per_run) == runs and {n for _, n in per_run} == {1}
    invocations = (tmp_path / "effects.db.log").read_text().splitlines()
    repeated = len(invocations) - len(set(invocations))
    assert repeated <= kills * 10, (repeated, kills)  # at most the calls in flight at each kill
    # completed tool calls were never repeated: every memoized call was invoked once after its memo
    memos = store.query("SELECT COUNT(*) AS n FROM workflow_memos WHERE key LIKE '%:tool:%'")[0]["n"]
    assert memos == runs
    print(f"\n{runs} runs, {attempts} workers, {kills} kills, {repeated} in-flight tool calls repeated")


def test_an_approval_pending_across_a_process_restart_is_approved_later(spec_file, tmp_path: Path) -> None:
    path = spec_file("""
    name: wait
    nodes:
      - {id: start, type: start}
      - {id: ask, type: human_approval, message: "Ship {{ input_as_text }}?"}
      - {id: shipped, type: end, output: "'shipped ' + nodes.start.output_text"}
      - {id: held, type: end, output: "'held'"}
    edges:
      - {from: start, to: ask}
      - {from: ask, port: approved, to: shipped}
      - {from: ask, port: rejected, to: held}
    """)
    env = _env(tmp_path)
    first = subprocess.run([sys.executable, "-m", "keel", "run", str(path), "--input", "parcel-9", "--json"],
                           env=env, capture_output=True, text=True, timeout=60)
    doc = json.loads(first.stdout)
    assert doc["status"] == "waiting"
    # a worker started meanwhile (a deploy, a restart) leaves the waiting run alone
    subprocess.run([sys.executable, "-m", "keel", "runs", "resume"], env=env, check=True, timeout=60,
                   capture_output=True)
    assert Runs(open_store()).get(doc["run_id"]).status == "waiting"
    later = subprocess.run([sys.executable, "-m", "keel", "approvals", "approve", doc["approval_id"], "--json"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(later.stdout) == {"run_id": doc["run_id"], "status": "succeeded", "output": "shipped parcel-9"}


def test_a_run_killed_mid_step_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    """kill -9 during a slow tool call; `keel runs resume` finishes the run without redoing earlier steps."""
    env = _env(tmp_path)
    subprocess.run([sys.executable, str(WORKER), "init", "1"], env=env, check=True, timeout=60)
    env["CRASH_SLOW"] = "1"
    store = open_store()
    worker = subprocess.Popen([sys.executable, str(WORKER), "work"], env=env)
    deadline = time.time() + 30
    while not store.query("SELECT 1 FROM workflow_memos WHERE key LIKE '%:model:0'") and time.time() < deadline:
        time.sleep(0.02)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    [run] = Runs(store).list()
    assert run.status == "running" and run.current_node == "pay" and run.seq == 1
    env.pop("CRASH_SLOW")
    subprocess.run([sys.executable, str(WORKER), "work"], env=env, check=True, timeout=60)
    run = Runs(store).get(run.id)
    assert run.status == "succeeded"
    assert [s.node_id for s in Runs(store).steps(run.id)] == ["start", "pay", "mark", "shape", "done"]


def _trace(store) -> list[str]:
    """The first word of each statement the store runs from now on."""
    if store.dialect != "sqlite":
        pytest.skip("counts statements through SQLite's trace callback (grouping is the same code on PostgreSQL)")
    seen: list[str] = []
    store._connect().set_trace_callback(lambda sql: seen.append(" ".join(sql.split()[:3]).upper()))
    return seen


def _write_transactions(seen: list[str]) -> list[list[str]]:
    """Transactions that wrote something; a write outside BEGIN ... COMMIT is one of its own."""
    out, current = [], None
    for statement in seen:
        word = statement.split()[0]
        if word == "BEGIN":
            current = []
        elif word in ("COMMIT", "ROLLBACK"):
            if current and any(w.split()[0] in ("INSERT", "UPDATE", "DELETE") for w in current):
                out.append(current)
            current = None
        elif current is not None:
            current.append(statement)
        elif word in ("INSERT", "UPDATE", "DELETE"):
            out.append([statement])
    return out


async def test_commits_per_run_group_steps_without_side_effects(spec_file, store) -> None:
    """Start -> Transform -> End is one transaction; Start -> Agent -> End two: the run is on disk
    before the model is asked, and the answer commits with the End step (its model call's
    memo, span and ``model_calls`` row included)."""
    from keel.testing import scripted
    from keel.workflows import Spans, arun

    pure = spec_file("""
        name: pure
        nodes:
          - {id: start, type: start}
          - {id: t, type: transform, expression: "input_as_text + '!'"}
          - {id: end, type: end}
        edges: [{from: start, to: t}, {from: t, to: end}]
        """, "pure.yaml")
    agent = spec_file("""
        name: agent
        nodes:
          - {id: start, type: start}
          - {id: bot, type: agent, model: "scripted:bot", instructions: Answer.}
          - {id: end, type: end}
        edges: [{from: start, to: bot}, {from: bot, to: end}]
        """, "agent.yaml")
    await arun(pure, "warm up", store=store)
    await arun(agent, "warm up", store=store)
    seen = _trace(store)
    await arun(pure, "hi", store=store)
    assert len(_write_transactions(seen)) == 1, seen
    seen.clear()
    with scripted("bot") as bot:
        bot.reply("hello")
        result = await arun(agent, "hi", store=store)
    assert result.output == "hello"
    first, last = _write_transactions(seen)
    assert "INSERT INTO WORKFLOW_RUNS" in first
    assert {"INSERT INTO MODEL_CALLS", "INSERT INTO WORKFLOW_MEMOS", "INSERT INTO TRACE_SPANS"} <= set(last)
    rec = Runs(store).get(result.run_id)
    kinds = sorted(s.kind for s in Spans(store).for_trace(rec.trace_id))
    assert kinds == ["model", "node", "node", "node", "workflow"]
    rows = store.query("SELECT COUNT(*) AS n FROM model_calls WHERE trace_id = ?", (rec.trace_id,))
    assert rows[0]["n"] == 1


async def test_concurrent_runs_share_commits(spec_file, store) -> None:
    """Runs on one event loop that commit in the same turn of the loop share the transaction
    (group commit), and each is whole on disk when its result comes back."""
    import asyncio

    from keel.workflows import Engine, Versions, publish

    publish(spec_file("""
        name: shared
        nodes:
          - {id: start, type: start}
          - {id: t, type: transform, expression: "input_as_text + '!'"}
          - {id: end, type: end}
        edges: [{from: start, to: t}, {from: t, to: end}]
        """, "shared.yaml"), store=store)
    engine = Engine(store)
    version = Versions(store).get("shared")
    group = store.commit_group()
    results = await asyncio.gather(*(engine.start(version, f"r{i}") for i in range(20)))
    assert sorted(r.output for r in results) == sorted(f"r{i}!" for i in range(20))
    assert group.writes == 20 and group.commits < 20, (group.commits, group.writes)
    for r in results:
        assert [s.node_id for s in Runs(store).steps(r.run_id)] == ["start", "t", "end"]


async def test_the_model_call_that_asks_for_a_tool_is_on_disk_before_the_tool_runs(spec_file, store) -> None:
    from keel.testing import scripted
    from keel.workflows import arun
    from tests.workflows import tools_for_tests

    tools_for_tests.SEEN_ON_DISK.clear()
    path = spec_file("""
        name: tooling
        nodes:
          - {id: start, type: start}
          - id: bot
            type: agent
            model: "scripted:bot"
            instructions: Count.
            tools: ["tests.workflows.tools_for_tests:count_model_calls_on_disk"]
          - {id: end, type: end}
        edges: [{from: start, to: bot}, {from: bot, to: end}]
        """)
    with scripted("bot") as bot:
        bot.reply(tool_calls=[("count_model_calls_on_disk", {})])
        bot.reply(tool_calls=[("count_model_calls_on_disk", {})])
        bot.reply("done")
        result = await arun(path, "go", store=store)
    assert result.status == "succeeded", result.error
    assert tools_for_tests.SEEN_ON_DISK == [1, 2]
    memos = store.query("SELECT COUNT(*) AS n FROM workflow_memos WHERE run_id = ? AND key LIKE '%:model:%'",
                        (result.run_id,))
    assert memos[0]["n"] == 3  # the answer's memo committed with the step
