"""keel optimize prompt end to end with deterministic scripted models (tests/optimize/scripted_task.py):
the real CLI in worker processes, real SQLite stores, a real workflow run through the engine."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.optimize.scripted_task import PROPOSAL, SEED, install, write_eval

ROOT = Path(__file__).resolve().parents[2]


def keel(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.optimize.opt_worker", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), **(env or {})},
                          cwd=cwd)


def rows(home: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(home / "keel.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_model_target_end_to_end_finds_better_instructions_and_publishes_only_when_asked(tmp_path, keel_home):
    ev = write_eval(tmp_path)
    out = keel("optimize", "prompt", ev, "--target", "cities", "--budget", "20",
               "--reflection-model", "scripted:opt-reflect")
    assert out.returncode == 0, out.stderr
    assert "seed 0.00 -> best 1.00" in out.stdout
    assert f"+{PROPOSAL}" in out.stdout and f"-{SEED}" in out.stdout
    assert "cost: 19 of 20 calls (18 rollouts, 1 reflections)" in out.stdout
    assert not (tmp_path / "cities.optimized.yaml").exists()  # nothing published yet
    run_id = rows(keel_home, "SELECT id FROM optimize_runs")[0][0]
    shown = keel("optimize", "show", run_id)
    assert "candidate 1   reflection from 0" in shown.stdout and "validation 1.00 front" in shown.stdout
    published = keel("optimize", "publish", run_id)
    assert published.returncode == 0, published.stderr
    text = (tmp_path / "cities.optimized.yaml").read_text()
    assert PROPOSAL in text and SEED not in text
    # the published eval really is better: the same search from it starts at 1.00
    again = keel("optimize", "prompt", str(tmp_path / "cities.optimized.yaml"), "--target", "cities",
                 "--budget", "12", "--reflection-model", "scripted:opt-reflect", "--demos", "0")
    assert again.returncode == 0, again.stderr
    assert "seed 1.00 -> best 1.00" in again.stdout


WORKFLOW = f"""
name: cities
nodes:
  - {{id: start, type: start}}
  - id: answer
    type: agent
    model: scripted:opt-task
    # the optimizer rewrites only this field
    instructions: {SEED}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: answer}}
  - {{from: answer, to: done}}
