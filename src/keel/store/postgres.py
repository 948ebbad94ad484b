"""The shared store: PostgreSQL through psycopg 3 and a connection pool.

Same interface as :class:`~keel.store._sqlite.SQLiteStore` (``execute``, ``executemany``,
``query``, ``transaction``, ``commit_group``, ``migrate`` ...), same SQL: statements are
written once with ``?`` placeholders and translated by :mod:`keel.store.dialect`. Rows come
back as dicts with the Python types SQLite gives: ``int`` for integers and for integral
``numeric`` results (``SUM`` of a ``BIGINT`` column), ``float`` for other numerics and
``DOUBLE PRECISION``, ``str``, ``bytes``, ``None``; a ``bool`` parameter is stored as 0/1 as
on SQLite (Keel's booleans are INTEGER columns).

Outside :meth:`transaction` each statement borrows a pooled connection in autocommit mode.
Inside, the thread keeps one connection from ``BEGIN`` to ``COMMIT``; statements of other
threads go on meanwhile (PostgreSQL's row locks, not a store-wide writer lock, order them).

:meth:`migrate` holds a PostgreSQL advisory lock, so two servers starting at once apply each
migration once; every migration runs in one transaction (PostgreSQL's DDL is transactional:
a failed migration leaves nothing behind).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from keel.errors import StoreError
from keel.store.dialect import UnportableSQL, to_postgres
from keel.store.group import CommitGroup
from keel.store.migrations import MIGRATIONS, Migration

__all__ = ["MIN_SERVER_VERSION", "PostgresStore", "redact_url", "server_version_text"]

T = TypeVar("T")

MIN_SERVER_VERSION = 130000
"""PostgreSQL 13: the oldest release still supported upstream when this was written."""

_MIGRATE_LOCK = 0x6B65656C  # "keel": the advisory lock key migrations hold
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
_CONNECT_TIMEOUT = 10
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
              "tcp_user_timeout": 15_000}
"""libpq options for every connection: a server that vanished without closing the connection (a
cut network drops packets, nothing answers) is noticed within ~15 s, instead of a statement
waiting on its socket forever (and with it the event loop of the server or worker that sent it)."""
_NOTIFY_ALL = "SELECT pg_notify(n ->> 0, n ->> 1) FROM json_array_elements(%s::json) AS t(n)"
"""A transaction's notifications in one statement: one JSON parameter (``[[channel, payload], ...]``);
psycopg's text-array dumper escaped each element with a regular expression, a tenth of a worker's
time at 60 runs in flight (decision 0036)."""
_POOL_WAIT = 10.0  # seconds a statement waits for a pooled connection before a 503
_POOL_WAIT_UNREACHABLE = 1.0  # the same, while the last attempt found the server unreachable
_UNLESS_CHANGED = "WITH keel_changed AS ({} RETURNING 1) SELECT 1 / COUNT(*) FROM keel_changed"
"""A checked write sent with its transaction's COMMIT: it fails (division by zero) when it changed no row."""
_UNCHANGED_STATE = "22012"


def redact_url(url: str) -> str:
    """``url`` without its password (safe for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _hint_for_connect_error(url: str, error: Exception) -> tuple[str, str]:
    """(message, hint) for a failed connection: which of the usual mistakes it was."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    where = redact_url(url)
    low = text.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return (f"PostgreSQL at {where} refused the password: {text}",
                "check the user and password in KEEL_STORE_URL (or `store =` in keel.toml)")
    if "does not exist" in low and "database" in low:
        return (f"the PostgreSQL database in {where} does not exist",
                "create it (`createdb NAME`, or CREATE DATABASE NAME;) or fix the name in KEEL_STORE_URL")
    if "role" in low and "does not exist" in low:
        return (f"the PostgreSQL user in {where} does not exist: {text}",
                "create the role (CREATE ROLE ... LOGIN) or fix the user in KEEL_STORE_URL")
    if "invalid dsn" in low or "invalid connection option" in low or ("missing" in low and "=" in low):
        return (f"KEEL_STORE_URL is not a valid PostgreSQL URL ({where}): {text}",
                "write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    return (f"cannot connect to PostgreSQL at {where}: {text}",
            "check that the server is running and reachable from here, and the host and port in "
            "KEEL_STORE_URL; `keel doctor` checks the connection")


