"""Idempotency keys (issue 17): ``POST /v1/workflows/{name}/runs`` with an ``Idempotency-Key``
header, retried on another ``keel serve`` sharing the store (SQLite under one KEEL_HOME, and
PostgreSQL), returns the run the first request started; a key reused for another request is a 422."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.operate.conftest import echo3, start_server
from tests.operate.workers import env, publish_to


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else None


def _runs(home: Path, url: str | None) -> list[dict]:
    from keel.store import open_store

    store = open_store(home, url=url or "")
    try:
        return store.query("SELECT id, input FROM workflow_runs ORDER BY created_at")
    finally:
        store.close()


def test_a_retried_start_returns_the_same_run_on_either_server(tmp_path: Path, url: str | None) -> None:
    home = tmp_path / "home"
    home.mkdir()
    publish_to(home, echo3("echo3"), "echo3", url=url)
    environ = env(home, tmp_path, url=url)
    a = start_server(home, env=environ)
    b = start_server(home, env=environ)
    try:
        def post(server, body: dict, key: str | None) -> httpx.Response:
            headers = {"Idempotency-Key": key} if key is not None else {}
            return httpx.post(f"{server.url}/v1/workflows/echo3/runs", json=body, headers=headers, timeout=60)

        first = post(a, {"input": "order 1"}, "order-1")
        assert first.status_code == 200, first.text
        assert first.json()["output"] == "order 1" and "Idempotent-Replayed" not in first.headers
        # the client lost the answer and retries through the other server: the same run, not a second one
        again = post(b, {"input": "order 1"}, "order-1")
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"] and again.json()["output"] == "order 1"
        assert again.headers["Idempotent-Replayed"] == "true"
        later = post(a, {"input": "order 1", "wait": False}, "order-1")  # wait is not part of the request's identity
        assert later.status_code == 202 and later.json()["id"] == first.json()["id"], later.text
        # the same key for a different request is the client's bug
        reused = post(b, {"input": "order 2"}, "order-1")
        assert reused.status_code == 422, reused.text
        assert reused.json()["error"]["field"] == "header.Idempotency-Key"
        assert "different request" in reused.json()["error"]["message"]
        bad = post(a, {"input": "order 1"}, "x" * 300)
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "header.Idempotency-Key", bad.text
        # retries racing on both servers at once: one run
        with ThreadPoolExecutor(4) as pool:
            raced = list(pool.map(lambda s: post(s, {"input": "order 3"}, "order-3"), [a, b, a, b]))
        assert all(r.status_code in (200, 202) for r in raced), [r.text for r in raced]
        assert len({r.json()["id"] for r in raced}) == 1
        # without a key, each request is a run of its own
        assert post(a, {"input": "no key"}, None).json()["id"] != post(b, {"input": "no key"}, None).json()["id"]
    finally:
        a.stop()
        b.stop()
    runs = _runs(home, url)
    assert sorted(r["input"] for r in runs) == sorted(['"order 1"', '"order 3"', '"no key"', '"no key"']), runs
    assert "Traceback" not in a.log_text() + b.log_text()


def test_an_expired_key_serves_a_new_request_and_a_started_run_keeps_its_key(tmp_path: Path) -> None:
    """Found in review: an expired key sent with a different request got 422 until the next sweep;
    and a request cancelled after its run started gave the key back, so a retry ran it twice."""
    from keel.operate.server.idempotency import KEEP_SECONDS, Idempotency
    from keel.store import SQLiteStore

    store = SQLiteStore(tmp_path / "keel.db")
    idem = Idempotency(store)
    first, fresh = idem.reserve("k1", "retry-me", "fingerprint-a")
    assert fresh
    store.execute("UPDATE run_idempotency SET created_at = created_at - ?", (KEEP_SECONDS + 60,))
    second, fresh = idem.reserve("k1", "retry-me", "fingerprint-b")  # a day later, another request
    assert fresh and second != first
    # a run that exists keeps its key even if the request that started it is given back
    store.execute("INSERT INTO workflow_runs (id, workflow, version, version_id, status, seq, context, trace_id,"
                  " created_at, updated_at) VALUES (?, 'w', 1, 'v1', 'running', 0, '{}', 't', 0, 0)", (second,))
    idem.release("k1", "retry-me", second)
    assert idem.reserve("k1", "retry-me", "fingerprint-b") == (second, False)
    store.close()
