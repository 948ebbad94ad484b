"""Datasets built from stored workflow runs: filters, versions, grading stored traces, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.evals import Datasets, iter_results, parse_eval, run_eval
from keel.evals.errors import DatasetError
from keel.evals.from_runs import RunFilter, dataset_from_runs, parse_time
from keel.store import open_store
from keel.testing import scripted
from keel.workflows import arun, publish
from tests.evals.test_workflow_evals import AGENT, _script

GREET = """
name: greet
nodes:
  - {id: start, type: start}
  - {id: shape, type: transform, expression: "'hello ' + workflow.input.who"}
  - {id: done, type: end, output: "input.output_parsed"}
edges:
  - {from: start, to: shape}
  - {from: shape, to: done}
"""


@pytest.fixture
def store(keel_home: Path):
    s = open_store(keel_home)
    yield s
    s.close()


async def _greet_runs(store, tmp_path: Path) -> None:
    spec = tmp_path / "greet.yaml"
    spec.write_text(GREET)
    publish(spec, store=store)
    for who, tier in [("ada", "gold"), ("bob", "free"), ("cy", "gold")]:
        await arun("greet", {"who": who, "tier": tier}, store=store)
    spec.write_text(GREET.replace("'hello '", "'hi '"))
    assert publish(spec, store=store).version == 2
    await arun("greet", {"who": "dee", "tier": "gold"}, store=store)


async def test_filters_and_versions(store, tmp_path) -> None:
    await _greet_runs(store, tmp_path)
    d, unchanged = dataset_from_runs(store, "greet-gold", RunFilter("greet", where={"tier": "gold"}))
    assert (d.ref, d.item_count, unchanged) == ("greet-gold@1", 3, False)
    assert d.source == "runs of greet status=succeeded tier=gold"
    rows = list(Datasets(store).rows(d.id))
    assert [r.item["input"]["who"] for r in rows] == ["ada", "cy", "dee"]  # oldest first
    assert rows[0].item["output"] == "hello ada" and rows[2].item["version"] == 2
    assert rows[0].sample == {"output_text": "hello ada", "output_json": None, "workflow_run_id": rows[0].item["run_id"],
                              "workflow": "greet@1", "status": "succeeded"}
    # the same runs again: the latest version is reused; a new run makes version 2
    assert dataset_from_runs(store, "greet-gold", RunFilter("greet", where={"tier": "gold"}))[1] is True
    await arun("greet", {"who": "eve", "tier": "gold"}, store=store)
    d2, _ = dataset_from_runs(store, "greet-gold", RunFilter("greet", where={"tier": "gold"}))
    assert (d2.ref, d2.item_count) == ("greet-gold@2", 4)
    # one version, a time window, a limit
    v1 = dataset_from_runs(store, "g1", RunFilter("greet@1"))[0]
    assert v1.item_count == 3
    assert dataset_from_runs(store, "g2", RunFilter("greet", limit=2))[0].item_count == 2
    assert dataset_from_runs(store, "g3", RunFilter("greet", since=time.time() - 3600))[0].item_count == 5
    with pytest.raises(DatasetError, match="no runs of greet status=succeeded until="):
        dataset_from_runs(store, "g4", RunFilter("greet", until=time.time() - 3600))
    with pytest.raises(DatasetError, match=r"nope"):
        dataset_from_runs(store, "g5", RunFilter("nope"))


def test_parse_time() -> None:
    assert parse_time("7d", now=1_000_000.0) == 1_000_000.0 - 7 * 86400
    assert parse_time("90m", now=10_000.0) == 10_000.0 - 5400
    assert parse_time("1700000000") == 1_700_000_000.0
    with pytest.raises(DatasetError, match="--since 'yesterday' is not a time"):
        parse_time("yesterday")


async def test_grade_stored_runs_and_their_traces(store, tmp_path) -> None:
    (tmp_path / "support.yaml").write_text(AGENT)
    publish(tmp_path / "support.yaml", store=store)
    with scripted("triage") as triage, scripted("clerk") as clerk:
        _script(triage, clerk)
        await arun("support", "Refund order 7", store=store)
        await arun("support", "Where is it?", store=store)
    with pytest.raises(DatasetError):
        dataset_from_runs(store, "s", RunFilter("support", tools=("delete_account",)))
    d, _ = dataset_from_runs(store, "refunds", RunFilter("support", tools=("refund",)))
    assert d.item_count == 1
    all_runs, _ = dataset_from_runs(store, "support-runs", RunFilter("support"))
    spec = parse_eval({"name": "stored", "dataset": all_runs.ref, "graders": [
        {"type": "trace_check", "name": "refund_flow", "tool_order": ["lookup_order", "refund"],
         "tools_not_called": ["explode"], "model_calls": {"max": 4}},
    ]})
    summary = await run_eval(store, spec)
    results = list(iter_results(store, summary.run_id))
    assert [r.grades[0]["score"] for r in results] == [1.0, pytest.approx(2 / 3)]
    assert results[1].grades[0]["reasoning"] == "tools not in order ['lookup_order', 'refund'] (called [])"
    assert [r.workflow_run_id for r in results] == [r.item["run_id"] for r in Datasets(store).rows(all_runs.id)]


def test_cli_from_runs(tmp_path: Path, keel_home: Path) -> None:
    import asyncio

    store = open_store(keel_home)
    asyncio.run(_greet_runs(store, tmp_path))
    store.close()

    def keel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "keel", *args], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ}, timeout=120)

    r = keel("datasets", "from-runs", "greet@1", "--where", "tier=gold", "--since", "1h")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("built greet-runs@1: 2 runs (runs of greet@1 status=succeeded since=")
    r = keel("datasets", "show", "greet-runs", "--json")
    assert [json.loads(line)["item"]["input"]["who"] for line in r.stdout.splitlines()] == ["ada", "cy"]
    for bad, message in [(("--since", "yesterday"), "error: --since 'yesterday' is not a time"),
                         (("--status", "done"), "error: unknown run status 'done'"),
                         (("--where", "tier"), "error: --where 'tier' is not KEY=VALUE")]:
        r = keel("datasets", "from-runs", "greet", *bad)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
