"""The embedded store: one SQLite file in WAL mode under ``KEEL_HOME``.

WAL lets readers go on while one writer commits, and a crash (even ``kill -9``)
mid-transaction leaves the last committed state: SQLite rolls the torn
transaction back on the next open. One connection per thread.

Writers queue on a lock file next to the database (``keel.db.writelock``, an
``flock``) before SQLite's own write lock: a waiting writer sleeps in the kernel
and wakes the moment the other lets go. SQLite's busy handler instead polls with
sleeps of 1, 2, 5, 10 ... ms, which is what made two ``keel serve`` workers no
faster than one (see docs/decisions/0010-group-commit.md). ``busy_timeout``
stays as the backstop for writers that are not Keel (the ``sqlite3`` shell).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from keel.errors import StoreError
from keel.store.group import CommitGroup
from keel.store.migrations import MIGRATIONS, Migration

try:
    import fcntl
except ImportError:  # Windows: writers wait in SQLite's busy handler instead
    fcntl = None  # type: ignore[assignment]

__all__ = ["SQLiteStore"]

_BUSY_TIMEOUT_MS = 10_000


class SQLiteStore:
    """Keel's default store. Safe to share between threads; open one per process."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, *, migrate: bool = True) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._lock_fds: list[int] = []
        self._groups: dict[int, CommitGroup] = {}
        self.wal_truncations = 0
        """How often the background checkpointer started the WAL over (see :meth:`checkpoint_in_background`)."""
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._writers_may_go = threading.Event()
        """Cleared while the checkpointer waits for the writer lock: ``flock`` is not fair, and
        writers of this process that took it back to back kept a TRUNCATE out for good."""
        self._writers_may_go.set()
        self._wal_ceiling = 0
        """Past this many bytes of WAL a committing thread truncates it itself (0: never)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create the store directory {self.path.parent}: {e.strerror}",
                hint="set KEEL_HOME to a writable directory",
            ) from None
        if migrate:
            self.migrate()

    # -- connections ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a power cut may lose the last commits, never corrupt the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            if self._checkpointer is not None:
                conn.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"cannot open the store {self.path}: {e}",
                hint="run `keel doctor`; if the file is damaged, move it aside and Keel starts a new one",
            ) from None
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def checkpoint_in_background(self, interval: float = 0.25, *, wal_limit: int = 16 << 20) -> None:
        """Move WAL checkpoints off the committing threads onto a daemon thread of their own.

        By default the commit that grows the WAL past 1,000 pages copies it into the database
        file (with an fsync) before returning: on a server's event loop that stalls every
        request in flight. After this call, commits only append to the WAL, and a thread
        checkpoints it every ``interval`` seconds: ``PASSIVE`` (never blocking readers or
        writers) copies what is there. Under steady writes such a checkpoint never finds the
        WAL idle, and SQLite starts the WAL over only after one that copied all of it; so when
        the file passes ``wal_limit`` bytes, the thread holds the writer lock for a
        ``TRUNCATE`` checkpoint (little is left to copy by then) and the WAL starts from
        zero. Should that thread fall behind (a starved CPU), the commit that finds the WAL
        past four times ``wal_limit`` truncates it itself: the file stays bounded either way.
        Stopped by :meth:`close`.
        """
        if self._checkpointer is not None:
            return
        self._wal_ceiling = 4 * wal_limit
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(interval, wal_limit),
                                              name="keel-wal-checkpoint", daemon=True)
        with self._lock:
            for conn in self._connections:
                conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer.start()

    def _checkpoint_loop(self, interval: float, wal_limit: int) -> None:
        conn = self._connect()  # this thread's own connection
        wal = Path(f"{self.path}-wal")
        while not self._stop_checkpoints.wait(interval):
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if wal.exists() and wal.stat().st_size > wal_limit:
                    self._writers_may_go.clear()  # the writers of this process queue behind us
                    try:
                        with self._writing():
                            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                            self.wal_truncations += 1
                    finally:
                        self._writers_may_go.set()
            except (sqlite3.Error, OSError):  # busy or closed: the next round tries again
                continue

    def _truncate_past_ceiling(self) -> None:
        """Called holding the writer lock after a commit: the backstop of the background thread."""
        try:
            if os.stat(f"{self.path}-wal").st_size <= self._wal_ceiling:
                return
            conn = self._connect()
            if not conn.in_transaction:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                self.wal_truncations += 1
        except (sqlite3.Error, OSError):  # no WAL yet, or busy readers: the next commit tries again
            pass

    def stop_background_checkpoints(self) -> None:
        """Undo :meth:`checkpoint_in_background`: commits checkpoint the WAL themselves again."""
        thread, self._checkpointer = self._checkpointer, None
        if thread is None:
            return
        self._wal_ceiling = 0
        self._stop_checkpoints.set()
        thread.join(timeout=10)
        with self._lock:
            for conn in self._connections:
                with suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_autocheckpoint=1000")

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        self.stop_background_checkpoints()
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            for fd in self._lock_fds:
                with suppress(OSError):
                    os.close(fd)
            self._lock_fds.clear()
        self._local = threading.local()

    def commit_group(self) -> CommitGroup:
        """The running event loop's :class:`~keel.store.group.CommitGroup` for this store."""
        loop = asyncio.get_running_loop()
        group = self._groups.get(id(loop))
        if group is None or group.loop is not loop:
            for key in [k for k, g in self._groups.items() if g.loop.is_closed()]:
                del self._groups[key]
            group = self._groups[id(loop)] = CommitGroup(self, loop)
        return group

    # -- the writer lock -------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the cross-process writer lock (this thread's own descriptor, so threads of
        one process queue too). Released by the kernel if the process dies. Where there is no
        ``flock`` (Windows, some network filesystems) writers wait in SQLite's busy handler."""
        if fcntl is None:
            yield
            return
        depth = getattr(self._local, "lock_depth", 0)
        if depth:  # this thread holds it already
            self._local.lock_depth = depth + 1
            try:
                yield
            finally:
                self._local.lock_depth = depth
            return
        if threading.current_thread() is not self._checkpointer:
            # A TRUNCATE checkpoint is waiting for the lock: let it in first (it takes
            # milliseconds; the timeout only guards against a checkpointer that died).
            self._writers_may_go.wait(timeout=1.0)
        fd = getattr(self._local, "lock_fd", None)
        if fd is None:
            try:
                fd = os.open(f"{self.path}.writelock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise StoreError(f"cannot open the store's lock file {self.path}.writelock: {e.strerror}",
                                 hint="set KEEL_HOME to a writable directory") from None
            self._local.lock_fd = fd
            with self._lock:
                self._lock_fds.append(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
        except OSError:  # ENOLCK on a filesystem without locks
            locked = False
        self._local.lock_depth = 1
        try:
            yield
            if self._wal_ceiling and threading.current_thread() is not self._checkpointer:
                self._truncate_past_ceiling()
        finally:
            self._local.lock_depth = 0
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)

    # -- queries ---------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (autocommit unless inside :meth:`transaction`); return rows changed."""
        conn = self._connect()
        try:
            if conn.in_transaction:
                return conn.execute(sql, params).rowcount
            with self._writing():
                return conn.execute(sql, params).rowcount
        except sqlite3.Error as e:
            raise StoreError(f"store write failed: {e}", hint="run `keel doctor`") from e

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn = self._connect()
        try:
            if conn.in_transaction:
                conn.executemany(sql, rows)
                return
            with self._writing():
                conn.executemany(sql, rows)
        except sqlite3.Error as e:
            raise StoreError(f"store write failed: {e}", hint="run `keel doctor`") from e

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as plain dicts."""
        try:
            return [dict(r) for r in self._connect().execute(sql, params).fetchall()]
        except sqlite3.Error as e:
            raise StoreError(f"store read failed: {e}", hint="run `keel doctor`") from e

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside commit together or not at all.

        The writer lock, then ``BEGIN IMMEDIATE``, take the write lock up front, so two
        writers never deadlock upgrading from a read.
        """
        conn = self._connect()
        with self._writing():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- schema ----------------------------------------------------------------------

    def applied_migrations(self) -> list[str]:
        self._ensure_migrations_table()
        return [r["name"] for r in self.query("SELECT name FROM keel_migrations ORDER BY id")]

    def pending_migrations(self) -> list[Migration]:
        done = set(self.applied_migrations())
        return [m for m in MIGRATIONS if m.name not in done]

    def _ensure_migrations_table(self) -> None:
        self.execute(
            "CREATE TABLE IF NOT EXISTS keel_migrations ("
            " id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at REAL NOT NULL)"
        )

    def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction; return their names.
        Refuses (:class:`StoreError`) a store a newer Keel migrated (:mod:`keel.store.schema`)."""
        import time

        from keel.store.schema import newer_store_error, unknown_migrations

        done = self.applied_migrations()
        unknown = unknown_migrations(done)
        if unknown:
            raise newer_store_error(str(self.path), unknown)
        applied = []
        for m in [m for m in MIGRATIONS if m.name not in set(done)]:
            with self.transaction():
                # Re-check inside the write lock: another process may have just applied it.
                if self.query("SELECT 1 FROM keel_migrations WHERE name = ?", (m.name,)):
                    continue
                for statement in m.statements:
                    self.execute(statement)
                self.execute(
                    "INSERT INTO keel_migrations (name, applied_at) VALUES (?, ?)",
                    (m.name, time.time()),
                )
            applied.append(m.name)
        return applied

    def integrity_check(self) -> str:
        """``"ok"`` or SQLite's description of the damage."""
        rows = self._connect().execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)
