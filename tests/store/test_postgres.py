"""The store on a real PostgreSQL server: the same interface, SQL, migrations and row types as SQLite."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.errors import StoreError
from keel.store import MIGRATIONS, ModelCallRecord, ModelCalls, SQLiteStore, open_store
from keel.store.postgres import PostgresStore
from tests.pg import TestPostgres


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The same test on both backends."""
    if request.param == "sqlite":
        s: Any = SQLiteStore(tmp_path / "keel.db")
    else:
        s = PostgresStore(request.getfixturevalue("pg_url"))
    try:
        yield s
    finally:
        s.close()


def test_open_store_picks_postgresql_from_keel_store_url(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                          keel_home: Path) -> None:
    monkeypatch.setenv("KEEL_STORE_URL", pg_url)
    s = open_store()
    assert isinstance(s, PostgresStore) and s.dialect == "postgresql"
    assert s.applied_migrations() == [m.name for m in MIGRATIONS]
    s.close()
    assert not (keel_home / "keel.db").exists(), "a SQLite file was made although the store is PostgreSQL"


def test_open_store_reads_store_from_keel_toml(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                               keel_home: Path) -> None:
    monkeypatch.delenv("KEEL_STORE_URL", raising=False)
    (keel_home / "keel.toml").write_text(f'store = "{pg_url}"\n')
    s = open_store()
    assert isinstance(s, PostgresStore)
    s.close()


def test_open_store_without_a_url_is_sqlite_under_keel_home(monkeypatch: pytest.MonkeyPatch,
                                                            keel_home: Path) -> None:
    monkeypatch.delenv("KEEL_STORE_URL", raising=False)
    s = open_store()
    assert isinstance(s, SQLiteStore) and s.path == keel_home / "keel.db"
    s.close()


def test_migrations_apply_once(pg_url: str) -> None:
    first = PostgresStore(pg_url, migrate=False)
    assert [m.name for m in first.pending_migrations()] == [m.name for m in MIGRATIONS]
    assert first.migrate() == [m.name for m in MIGRATIONS]
    assert first.migrate() == []
    second = PostgresStore(pg_url)
    assert second.pending_migrations() == []
    first.close()
    second.close()


_MIGRATOR = textwrap.dedent("""
    import sys
    from keel.store.postgres import PostgresStore
    s = PostgresStore(sys.argv[1], migrate=False)
    print(",".join(s.migrate()))
""")


def test_two_processes_migrating_at_once_apply_each_migration_once(pg_url: str) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _MIGRATOR, pg_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    applied = [name for out, _ in outs for name in out.strip().split(",") if name]
    assert sorted(applied) == sorted(m.name for m in MIGRATIONS)
    s = PostgresStore(pg_url, migrate=False)
    rows = s.query("SELECT name FROM keel_migrations ORDER BY id")
    assert [r["name"] for r in rows] == [m.name for m in MIGRATIONS]
    s.close()


def test_rows_have_the_same_python_types_on_both_backends(store: Any) -> None:
    store.execute("CREATE TABLE kinds (i INTEGER, b BIGINT, f DOUBLE PRECISION, r REAL, t TEXT, y BLOB)")
    big = 2**62 + 1
    store.execute("INSERT INTO kinds VALUES (?, ?, ?, ?, ?, ?)",
                  (True, big, 0.5, 1.25, "50% of 'a?' -- not a comment", b"\x00\xff"))
    store.execute("INSERT INTO kinds VALUES (?, ?, ?, ?, ?, ?)", (7, 3, 2.0, None, None, None))
    rows = store.query("SELECT * FROM kinds ORDER BY b")
    assert rows == [
        {"i": 7, "b": 3, "f": 2.0, "r": None, "t": None, "y": None},
        {"i": 1, "b": big, "f": 0.5, "r": 1.25, "t": "50% of 'a?' -- not a comment", "y": b"\x00\xff"},
    ]
    assert [type(v) for v in rows[1].values()] == [int, int, float, float, str, bytes]
    agg = store.query("SELECT SUM(i) AS si, SUM(b) AS sb, SUM(f) AS sf, COUNT(*) AS n, MAX(t) AS mt,"
                      " COALESCE(SUM(i), 0) + 1 AS nxt FROM kinds WHERE t LIKE '50%' OR t IS NULL")
    assert agg == [{"si": 8, "sb": big + 3, "sf": 2.5, "n": 2, "mt": "50% of 'a?' -- not a comment", "nxt": 9}]
    assert [type(v) for v in agg[0].values()] == [int, int, float, int, str, int]


