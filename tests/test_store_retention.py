"""Retention (issue 17): `keel store prune` and `retention =` on a real SQLite file and a real
PostgreSQL database: old finished runs go with everything hanging off them; runs in flight
or waiting on an approval stay, however old; a dry run counts exactly what a prune deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.store import open_store
from keel.store.retention import RetentionThread, parse_age, prune

DAY = 86400.0
NOW = time.time()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    if request.param == "sqlite":
        s = open_store(url=f"sqlite:///{tmp_path / 'keel.db'}")
    else:
        s = open_store(url=request.getfixturevalue("pg_url"))
    yield s
    s.close()


def _run(store, rid: str, status: str, age_days: float, *, approval: str | None = None) -> None:
    t = NOW - age_days * DAY
    trace = f"t-{rid}"
    store.execute("INSERT INTO workflow_runs (id, workflow, version, version_id, status, seq, context, trace_id,"
                  " created_at, updated_at, finished_at) VALUES (?, 'wf', 1, 'v1', ?, 2, '{}', ?, ?, ?, ?)",
                  (rid, status, trace, t, t, t if status in ("succeeded", "failed", "cancelled") else None))
    for seq in (1, 2):
        store.execute("INSERT INTO workflow_steps (run_id, seq, node_id, node_type, started_at, finished_at)"
                      " VALUES (?, ?, 'n', 'transform', ?, ?)", (rid, seq, t, t))
    store.execute("INSERT INTO workflow_memos (run_id, key, value, created_at) VALUES (?, 'k', 'v', ?)", (rid, t))
    if approval:
        store.execute("INSERT INTO workflow_approvals (id, run_id, seq, node_id, workflow, status, message,"
                      " created_at) VALUES (?, ?, 2, 'n', 'wf', ?, 'ok?', ?)", (f"a-{rid}", rid, approval, t))
    store.execute("INSERT INTO trace_spans (span_id, trace_id, run_id, name, kind, started_at, status)"
                  " VALUES (?, ?, ?, 'run', 'workflow', ?, 'ok')", (f"s-{rid}", trace, rid, t))
    store.execute("INSERT INTO run_events (run_id, id, kind, doc, created_at) VALUES (?, 'e1', 'node', '{}', ?)",
                  (rid, t))
    store.execute("INSERT INTO model_calls (id, started_at, provider, model, operation, status, attempt, stream,"
                  " structured, latency_ms, trace_id) VALUES (?, ?, 'scripted', 'm', 'chat', 'ok', 1, 0, 0, 1.0, ?)",
                  (f"m-{rid}", t, trace))


def _request(store, rid: str, age_days: float) -> None:
    store.execute("INSERT INTO serve_requests (id, started_at, method, path, status, latency_ms)"
                  " VALUES (?, ?, 'POST', '/v1/chat/completions', 200, 3.0)", (rid, NOW - age_days * DAY))


def _seed(store) -> None:
    _run(store, "old-ok", "succeeded", 40)
    _run(store, "old-failed", "failed", 45, approval="approved")
    _run(store, "old-cancelled", "cancelled", 31)
    _run(store, "old-running", "running", 90)  # in flight: never pruned
    _run(store, "old-waiting", "waiting", 60, approval="pending")  # waiting on an approval: never pruned
    _run(store, "new-ok", "succeeded", 2)
    _request(store, "r-old", 35)
    _request(store, "r-new", 1)
    # a model call and a span with no run (a served chat completion), one old and one new
    store.execute("INSERT INTO model_calls (id, started_at, provider, model, operation, status, attempt, stream,"
                  " structured, latency_ms) VALUES ('m-free-old', ?, 'scripted', 'm', 'chat', 'ok', 1, 0, 0, 1.0),"
                  " ('m-free-new', ?, 'scripted', 'm', 'chat', 'ok', 1, 0, 0, 1.0)", (NOW - 50 * DAY, NOW))
    store.execute("INSERT INTO trace_spans (span_id, trace_id, name, kind, started_at, status)"
                  " VALUES ('s-free-old', 't-free', 'chat', 'model', ?, 'ok')", (NOW - 50 * DAY,))


def _ids(store, sql: str) -> set[str]:
    return {next(iter(r.values())) for r in store.query(sql)}


def test_prune_deletes_old_finished_runs_with_their_rows_and_keeps_the_rest(store) -> None:
    _seed(store)
    dry = prune(store, older_than=30 * DAY, dry_run=True, now=NOW)
    assert _ids(store, "SELECT id FROM workflow_runs") >= {"old-ok", "old-failed"}  # nothing deleted yet
    done = prune(store, older_than=30 * DAY, now=NOW)
    assert dry.counts == done.counts
    assert done.counts["workflow_runs"] == 3
    assert done.counts["workflow_steps"] == 6 and done.counts["workflow_memos"] == 3
    assert done.counts["workflow_approvals"] == 1 and done.counts["run_events"] == 3
    assert done.counts["trace_spans"] == 4 and done.counts["model_calls"] == 4
    assert done.counts["serve_requests"] == 1
    kept = {"old-running", "old-waiting", "new-ok"}
    assert _ids(store, "SELECT id FROM workflow_runs") == kept
    assert _ids(store, "SELECT DISTINCT run_id FROM workflow_steps") == kept
    assert _ids(store, "SELECT DISTINCT run_id FROM workflow_memos") == kept
    assert _ids(store, "SELECT DISTINCT run_id FROM run_events") == kept
    assert _ids(store, "SELECT id FROM workflow_approvals") == {"a-old-waiting"}
    assert _ids(store, "SELECT span_id FROM trace_spans") == {f"s-{r}" for r in kept}
    assert _ids(store, "SELECT id FROM model_calls") == {f"m-{r}" for r in kept} | {"m-free-new"}
    assert _ids(store, "SELECT id FROM serve_requests") == {"r-new"}
    # a second prune finds nothing
    assert prune(store, older_than=30 * DAY, now=NOW).total == 0


def test_parse_age_reads_units_and_refuses_nonsense() -> None:
    from keel.errors import UserError

    assert parse_age("30d") == 30 * DAY and parse_age("12h") == 12 * 3600 and parse_age("2w") == 14 * DAY
    assert parse_age("7") == 7 * DAY
    for bad in ("", "thirty days", "-1d", "0d", "5y"):
        with pytest.raises(UserError):
            parse_age(bad)


def test_retention_thread_prunes_periodically(store) -> None:
    _seed(store)
    thread = RetentionThread(store, older_than=30 * DAY, interval=0.05)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while thread.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        thread.stop()
    assert thread.last_error is None and thread.runs >= 2
    assert _ids(store, "SELECT id FROM workflow_runs") == {"old-running", "old-waiting", "new-ok"}


def _keel(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_keel_store_prune_cli(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(url=url)
    _seed(s)
    s.close()
    env = {"KEEL_STORE_URL": url}
    dry = _keel("store", "prune", "--older-than", "30d", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    counts = json.loads(dry.stdout)["counts"]
    assert counts["workflow_runs"] == 3 and json.loads(dry.stdout)["dry_run"] is True
    done = _keel("store", "prune", "--older-than", "30d", env=env)
    assert done.returncode == 0, done.stderr
    assert "deleted 3 runs" in done.stdout
    s = open_store(url=url)
    assert _ids(s, "SELECT id FROM workflow_runs") == {"old-running", "old-waiting", "new-ok"}
    s.close()
    bad = _keel("store", "prune", "--older-than", "soon", env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr + bad.stdout
    assert "cannot read 'soon' as an age" in bad.stderr + bad.stdout
