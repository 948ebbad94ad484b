"""PostgreSQL transactions sent as pipelines (decision 0036): BEGIN with the first statement, the
deferred writes with COMMIT, and checked writes (a compare-and-set) that abort the transaction."""

from __future__ import annotations

import pytest

from keel.errors import StoreError
from keel.store.group import later
from keel.store.postgres import PostgresStore


class _Lost(Exception):
    pass


def _one_row(changed: int) -> None:
    if changed != 1:
        raise _Lost


def test_a_checked_write_that_changes_nothing_commits_nothing_and_the_connection_stays_usable(pg_url: str) -> None:
    """Each statement is used more often than psycopg's prepare threshold (5), in transactions that
    commit and in transactions a checked write aborts: a failed pipeline once left psycopg believing
    in a prepared statement the server never made ("prepared statement _pg3_N does not exist")."""
    store = PostgresStore(pg_url, max_size=2)
    try:
        store.execute("CREATE TABLE t (id TEXT PRIMARY KEY, v BIGINT)")
        store.execute("INSERT INTO t VALUES ('a', 0)")
        committed = lost = 0
        for i in range(24):
            try:
                with store.transaction():
                    later(store, "INSERT INTO t VALUES (?, 1)", (f"x{i}",))
                    later(store, "UPDATE t SET v = v + 1 WHERE id = ?", ("a" if i % 3 else "gone",), check=_one_row)
                    later(store, "INSERT INTO t VALUES (?, 2)", (f"y{i}",))
                    store.notify("keel_test", str(i))
                committed += 1
            except _Lost:
                lost += 1
            with store.transaction():  # the redo path of a group commit: flush inside the transaction
                later(store, "INSERT INTO t VALUES (?, 3)", (f"z{i}",))
                store.flush_deferred()
                assert store.query("SELECT COUNT(*) AS n FROM t WHERE id = ?", (f"z{i}",)) == [{"n": 1}]
        assert (committed, lost) == (16, 8)
        assert store.query("SELECT v FROM t WHERE id = 'a'") == [{"v": 16}]
        assert store.query("SELECT COUNT(*) AS n FROM t WHERE id LIKE 'x%' OR id LIKE 'y%'") == [{"n": 32}]
        assert store.query("SELECT COUNT(*) AS n FROM t WHERE id LIKE 'z%'") == [{"n": 24}]
        # an error of a plain write: nothing committed
        with pytest.raises(StoreError, match="duplicate key"), store.transaction():
            later(store, "INSERT INTO t VALUES ('b', 9)")
            later(store, "INSERT INTO t VALUES ('a', 9)")
        assert store.query("SELECT COUNT(*) AS n FROM t WHERE id = 'b'") == [{"n": 0}]
    finally:
        store.close()


def test_a_write_that_fails_under_its_savepoint_leaves_the_next_writes_and_the_connection_usable(pg_url: str) -> None:
    """A group commit writing its batch again, each write under a savepoint (found in review): the
    write after a failing one, with the same (prepared) statement, succeeds; a compare-and-set
    that changed nothing raises its own error before the writes after it; later transactions on the
    pooled connection work."""
    store = PostgresStore(pg_url, max_size=1)
    insert = "INSERT INTO s (id, v) VALUES (?, ?)"
    try:
        store.execute("CREATE TABLE s (id TEXT PRIMARY KEY, v BIGINT)")
        for i in range(4):  # the failing write below is the statement's 5th use: psycopg prepares it there
            with store.transaction():
                later(store, insert, (f"warm{i}", i))
        outcomes = []
        with store.transaction():
            store.execute("SAVEPOINT keel_group")
            for key, check in (("warm0", None), ("fresh", None), ("other", _one_row)):
                store.execute("SAVEPOINT keel_group")
                try:
                    if key == "warm0":  # fails (duplicate key), the statement after it never runs
                        later(store, "INSERT INTO s (v, id) VALUES (?, ?)", (1, key))
                        later(store, insert, ("never", 1))
                    elif check is None:
                        later(store, insert, (key, 1))
                    else:
                        later(store, "UPDATE s SET v = 2 WHERE id = 'nobody'", check=check)
                        later(store, insert, (key, 1))
                    store.flush_deferred()
                except (StoreError, _Lost) as e:
                    store.drop_deferred()
                    store.execute("ROLLBACK TO keel_group")
                    outcomes.append(type(e).__name__)
                else:
                    outcomes.append("ok")
                store.execute("RELEASE keel_group")
        assert outcomes == ["StoreError", "ok", "_Lost"]
        for i in range(8):
            with store.transaction():
                later(store, insert, (f"after{i}", i))
        ids = {r["id"] for r in store.query("SELECT id FROM s")}
        assert "fresh" in ids and "other" not in ids and "never" not in ids and {f"after{i}" for i in range(8)} <= ids
    finally:
        store.close()


