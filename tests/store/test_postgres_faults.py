"""Transient PostgreSQL failures: what is retried (safely), what becomes a clear error, and that
Keel carries on when the server comes back. Each test that stops a server starts its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keel.errors import StoreError
from keel.store.postgres import PostgresStore
from tests.operate.conftest import start_server
from tests.pg import PostgresUnavailable, TestPostgres, start_postgres


@pytest.fixture
def own_server() -> Iterator[TestPostgres]:
    """A PostgreSQL server of this test's own, free to stop and start."""
    try:
        server = start_postgres()
    except PostgresUnavailable as e:
        pytest.skip(f"PostgreSQL cannot start here: {e}")
    try:
        yield server
    finally:
        server.stop()


def test_a_deadlock_is_retried_whole_by_run_transaction(pg_url: str) -> None:
    """Two transactions lock two rows in opposite orders: PostgreSQL aborts one (40P01);
    run_transaction runs it again, whole, and both end up committed."""
    store = PostgresStore(pg_url, max_size=4)
    store.execute("CREATE TABLE acct (id TEXT PRIMARY KEY, n BIGINT NOT NULL)")
    store.executemany("INSERT INTO acct VALUES (?, ?)", [("a", 0), ("b", 0)])
    both_locked_first = threading.Barrier(2, timeout=30)
    attempts = {"ab": 0, "ba": 0}
    errors: list[BaseException] = []

    def transfer(first: str, second: str) -> None:
        def work() -> None:
            attempts[first + second] += 1
            store.execute("UPDATE acct SET n = n + 1 WHERE id = ?", (first,))
            if attempts[first + second] == 1:
                both_locked_first.wait()  # each holds its first row: the second update deadlocks
            store.execute("UPDATE acct SET n = n + 1 WHERE id = ?", (second,))

        try:
            store.run_transaction(work)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=transfer, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(attempts.values()) == [1, 2], "neither transaction was aborted and retried"
    assert store.query("SELECT id, n FROM acct ORDER BY id") == [{"id": "a", "n": 2}, {"id": "b", "n": 2}]
    store.close()


def test_a_deadlock_outside_run_transaction_is_a_store_error_not_a_psycopg_one(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    with pytest.raises(StoreError, match="store write failed"):
        store.execute("SELECT pg_advisory_xact_lock(1); RAISE")  # a syntax error: not transient
    store.close()


def test_a_restarted_server_is_reconnected_and_an_outage_is_one_clear_error(own_server: TestPostgres) -> None:
    url = own_server.create_database()
    store = PostgresStore(url, min_size=3, max_size=3)
    store.execute("CREATE TABLE t (x TEXT)")
    own_server.stop(delete=False)
    with pytest.raises(StoreError) as e:
        store.query("SELECT COUNT(*) AS n FROM t")
    assert "is unreachable" in e.value.message and "\n" not in e.value.message
    with pytest.raises(StoreError) as e:
        store.execute("INSERT INTO t VALUES ('lost?')")
    own_server.start()
    # every pooled connection died with the old server: reads and transactions get fresh ones
    assert store.query("SELECT COUNT(*) AS n FROM t") == [{"n": 0}]
    store.run_transaction(lambda: store.execute("INSERT INTO t VALUES ('after')"))
    with store.transaction():
        store.execute("INSERT INTO t VALUES ('again')")
    assert store.query("SELECT x FROM t ORDER BY x") == [{"x": "after"}, {"x": "again"}]
    store.close()


def test_serve_answers_503_with_a_hint_while_postgresql_is_down_and_recovers(own_server: TestPostgres,
                                                                             tmp_path: Path) -> None:
    url = own_server.create_database()
    server = start_server(tmp_path, env={"KEEL_STORE_URL": url})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/readyz").status_code == 200
            assert client.get("/v1/runs").status_code == 200
            own_server.stop(delete=False)
            down = client.get("/v1/runs")
            assert down.status_code == 503, down.text
            body = down.json()["error"]
            assert body["code"] == "store_unavailable" and "unreachable" in body["message"]
            assert "keel doctor" in body["hint"] and down.headers["retry-after"]
            assert client.get("/readyz").status_code == 503
            own_server.start()
            assert client.get("/v1/runs").status_code == 200
            assert client.get("/readyz").status_code == 200
        assert "Traceback" not in server.log_text()
    finally:
        server.stop()
