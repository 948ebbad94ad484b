from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from keel.store import MIGRATIONS, ModelCallRecord, ModelCalls, SQLiteStore, open_store


def test_store_is_created_under_keel_home_in_wal_mode(keel_home: Path) -> None:
    store = open_store()
    assert store.path == keel_home / "keel.db"
    assert store.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    assert store.applied_migrations() == [m.name for m in MIGRATIONS]
    store.close()


def test_migrations_apply_once(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "k.db", migrate=False)
    assert first.migrate() == [m.name for m in MIGRATIONS]
    assert first.migrate() == []
    second = SQLiteStore(tmp_path / "k.db")  # opening again applies nothing
    assert second.pending_migrations() == []
    first.close()
    second.close()


def test_model_call_round_trip(tmp_path: Path) -> None:
    calls = ModelCalls(SQLiteStore(tmp_path / "k.db"))
    rec = ModelCallRecord(provider="openai", model="gpt-4.1-mini", status="ok", latency_ms=12.5,
                          input_tokens=10, output_tokens=3, cached_tokens=2, ttft_ms=4.0,
                          cost_usd=0.0001, stream=True, tags={"run": "r1"}, trace_id="t1")
    calls.record(rec)
    assert calls.recent() == [rec]
    assert calls.for_trace("t1") == [rec]
    assert calls.for_trace("other") == []


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "k.db")
    store.execute("CREATE TABLE t (x TEXT)")
    try:
        with store.transaction():
            store.execute("INSERT INTO t VALUES ('a')")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert store.query("SELECT count(*) AS n FROM t")[0]["n"] == 0


_WRITER = textwrap.dedent("""
    import sys, uuid
    from keel.store import SQLiteStore
    store = SQLiteStore(sys.argv[1])
    store.execute("CREATE TABLE IF NOT EXISTS batches (batch TEXT, i INTEGER, payload TEXT)")
    first = True
    while True:
        batch = uuid.uuid4().hex
        with store.transaction():
            for i in range(50):
                store.execute("INSERT INTO batches VALUES (?, ?, ?)", (batch, i, "x" * 2000))
        if first:  # one whole batch is on disk: the test may kill us from here on
            print("committed", flush=True)
            first = False
""")


def test_store_survives_kill_9_mid_write(tmp_path: Path) -> None:
    """A writer killed with SIGKILL mid-transaction leaves a sound file with whole batches only."""
    db = tmp_path / "crash.db"
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "committed"
        time.sleep(0.1 + 0.2 * round_)  # let it commit more batches and be mid-way through one
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL

        store = SQLiteStore(db)
        assert store.integrity_check() == "ok"
        sizes = store.query("SELECT batch, count(*) AS n FROM batches GROUP BY batch")
        assert sizes, "the writer committed nothing before it was killed"
        assert {row["n"] for row in sizes} == {50}, "a torn transaction is visible"
        store.close()
    # and plain sqlite3 agrees the file is sound
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_background_checkpoints_keep_commits_from_copying_the_wal(tmp_path: Path) -> None:
    """With ``checkpoint_in_background``, a commit only appends to the WAL (the database file
    does not grow however large the WAL gets); the checkpoint thread then copies it over."""
    import time

    store = SQLiteStore(tmp_path / "keel.db")
    db = tmp_path / "keel.db"

    def write(n: int) -> None:
        for _ in range(n):
            with store.transaction():
                store.execute("INSERT INTO blobs (body) VALUES (?)", ("x" * 3000,))

    store.execute("CREATE TABLE blobs (body TEXT)")
    write(20)  # warm up: the table's first pages
    store._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = db.stat().st_size
    store.checkpoint_in_background(interval=3600)  # a thread that will not run in this test's time
    write(1500)  # ~1,500 pages: past SQLite's 1,000-page autocheckpoint
    assert db.stat().st_size == before, "a commit checkpointed the WAL into the database file"
    store.stop_background_checkpoints()
    store.checkpoint_in_background(interval=0.05)
    deadline = time.monotonic() + 30  # the copy may be seen mid-way: wait for all of it
    while db.stat().st_size <= before + 1000 * 3000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db.stat().st_size > before + 1000 * 3000, "the checkpoint thread did not copy the WAL over"
    store.close()
    assert SQLiteStore(tmp_path / "keel.db").query("SELECT COUNT(*) AS n FROM blobs")[0]["n"] == 1520


def test_background_checkpoints_keep_the_wal_bounded_under_steady_writes(tmp_path: Path) -> None:
    """A PASSIVE checkpoint never finds a busy WAL idle, and SQLite only starts the WAL over
    after a checkpoint that copied all of it: without the writer-locked TRUNCATE past
    ``wal_limit`` the file grew without end (576 MB after 3,500 served requests)."""
    store = SQLiteStore(tmp_path / "keel.db")
    store.execute("CREATE TABLE blobs (body TEXT)")
    store.checkpoint_in_background(interval=0.01, wal_limit=256 << 10)
    wal = tmp_path / "keel.db-wal"
    biggest = 0
    for _ in range(3000):  # ~12 MB of WAL frames
        with store.transaction():
            store.execute("INSERT INTO blobs (body) VALUES (?)", ("x" * 3000,))
        biggest = max(biggest, wal.stat().st_size if wal.exists() else 0)
    store.stop_background_checkpoints()
    assert store.wal_truncations >= 1
    assert biggest < 8 << 20, f"the WAL grew to {biggest} bytes"
    assert store.query("SELECT COUNT(*) AS n FROM blobs")[0]["n"] == 3000
    store.close()


