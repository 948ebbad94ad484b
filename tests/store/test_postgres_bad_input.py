"""Bad store configuration on PostgreSQL: one clear line with the fix from `keel doctor` and at
start (`keel runs list`, `keel run`, `keel serve`), never a traceback, never a half-applied migration."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from keel.errors import StoreError
from keel.store import MIGRATIONS, Migration
from keel.store.postgres import PostgresStore
from tests.pg import TestPostgres


def keel(*args: str, url: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEEL_STORE_URL": url}
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def one_clean_line(r: subprocess.CompletedProcess[str], says: str) -> None:
    """Exit 2, no traceback, `error: ...` naming ``says`` on one line, then `fix: ...`."""
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()[-2:]  # `keel serve` prints its banner first
    assert lines[0].startswith("error: ") and says in lines[0], r.stderr
    assert lines[1].strip().startswith("fix: "), r.stderr
    assert sum(line.startswith("error: ") for line in r.stderr.splitlines()) == 1, r.stderr


def doctor_line(r: subprocess.CompletedProcess[str], name: str) -> str:
    assert "Traceback" not in r.stdout + r.stderr
    for line in r.stdout.splitlines():
        if line[2:].startswith(f"{name}: "):
            return line
    raise AssertionError(f"no {name!r} line in:\n{r.stdout}")


@pytest.fixture
def password_role(pg_server: TestPostgres) -> str:
    """A role that must give its password ('right') over TCP; the role's name."""
    pg_server.admin("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'keel_pw') THEN"
                    " CREATE ROLE keel_pw LOGIN PASSWORD 'right'; END IF; END $$")
    hba = pg_server.data_dir / "pg_hba.conf"
    if "keel_pw" not in hba.read_text():  # the superuser keeps trust; this role needs its password
        hba.write_text("host all keel_pw 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        pg_server.admin("SELECT pg_reload_conf()")
    return "keel_pw"


def test_doctor_on_a_healthy_database_reports_server_extensions_and_migrations(pg_url: str) -> None:
    r = keel("doctor", "--offline", url=pg_url)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PostgreSQL" in doctor_line(r, "store")
    assert "Keel needs 13 or newer" in doctor_line(r, "store server")
    assert "pgvector" in doctor_line(r, "store extensions")
    pending = doctor_line(r, "store migrations")
    assert f"0 applied, {len(MIGRATIONS)} pending" in pending, "doctor migrated the store itself"
    assert keel("runs", "list", url=pg_url).returncode == 0  # any command migrates
    r = keel("doctor", "--offline", url=pg_url)
    assert f"all {len(MIGRATIONS)} applied" in doctor_line(r, "store migrations")


def test_a_wrong_password_is_one_line_from_doctor_and_at_start(pg_server: TestPostgres, password_role: str) -> None:
    url = f"postgresql://{password_role}:wrong@127.0.0.1:{pg_server.port}/postgres"
    r = keel("doctor", "--offline", url=url)
    assert r.returncode == 1
    line = doctor_line(r, "store")
    assert "refused the password" in line and "wrong" not in line and "keel_pw:***@" in line
    one_clean_line(keel("runs", "list", url=url), "refused the password")
    assert "wrong" not in keel("runs", "list", url=url).stderr
    right = f"postgresql://{password_role}:right@127.0.0.1:{pg_server.port}/postgres"
    assert PostgresStore(right, migrate=False).query("SELECT current_user AS u") == [{"u": "keel_pw"}]


def test_a_missing_database_is_one_line_from_doctor_and_at_start(pg_server: TestPostgres) -> None:
    url = pg_server.url("no_such_database")
    r = keel("doctor", "--offline", url=url)
    assert r.returncode == 1 and "does not exist" in doctor_line(r, "store")
    assert "createdb" in r.stdout
    one_clean_line(keel("runs", "list", url=url), "does not exist")
    one_clean_line(keel("run", "anything", "-i", "x", url=url), "does not exist")


def test_no_server_at_the_address_is_one_line_from_doctor_and_at_start(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://keel:secret@127.0.0.1:{port}/keel"
    r = keel("doctor", "--offline", url=url)
    assert r.returncode == 1 and "cannot connect to PostgreSQL" in doctor_line(r, "store")
    assert "secret" not in r.stdout
    one_clean_line(keel("serve", "--port", "0", url=url, timeout=60), "cannot connect to PostgreSQL")


def test_a_url_that_is_no_store_url_is_one_line(tmp_path: Path) -> None:
    one_clean_line(keel("runs", "list", url="mysql://u:pw@host/db"), "is not a store URL")
    assert "pw" not in keel("runs", "list", url="mysql://u:pw@host/db").stderr


def test_a_store_migrated_by_a_newer_keel_is_refused_with_one_line(pg_url: str) -> None:
    PostgresStore(pg_url).execute("INSERT INTO keel_migrations (name, applied_at) VALUES ('9001_from_the_future', 0)")
    r = keel("doctor", "--offline", url=pg_url)
    assert r.returncode == 1
    assert "migrated by a newer Keel" in doctor_line(r, "store migrations") and "9001_from_the_future" in r.stdout
    one_clean_line(keel("runs", "list", url=pg_url), "migrated by a newer Keel")
    one_clean_line(keel("serve", "--port", "0", url=pg_url, timeout=60), "migrated by a newer Keel")


def test_the_same_refusal_on_sqlite(keel_home: Path, tmp_path: Path) -> None:
    from keel.store import SQLiteStore

    s = SQLiteStore(tmp_path / "k.db")
    s.execute("INSERT INTO keel_migrations (name, applied_at) VALUES ('9001_from_the_future', 0)")
    s.close()
    with pytest.raises(StoreError, match="migrated by a newer Keel"):
        SQLiteStore(tmp_path / "k.db")


def test_a_server_older_than_13_is_refused(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # No PostgreSQL 12 here: raise the bar above the real server's version instead.
    import keel.store.postgres as pg

    monkeypatch.setattr(pg, "MIN_SERVER_VERSION", 990000)
    with pytest.raises(StoreError) as e:
        PostgresStore(pg_url)
    assert "Keel needs 13 or newer" in e.value.message and "upgrade" in (e.value.hint or "")


def test_a_failing_migration_leaves_nothing_behind(pg_url: str) -> None:
    s = PostgresStore(pg_url)
    bad = Migration("9002_half", ("CREATE TABLE half_done (x TEXT)", "CREATE TABLE broken (x NOSUCHTYPE)"))
    MIGRATIONS.append(bad)
    try:
        with pytest.raises(StoreError) as e:
            s.migrate()
        assert "migration 9002_half failed" in e.value.message and "nothing of it was applied" in e.value.message
    finally:
        MIGRATIONS.remove(bad)
    assert s.query("SELECT 1 AS x FROM pg_tables WHERE tablename = 'half_done'") == []
    assert s.query("SELECT name FROM keel_migrations WHERE name = '9002_half'") == []
    assert s.pending_migrations() == []  # the store is as it was: usable by this Keel
    s.close()