"""


def test_agent_node_result_is_a_draft_until_published(tmp_path):
    from keel.optimize import Options, optimize_prompt, publish
    from keel.store import open_store
    from keel.workflows import Versions
    from keel.workflows import publish as publish_workflow
    from keel.workflows.drafts import Drafts

    install()
    store = open_store()
    (tmp_path / "cities.workflow.yaml").write_text(WORKFLOW)
    publish_workflow(tmp_path / "cities.workflow.yaml", store=store)
    ev = write_eval(tmp_path, workflow="cities@1")
    text = Path(ev).read_text()  # and a trace grader, which reads each candidate's workflow run
    Path(ev).write_text(text.replace("targets:\n", "  - {type: trace_check, name: path, nodes_visited: [answer]}\n"
                                                    "targets:\n"))
    run = asyncio.run(optimize_prompt(store, ev, target="answer",
                                      options=Options(budget=20, reflection_model="scripted:opt-reflect")))
    assert run.result["seed_score"] == 0.5  # the trace grader passes, the string check fails
    assert run.result["best_score"] == 1.0
    from keel.models.scripted import get_script

    shown = get_script("opt-reflect").calls[-1].messages[-1].content  # the reflection read the run's steps
    assert "Steps of the run:" in shown and "- answer/model#0: paris" in shown
    assert "path (trace_check): passed" in shown and "exact (string_check eq): failed" in shown
    draft = Drafts(store).get("cities")
    assert draft is not None and f"instructions: {PROPOSAL}" in draft.source
    assert "# the optimizer rewrites only this field" in draft.source  # the YAML's comments are kept
    assert Versions(store).get("cities").version == 1  # not published yet
    assert publish(store, run.id) == "cities@2"
    node = next(n for n in Versions(store).get("cities", 2).spec.nodes if n.id == "answer")
    assert node.instructions == PROPOSAL


def test_killed_run_resumes_and_repeats_at_most_one_model_call(tmp_path, keel_home):
    """SIGKILL mid-run, resume: the calls of both processes are those of an uninterrupted run plus
    at most one, and the result is the same."""
    ev = write_eval(tmp_path, rows=12)
    args = ["--budget", "40", "--reflection-model", "scripted:opt-reflect", "--minibatch", "2"]
    whole_log, whole_home = tmp_path / "whole.log", tmp_path / "whole-home"
    whole = keel("optimize", "prompt", ev, "--target", "cities", *args, "--json",
                 env={"KEEL_HOME": str(whole_home), "KEEL_TEST_CALL_LOG": str(whole_log)})
    assert whole.returncode == 0, whole.stderr
    expected = whole_log.read_text().splitlines()

    log = tmp_path / "killed.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "KEEL_TEST_CALL_LOG": str(log), "KEEL_TEST_CALL_DELAY": "0.3"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.optimize.opt_worker", "optimize", "prompt", ev,
                             "--target", "cities", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and len(log.read_text().splitlines() if log.exists() else []) < 8:
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9
    before = len(log.read_text().splitlines())
    assert 8 <= before < len(expected)
    (run_id, status), = rows(keel_home, "SELECT id, status FROM optimize_runs")
    assert status == "running"
    stored = rows(keel_home, "SELECT COUNT(*) FROM optimize_calls")[0][0]
    assert stored >= before - 1  # every call but the one in flight was stored

    # the run pinned the dataset version it started with: a file changed meanwhile does not matter
    (tmp_path / "cities.jsonl").write_text('{"city": "bern", "expected": "x"}\n' * 4)
    resumed = keel("optimize", "resume", run_id[:12], env={"KEEL_TEST_CALL_LOG": str(log)})
    assert resumed.returncode == 0, resumed.stderr
    total = log.read_text().splitlines()
    assert len(expected) <= len(total) <= len(expected) + 1
    import json

    result = json.loads(keel("optimize", "show", run_id, "--json").stdout)["result"]
    reference = json.loads(whole.stdout)
    assert [c["instructions"] for c in result["candidates"]] == [c["instructions"] for c in reference["candidates"]]
    assert [c["scores"] for c in result["candidates"]] == [c["scores"] for c in reference["candidates"]]
    assert result["cost"]["calls"] == reference["cost"]["calls"]


@pytest.mark.parametrize("case", ["too_few_rows", "unknown_target", "budget_too_small", "garbage"])
def test_bad_input_is_one_clear_message_and_nothing_half_written(tmp_path, keel_home, case):
    ev = write_eval(tmp_path, rows=3 if case == "too_few_rows" else 8)
    target = "answerer" if case == "unknown_target" else "cities"
    budget = "5" if case == "budget_too_small" else "20"
    reflect = "scripted:opt-garbage" if case == "garbage" else "scripted:opt-reflect"
    out = keel("optimize", "prompt", ev, "--target", target, "--budget", budget, "--reflection-model", reflect)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "  fix: " in out.stderr
    expected = {
        "too_few_rows": "has 3 rows: too few to split",
        "unknown_target": "--target 'answerer' is neither a model target nor an Agent node",
        "budget_too_small": "a budget of 5 model calls is too small to propose anything",
        "garbage": "returned no usable instructions",
    }[case]
    assert expected in errors[0], out.stderr
    if case == "unknown_target":
        assert "cities" in errors[0]  # names what --target may be
    if case == "budget_too_small":
        assert "--budget 11" in out.stderr  # 4 validation rows + 2 x 3 minibatch rows + 1 reflection
    runs = rows(keel_home, "SELECT status FROM optimize_runs")
    assert runs == ([("failed",)] if case == "garbage" else [])
    if case != "garbage":  # checked before anything is written: not even the dataset file is imported
        assert rows(keel_home, "SELECT COUNT(*) FROM eval_datasets") == [(0,)]
    assert not (tmp_path / "cities.optimized.yaml").exists()
    if case == "garbage":
        drafts = rows(keel_home, "SELECT COUNT(*) FROM workflow_drafts")[0][0]
        assert drafts == 0