def test_commits_truncate_the_wal_themselves_when_the_checkpoint_thread_falls_behind(tmp_path: Path) -> None:
    """On a starved CPU the checkpoint thread may not run for seconds (CI saw 8.7 MB of WAL
    with a 256 kB limit): past four times the limit the committing thread truncates it."""
    store = SQLiteStore(tmp_path / "keel.db")
    store.execute("CREATE TABLE blobs (body TEXT)")
    store.checkpoint_in_background(interval=3600, wal_limit=256 << 10)  # the thread never wakes
    wal = tmp_path / "keel.db-wal"
    biggest = 0
    for _ in range(1500):  # ~6 MB of WAL frames
        with store.transaction():
            store.execute("INSERT INTO blobs (body) VALUES (?)", ("x" * 3000,))
        biggest = max(biggest, wal.stat().st_size if wal.exists() else 0)
    assert store.wal_truncations >= 4
    assert biggest < (1 << 20) + (64 << 10), f"the WAL grew to {biggest} bytes"
    store.stop_background_checkpoints()
    assert store.query("SELECT COUNT(*) AS n FROM blobs")[0]["n"] == 1500
    store.close()


async def test_writes_of_one_loop_turn_share_a_commit_and_fail_alone(tmp_path: Path) -> None:
    """Group commit: concurrent writers on one event loop commit in one transaction; a write
    that raises rolls back alone (its waiter gets the error), the others are on disk."""
    import asyncio

    import pytest

    store = SQLiteStore(tmp_path / "keel.db")
    store.execute("CREATE TABLE t (x TEXT PRIMARY KEY)")
    group = store.commit_group()

    def insert(x: str) -> str:
        store.execute("INSERT INTO t VALUES (?)", (x,))
        return x

    def half_then_fail() -> None:
        store.execute("INSERT INTO t VALUES ('half')")
        store.execute("INSERT INTO t VALUES ('a')")  # duplicate key: the write fails

    results = await asyncio.gather(*(group.commit(lambda x=x: insert(x)) for x in "abcde"),
                                   group.commit(half_then_fail), return_exceptions=True)
    assert results[:5] == list("abcde")
    assert isinstance(results[5], Exception) and "UNIQUE" in str(results[5])
    assert (group.commits, group.writes) == (1, 6)
    other = SQLiteStore(tmp_path / "keel.db")  # another connection sees what was committed
    assert sorted(r["x"] for r in other.query("SELECT x FROM t")) == list("abcde")
    assert store.commit_group() is group

    def refuse() -> None:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        await group.commit(refuse)
    store.close()
    other.close()


_LOCK_HOLDER = textwrap.dedent("""
    import sys, time
    from keel.store import SQLiteStore
    store = SQLiteStore(sys.argv[1])
    with store.transaction():
        store.execute("INSERT INTO t VALUES ('holder')")
        print("holding", flush=True)
        time.sleep(60)
""")


def test_a_writer_killed_while_holding_the_writer_lock_does_not_block_the_next(tmp_path: Path) -> None:
    """Writers queue on ``keel.db.writelock`` (flock); the kernel drops a dead holder's lock,
    so the next writer goes on and the torn transaction is rolled back."""
    db = tmp_path / "keel.db"
    store = SQLiteStore(db)
    store.execute("CREATE TABLE t (x TEXT)")
    holder = subprocess.Popen([sys.executable, "-c", _LOCK_HOLDER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert (tmp_path / "keel.db.writelock").exists()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        store.execute("INSERT INTO t VALUES ('next')")
    finally:
        if holder.poll() is None:
            holder.kill()
    assert [r["x"] for r in store.query("SELECT x FROM t")] == ["next"]
    store.close()


def test_new_ids_are_hex_like_uuids_unique_and_sort_by_time() -> None:
    from keel.ids import new_id

    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    earlier = new_id()
    time.sleep(0.002)
    assert earlier < new_id()  # the first 12 digits are milliseconds since the epoch
    assert abs(int(earlier[:12], 16) / 1000 - time.time()) < 5


def test_stored_json_text_reads_back_as_json_dumps_would() -> None:
    import json
    import math

    from keel import jsontext

    doc = {"text": "héllo ✓", "n": 3, "x": 1.5, "none": None, "list": [1, {"a": True}], 7: "int key"}
    assert json.loads(jsontext.dumps(doc)) == json.loads(json.dumps(doc))
    assert json.loads(jsontext.dumps({"big": 2**70})) == {"big": 2**70}  # past orjson: json.dumps
    assert json.loads(jsontext.dumps({"bad": math.nan, "inf": math.inf})) == {"bad": None, "inf": None}
    assert json.loads(jsontext.dumps({"obj": object()}, default=lambda o: "an object")) == {"obj": "an object"}
    try:
        jsontext.dumps({"obj": object()})
    except TypeError:
        pass
    else:
        raise AssertionError("an object JSON cannot hold was stored")