async def test_a_write_rolled_back_under_its_savepoint_sends_no_notification(pg_url: str) -> None:
    """A group commit writing its batch again, one savepoint per write, drops the notifications the
    failed write queued (live followers would see events that are not in the table) and keeps the
    others', including one the failed write queued again (the earlier write still sends it)."""
    import asyncio

    import psycopg

    store = PostgresStore(pg_url)
    listener = psycopg.connect(pg_url, autocommit=True)
    try:
        store.execute("CREATE TABLE n (id TEXT PRIMARY KEY)")
        store.execute("INSERT INTO n VALUES ('taken')")
        listener.execute("LISTEN keel_test_notes")
        group = store.commit_group()

        def write(key: str, *payloads: str):  # type: ignore[no-untyped-def]
            def run() -> int:
                for payload in payloads:
                    store.notify("keel_test_notes", payload)
                return store.execute("INSERT INTO n VALUES (?)", (key,))
            return run

        results = await asyncio.gather(group.commit(write("a", "a", "shared")),
                                       group.commit(write("taken", "shared", "failed")),
                                       group.commit(write("b", "b")), return_exceptions=True)
        assert results[0] == 1 and results[2] == 1 and isinstance(results[1], StoreError)
        assert group.commits == 1
        store.notify("keel_test_notes", "end")  # outside a transaction: sent at once, after the COMMIT
        got = []
        for note in listener.notifies(timeout=30):
            got.append(note.payload)
            if note.payload == "end":
                break
        assert got == ["a", "shared", "b", "end"]
        assert [r["id"] for r in store.query("SELECT id FROM n ORDER BY id")] == ["a", "b", "taken"]
    finally:
        listener.close()
        store.close()


async def test_a_flush_waits_for_the_batch_committing_off_the_loop(pg_url: str) -> None:
    """``keel serve`` commits off the loop, and its shutdown flushes what is still queued on the loop:
    after the batch committing on the worker thread, not in a second transaction beside it."""
    import asyncio
    import threading

    store = PostgresStore(pg_url)
    store.commit_off_loop = True
    release = threading.Event()
    try:
        store.execute("CREATE TABLE f (id BIGSERIAL PRIMARY KEY, who TEXT)")
        group = store.commit_group()
        assert group.off_loop
        started = threading.Event()

        def first() -> int:
            started.set()
            release.wait(30)
            return store.execute("INSERT INTO f (who) VALUES ('first')")

        pending = asyncio.ensure_future(group.commit(first))
        await asyncio.to_thread(started.wait, 30)  # first is in its transaction on the worker thread
        group.submit(lambda: store.execute("INSERT INTO f (who) VALUES ('second')"))  # the next group

        class LetFirstGoOn(threading.Event):
            """The flush waits here for the batch off the loop: let ``first`` go on then."""

            def wait(self, timeout: float | None = None) -> bool:
                release.set()
                return super().wait(timeout)

        group._idle = LetFirstGoOn()  # cleared, as the one it replaces; the worker thread sets it
        group.flush()
        release.set()
        assert await pending == 1
        assert [r["who"] for r in store.query("SELECT who FROM f ORDER BY id")] == ["first", "second"]
    finally:
        release.set()
        store.close()