def _configure(conn: Any) -> None:
    """Per-connection setup: ``numeric`` results as int/float (SQLite's types), not Decimal."""
    from psycopg.adapt import Loader

    class _NumericLoader(Loader):
        def load(self, data: Any) -> int | float:
            text = bytes(data).decode()
            if "." in text or "e" in text or "E" in text or text in ("NaN", "Infinity", "-Infinity"):
                return float(text)
            return int(text)

    conn.adapters.register_loader("numeric", _NumericLoader)


def _params(params: Sequence[Any]) -> tuple[Any, ...]:
    # Keel's booleans are INTEGER columns; psycopg would send True as a PostgreSQL boolean.
    # The types are looked at in C first: a served request sends ~230 parameters, few of them bools.
    if bool not in set(map(type, params)):
        return tuple(params)
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


class PostgresStore:
    """Keel's store on a PostgreSQL database. Safe to share between threads; one per process."""

    dialect = "postgresql"
    path = None
    """No file: see :attr:`url`."""

    def __init__(self, url: str, *, migrate: bool = True, min_size: int = 1, max_size: int = 20,
                 connect_timeout: float = _CONNECT_TIMEOUT) -> None:
        try:
            import psycopg  # noqa: F401
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise StoreError("the PostgreSQL store needs psycopg and psycopg_pool",
                             hint="pip install 'keel[postgres]'") from None
        self.url = url
        self.safe_url = redact_url(url)
        self._local = threading.local()
        self._groups: dict[int, CommitGroup] = {}
        self._unreachable = False  # set by a lost connection or a pool timeout, cleared by a connection
        self.server_version = self._check_server(connect_timeout)
        self._pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, configure=_configure,
            kwargs={"autocommit": True, "connect_timeout": int(connect_timeout), **KEEPALIVES},
            timeout=_POOL_WAIT, name="keel-store",
            # Give up a failing reconnection after a few seconds (the next request starts a new
            # one at once) rather than backing off for minutes: after an outage Keel answers
            # again within a couple of seconds of the server's return.
            reconnect_timeout=3.0,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except Exception as e:
            self._pool.close()
            message, hint = _hint_for_connect_error(url, e)
            raise StoreError(message, hint=hint) from None
        if migrate:
            self.migrate()

    def _check_server(self, timeout: float) -> int:
        """Connect once, directly, to tell the usual mistakes apart before the pool retries them."""
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=int(timeout), autocommit=True) as conn:
                version = conn.info.server_version
        except (psycopg.Error, ValueError) as e:
            message, hint = _hint_for_connect_error(self.url, e)
            raise StoreError(message, hint=hint) from None
        if version < MIN_SERVER_VERSION:
            raise StoreError(
                f"PostgreSQL at {self.safe_url} is version {server_version_text(version)}; Keel needs 13 or newer",
                hint="upgrade the server (or point KEEL_STORE_URL at a newer one)",
            )
        return version

    def close(self) -> None:
        """Close the pool (every connection this store opened)."""
        self._pool.close()

    def commit_group(self) -> CommitGroup:
        """The running event loop's :class:`~keel.store.group.CommitGroup` for this store."""
        loop = asyncio.get_running_loop()
        group = self._groups.get(id(loop))
        if group is None or group.loop is not loop:
            for key in [k for k, g in self._groups.items() if g.loop.is_closed()]:
                del self._groups[key]
            group = self._groups[id(loop)] = CommitGroup(self, loop)
        return group

    # SQLite's WAL checkpointer has no counterpart: the server does its own checkpoints.
    def checkpoint_in_background(self, interval: float = 0.25, *, wal_limit: int = 16 << 20) -> None:
        return None

    def stop_background_checkpoints(self) -> None:
        return None

    wal_truncations = 0

    # -- queries ---------------------------------------------------------------------

    def _translate(self, sql: str) -> str:
        try:
            return to_postgres(sql)
        except UnportableSQL as e:
            raise StoreError(f"unportable SQL: {e}", hint="this is a bug in Keel; please report it") from None

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """This thread's transaction connection, or a pooled autocommit one."""

        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        conn = self._checkout()
        try:
            with conn:
                yield conn
        finally:
            self._pool.putconn(conn)

    def _checkout(self) -> Any:
        """A pooled connection. While the server is known to be unreachable, a request waits 1 s
        for one and, if the server still does not answer a direct connection, answers 503 at once,
        rather than holding its client for the whole pool wait (an outage of a few seconds
        otherwise shows no error at all, only stalled requests); once it answers again, the
        request waits for the pool to reconnect."""
        from psycopg_pool import PoolTimeout

        if self._unreachable:
            try:
                conn = self._pool.getconn(timeout=_POOL_WAIT_UNREACHABLE)
            except PoolTimeout:
                if not self._server_answers():
                    raise self._no_connection(_POOL_WAIT_UNREACHABLE) from None
                conn = None
            if conn is not None:
                self._unreachable = False
                return conn
        try:
            conn = self._pool.getconn(timeout=_POOL_WAIT)
        except PoolTimeout:
            self._unreachable = True
            raise self._no_connection(_POOL_WAIT) from None
        self._unreachable = False
        return conn

    def _server_answers(self) -> bool:
        """Whether a new connection to the server succeeds now (outside the pool)."""
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2, autocommit=True, **KEEPALIVES):
                return True
        except Exception:
            return False

    def _no_connection(self, wait: float = _POOL_WAIT) -> StoreError:
        return StoreError(f"PostgreSQL at {self.safe_url} is unreachable: no connection within {wait:g} s",
                          hint="check that the server is up and reachable (or raise max_connections if it is "
                               "busy); `keel doctor` checks the connection")

    def _error(self, e: Exception, what: str) -> StoreError:
        """A psycopg error as a :class:`StoreError`; ``transient`` when running the transaction
        again, whole, is safe and may succeed (see :meth:`run_transaction`)."""
        state = getattr(e, "sqlstate", None) or ""
        in_tx = getattr(self._local, "conn", None) is not None
        if state in _RETRYABLE_SQLSTATES:
            err = StoreError(f"store {what} failed: {_first_line(e)}",
                             hint="a conflicting transaction; retry the request")
            err.transient = in_tx  # type: ignore[attr-defined]
            return err
        if _is_connection_error(e):
            self._unreachable = True
            with suppress(Exception):
                self._pool.check()  # replace the other pooled connections the same outage broke
            err = StoreError(f"PostgreSQL at {self.safe_url} is unreachable ({what} failed): {_first_line(e)}",
                             hint="check that the server is up and reachable; `keel doctor` checks the "
                                  "connection")
            err.transient = in_tx and what != "commit"  # type: ignore[attr-defined]
            return err
        return StoreError(f"store {what} failed: {_first_line(e)}", hint="run `keel doctor`")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (autocommit unless inside :meth:`transaction`); return rows changed."""
        import psycopg

        query = self._translate(sql)
        try:
            with self._connection() as conn:
                return self._send(conn, query, _params(params)).rowcount
        except psycopg.Error as e:
            raise self._error(e, "write") from e

    def _send(self, conn: Any, query: str, args: tuple) -> Any:
        """``conn.execute``; the first statement of a transaction carries its ``BEGIN`` along, in one
        pipeline (one round trip for both)."""
        if not self._begin_pending(conn):
            return conn.execute(query, args)
        try:
            with conn.pipeline():
                conn.execute("BEGIN", prepare=False)
                return conn.execute(query, args)
        except BaseException:
            self._pipeline_failed(conn)
            raise

    def _pipeline_failed(self, conn: Any) -> None:
        """A pipeline on ``conn`` failed: psycopg may now believe in statements it meant to prepare
        there and never did ("prepared statement _pg3_N does not exist" later on this connection).
        The transaction's connection is closed when the transaction ends; a pooled one at once (the
        pool replaces it)."""
        if conn is getattr(self._local, "conn", None):
            self._local.piped = True
        elif not conn.closed:
            conn.close()

    def _begin_pending(self, conn: Any) -> bool:
        """Whether ``conn`` is this thread's transaction and its ``BEGIN`` is still to be sent (it
        then counts as sent: the caller sends it)."""
        if conn is not getattr(self._local, "conn", None) or not getattr(self._local, "begin", False):
            return False
        self._local.begin = False
        return True

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        import psycopg

        query = self._translate(sql)
        try:
            with self._connection() as conn, conn.cursor() as cur:
                try:
                    if self._begin_pending(conn):
                        with conn.pipeline():
                            conn.execute("BEGIN", prepare=False)
                            cur.executemany(query, [_params(r) for r in rows])
                    else:
                        cur.executemany(query, [_params(r) for r in rows])  # a pipeline inside psycopg
                except BaseException:
                    self._pipeline_failed(conn)
                    raise
        except psycopg.Error as e:
            raise self._error(e, "write") from e

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as plain dicts. A plain read outside a transaction is tried again once after a
        dropped connection (a server restart breaks every pooled connection)."""
        import psycopg

        query = self._translate(sql)
        args = _params(params)
        for attempt in (1, 2):
            try:
                with self._connection() as conn:
                    cur = self._send(conn, query, args)
                    res = cur.pgresult
                    if res is None or not res.nfields:
                        return []
                    # The names from the result itself: cursor.description builds a Column object per
                    # column and query (8 % of a served request's store CPU).
                    names = [res.fname(i).decode() for i in range(res.nfields)]
                    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            except psycopg.Error as e:
                retry = (attempt == 1 and _is_connection_error(e) and _is_read(sql)
                         and getattr(self._local, "conn", None) is None)
                if not retry:
                    raise self._error(e, "read") from e
        raise AssertionError("unreachable")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside (on this thread) commit together or not at all."""
        import psycopg

        if getattr(self._local, "conn", None) is not None:
            raise StoreError("a store transaction is already open on this thread",
                             hint="this is a bug in Keel; please report it")
        conn = self._checkout()
        self._local.conn = conn
        self._local.notes = {}
        self._local.later = []
        # BEGIN goes with the transaction's first statement (one round trip fewer; see _send), and
        # COMMIT with its last ones (commit_deferred): a transaction of deferred writes is one round trip.
        self._local.begin = True
        self._local.done = self._local.piped = False
        try:
            yield
            if not self._local.done:
                self.commit_deferred()
        except BaseException:
            if self._local.piped and not conn.closed:
                # A pipeline that failed leaves psycopg believing in statements it meant to prepare
                # there and never did ("prepared statement _pg3_N does not exist" later on this
                # connection): the pool gets a new connection instead; closing ends the transaction.
                conn.close()
            elif not conn.closed and not self._local.begin and not self._local.done:
                with suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise
        finally:
            self._local.conn = None
            self._local.notes = self._local.later = None
            self._local.begin = self._local.done = self._local.piped = False
            self._pool.putconn(conn)

    def defer(self, sql: str, params: Sequence[Any] = (), *, many: bool = False,
              check: Callable[[int], None] | None = None) -> None:
        """A write whose row count nobody needs now: inside :meth:`transaction`, queued and sent with
        the transaction's other deferred writes in one pipeline (one round trip) by
        :meth:`flush_deferred` or before ``COMMIT``; outside, run at once. ``many``: ``params`` is a
        list of rows (:meth:`executemany`). ``check``: called with the statement's row count once the
        pipeline has been answered (a compare-and-set raises there when it changed no row, which
        fails the flush). An error surfaces at the flush."""
        later = getattr(self._local, "later", None)
        if later is None:
            if many:
                self.executemany(sql, params)
            else:
                changed = self.execute(sql, params)
                if check is not None:
                    check(changed)
            return
        later.append((self._translate(sql), params, many, check))

    def deferred_mark(self) -> int:
        """Where a savepoint begins, for :meth:`drop_deferred`: the notifications queued so far."""
        return len(getattr(self._local, "notes", None) or ())

    def drop_deferred(self, mark: int | None = None) -> None:
        """Forget the deferred writes not sent yet (their savepoint is being rolled back) and, given
        ``mark`` (:meth:`deferred_mark` when the savepoint began), the notifications queued since: a
        write rolled back must not be announced at ``COMMIT``. ``notes`` keeps insertion order, and a
        duplicate of an earlier note is not new, so the earlier (kept) write still announces it."""
        if getattr(self._local, "later", None) is not None:
            self._local.later = []
        notes = getattr(self._local, "notes", None)
        if mark is not None and notes:
            for key in list(notes)[mark:]:
                del notes[key]

    def flush_deferred(self) -> None:
        """Send the transaction's deferred writes now, in order, one statement at a time (a group
        commit writing its batch again, each write under its savepoint: a write that fails there
        must leave the connection usable for the next, which a failed pipeline does not, and a
        compare-and-set is checked before the writes after it)."""
        import psycopg

        later, self._local.later = getattr(self._local, "later", None) or [], []
        if not later:
            return
        conn = self._local.conn
        try:
            for query, params, many, check in later:
                if many:
                    with conn.cursor() as cur:
                        self._send_many(conn, cur, query, params)
                    continue
                changed = self._send(conn, query, _params(params)).rowcount
                if check is not None:
                    check(changed)  # raises (e.g. the engine's run-lost error) before the writes after it
        except psycopg.Error as e:
            raise self._error(e, "write") from e

    def _send_many(self, conn: Any, cur: Any, query: str, params: Sequence[Sequence[Any]]) -> None:
        """``executemany`` without psycopg's pipeline (row by row on one cursor, prepared once)."""
        if self._begin_pending(conn):
            conn.execute("BEGIN", prepare=False)
        for row in params:
            cur.execute(query, _params(row))

    def commit_deferred(self) -> None:
        """End the transaction: its deferred writes, its notifications (one statement) and ``COMMIT``
        in one pipeline, one round trip (:meth:`transaction` then has nothing left to do).

        A checked write (a compare-and-set) cannot be looked at before ``COMMIT`` here, so it is sent
        as a statement that fails when it changed no row (a division by zero): the transaction is
        aborted, nothing of it is committed, and the write's ``check`` raises (given 0), or, with
        several checked writes, a :class:`StoreError` (a group commit then writes its batch again,
        each write on its own). A connection lost during this pipeline may have lost the ``COMMIT``
        or not: that error is never retried (``transient`` is false)."""
        if getattr(self._local, "conn", None) is None:
            return
        if self._local.begin and not self._local.notes and not self._local.later:
            self._local.done = True  # nothing was sent: nothing to commit
            return
        import psycopg

        later, self._local.later = self._local.later or [], []
        conn = self._local.conn
        checks: list[Callable[[int], None]] = []
        try:
            with conn.pipeline(), conn.cursor() as cur:
                if self._begin_pending(conn):
                    conn.execute("BEGIN", prepare=False)
                for query, params, many, check in later:
                    if many:
                        cur.executemany(query, [_params(r) for r in params])
                    elif check is not None:  # fails the transaction when it changed no row
                        cur.execute(_UNLESS_CHANGED.format(query), _params(params))
                        checks.append(check)
                    else:
                        cur.execute(query, _params(params))
                if self._local.notes:
                    conn.execute(_NOTIFY_ALL, (json.dumps(list(self._local.notes)),), prepare=False)
                conn.execute("COMMIT", prepare=False)
        except psycopg.Error as e:
            self._pipeline_failed(conn)
            if checks and getattr(e, "sqlstate", None) == _UNCHANGED_STATE:
                if len(checks) == 1:
                    checks[0](0)  # raises (e.g. the engine's run-lost error)
                raise StoreError("a checked write of the transaction changed no row; nothing was committed",
                                 hint="write them again one by one to find which") from None
            lost = _is_connection_error(e)  # the COMMIT may have happened: not retried
            err = self._error(e, "commit" if lost else "write")
            err.committing = lost  # type: ignore[attr-defined]
            raise err from e
        self._local.done = True

    def notify(self, channel: str, payload: str = "") -> None:
        """``NOTIFY channel, payload``: inside :meth:`transaction`, sent once (duplicates dropped, as
        PostgreSQL would drop them) with the other notifications of the transaction, in one statement
        just before its ``COMMIT``; outside, at once."""
        notes = getattr(self._local, "notes", None)
        if notes is not None:
            notes[(channel, payload)] = None
            return
        self.query("SELECT pg_notify(?, ?)", (channel, payload))

    def run_transaction(self, work: Callable[[], T], *, attempts: int = 5) -> T:
        """Run ``work`` (store statements, no effects outside the store) in a transaction, and
        again, whole, after a serialization failure or deadlock (SQLSTATE 40001, 40P01) or a
        connection lost before the commit was sent: up to ``attempts`` times, backing off."""
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction():
                    return work()
            except StoreError as e:
                if attempt == attempts or not getattr(e, "transient", False):
                    raise
                time.sleep(min(0.02 * 2 ** attempt, 0.5))
        raise AssertionError("unreachable")

    # -- schema ----------------------------------------------------------------------

    def applied_migrations(self) -> list[str]:
        if not self.query("SELECT 1 AS x FROM pg_tables WHERE schemaname = current_schema()"
                          " AND tablename = 'keel_migrations'"):
            return []
        return [r["name"] for r in self.query("SELECT name FROM keel_migrations ORDER BY id")]

    def pending_migrations(self) -> list[Migration]:
        done = set(self.applied_migrations())
        return [m for m in MIGRATIONS if m.name not in done]

    def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction; return their names.

        Each transaction first takes an advisory lock, so a second process starting at the same
        time waits, then finds the migration applied and skips it."""
        from keel.store.schema import newer_store_error, unknown_migrations

        done = self.applied_migrations()
        unknown = unknown_migrations(done)
        if unknown:
            raise newer_store_error(self.safe_url, unknown)
        applied = []
        for m in [m for m in MIGRATIONS if m.name not in set(done)]:
            with self.transaction():
                self.query("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK,))
                self.execute(
                    "CREATE TABLE IF NOT EXISTS keel_migrations ("
                    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
                    " name TEXT NOT NULL UNIQUE, applied_at DOUBLE PRECISION NOT NULL)"
                )
                if self.query("SELECT 1 AS x FROM keel_migrations WHERE name = ?", (m.name,)):
                    continue
                try:
                    for statement in m.statements:
                        self.execute(statement)
                except StoreError as e:  # the transaction rolls all of it back
                    raise StoreError(f"migration {m.name} failed on {self.safe_url}, nothing of it was applied: "
                                     f"{e.message}", hint="run `keel doctor`; report this to Keel's maintainers "
                                     "if the database is otherwise healthy") from e
                self.execute("INSERT INTO keel_migrations (name, applied_at) VALUES (?, ?)",
                              (m.name, time.time()))
            applied.append(m.name)
        return applied

    def integrity_check(self) -> str:
        """``"ok"`` when the server answers (PostgreSQL checks its own pages; see ``amcheck``)."""
        self.query("SELECT 1 AS x")
        return "ok"


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_connection_error(e: Exception) -> bool:
    """The connection (not the statement) failed: lost, refused, or the server shutting down."""
    import psycopg

    state = getattr(e, "sqlstate", None) or ""
    if state.startswith("08") or state in ("57P01", "57P02", "57P03"):
        return True
    return isinstance(e, psycopg.OperationalError) and not state


def _is_read(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    low = sql.lower()
    return head in ("SELECT", "SHOW", "VALUES") and "pg_notify" not in low and " for update" not in low


def server_version_text(version: int) -> str:
    """``180003`` -> ``"18.3"`` (PostgreSQL's ``server_version_num``)."""
    major, minor = divmod(version, 10000)
    return f"{major}.{minor}" if major >= 10 else f"{version // 10000}.{(version // 100) % 100}"