def test_execute_returns_rows_changed_and_transactions_roll_back(store: Any) -> None:
    store.execute("CREATE TABLE t (x TEXT PRIMARY KEY, n INTEGER)")
    store.executemany("INSERT INTO t VALUES (?, ?)", [("a", 1), ("b", 2), ("c", 3)])
    assert store.execute("UPDATE t SET n = n + 1 WHERE n >= ?", (2,)) == 2
    with pytest.raises(RuntimeError), store.transaction():
        store.execute("INSERT INTO t VALUES ('d', 4)")
        assert store.query("SELECT COUNT(*) AS n FROM t")[0]["n"] == 4  # seen inside
        raise RuntimeError("boom")
    assert store.query("SELECT COUNT(*) AS n FROM t")[0]["n"] == 3
    with store.transaction():
        store.execute("INSERT INTO t VALUES ('d', 4)")
    assert store.query("SELECT x FROM t ORDER BY x") == [{"x": x} for x in "abcd"]


def test_a_constraint_violation_is_a_store_error_and_the_connection_stays_usable(store: Any) -> None:
    store.execute("CREATE TABLE t (x TEXT PRIMARY KEY)")
    store.execute("INSERT INTO t VALUES ('a')")
    for _ in range(3):
        with pytest.raises(StoreError, match="store write failed"):
            store.execute("INSERT INTO t VALUES ('a')")
    assert store.execute("INSERT INTO t VALUES ('a') ON CONFLICT (x) DO NOTHING") == 0
    assert store.query("SELECT x FROM t") == [{"x": "a"}]


async def test_commit_group_rolls_back_one_failing_write_alone(store: Any) -> None:
    store.execute("CREATE TABLE t (x TEXT PRIMARY KEY)")
    store.execute("INSERT INTO t VALUES ('taken')")
    group = store.commit_group()

    def insert(x: str) -> Any:
        return lambda: store.execute("INSERT INTO t VALUES (?)", (x,))

    import asyncio

    results = await asyncio.gather(group.commit(insert("a")), group.commit(insert("taken")),
                                   group.commit(insert("b")), return_exceptions=True)
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], StoreError)
    assert group.commits == 1
    assert [r["x"] for r in store.query("SELECT x FROM t ORDER BY x")] == ["a", "b", "taken"]


def test_model_call_round_trip(store: Any) -> None:
    calls = ModelCalls(store)
    rec = ModelCallRecord(provider="openai", model="gpt-4.1-mini", status="ok", latency_ms=12.5,
                          input_tokens=10, output_tokens=3, cached_tokens=2, ttft_ms=4.0,
                          cost_usd=0.0001, stream=True, tags={"run": "r1"}, trace_id="t1")
    calls.record(rec)
    assert calls.recent() == [rec]
    assert calls.for_trace("t1") == [rec]


def test_wrong_password_missing_database_and_no_server_are_one_line_each(pg_server: TestPostgres) -> None:
    pg_server.admin("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'keel_pw') THEN"
                    " CREATE ROLE keel_pw LOGIN PASSWORD 'right'; END IF; END $$")
    hba = pg_server.data_dir / "pg_hba.conf"
    # trust for the superuser only; everyone else needs a password
    if "keel_pw" not in hba.read_text():
        hba.write_text("host all keel_pw 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        pg_server.admin("SELECT pg_reload_conf()")
    wrong = f"postgresql://keel_pw:wrong@127.0.0.1:{pg_server.port}/postgres"
    with pytest.raises(StoreError) as e:
        PostgresStore(wrong)
    assert "refused the password" in e.value.message and "wrong" not in e.value.message
    assert "keel_pw:***@" in e.value.message and "password" in (e.value.hint or "")

    missing = pg_server.url("no_such_db_here")
    with pytest.raises(StoreError) as e:
        PostgresStore(missing)
    assert "does not exist" in e.value.message and "createdb" in (e.value.hint or "")

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as e:
        PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout=3)
    assert "cannot connect to PostgreSQL" in e.value.message and "running" in (e.value.hint or "")
    for err in (e.value,):
        assert "\n" not in err.message


def test_open_store_of_another_home_reads_that_homes_keel_toml(pg_url: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEEL_STORE_URL", raising=False)
    other = tmp_path / "served-home"
    other.mkdir()
    (other / "keel.toml").write_text(f'store = "{pg_url}"\n[models]\nfast = "scripted:echo"\n')
    s = open_store(other)
    assert isinstance(s, PostgresStore) and s.url == pg_url
    s.close()
    plain = tmp_path / "plain-home"
    s = open_store(plain)
    assert isinstance(s, SQLiteStore) and s.path == plain / "keel.db"
    s.close()


def test_a_sqlite_url_names_the_file(tmp_path: Path) -> None:
    s = open_store(url=f"sqlite:///{tmp_path}/elsewhere.db")
    assert isinstance(s, SQLiteStore) and s.path == tmp_path / "elsewhere.db"
    s.close()
