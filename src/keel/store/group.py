"""Group commit: the writes that reach the store during one turn of the event loop share
one transaction.

Concurrent runs on one event loop each commit a checkpoint at almost the same moment;
SQLite's cost is per commit (one append of the WAL's touched pages, one lock round),
not per row. A :class:`CommitGroup` queues each write and commits the queue on the
loop's next turn. One failing write (a run another engine took over) must roll back
alone: the batch is first written without savepoints (on PostgreSQL each savepoint and
its release are two more round trips per write), and only when a write fails is the
transaction rolled back and the batch written again, each write inside a savepoint of
its own. Writes are therefore store statements that may run twice. A writer that awaits
:meth:`CommitGroup.commit` goes on only after its rows are committed, so grouping
changes no durability promise; it only shares the commit.

Measured in ``docs/decisions/0010-group-commit.md``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["CommitGroup", "later"]

T = TypeVar("T")

_log = logging.getLogger("keel.store")


class CommitGroup:
    """Writes of one event loop to one store, committed together each turn of the loop."""

    def __init__(self, store: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self._queue: list[tuple[Callable[[], Any], asyncio.Future | None]] = []
        self.commits = 0
        """Transactions committed (``writes / commits`` is the mean group size)."""
        self.writes = 0
        self.off_loop = bool(getattr(store, "commit_off_loop", False))
        """Commit on a thread (the loop's default executor), one transaction at a time, while the loop goes on
        (PostgreSQL in ``keel serve``: a commit's round trips no longer stall every request of the
        process); the writes queued meanwhile form the next group. Writes then run on that thread:
        they only read the state of the coroutines that wait for them."""
        self._busy = False
        self._idle = threading.Event()
        """Set unless a batch is committing off the loop (:meth:`flush` waits for it)."""
        self._idle.set()

    async def commit(self, write: Callable[[], T]) -> T:
        """Run ``write`` (store statements, no awaiting) in the next group transaction; return
        its result once that transaction is committed, or raise what ``write`` raised."""
        future = self.loop.create_future()
        self._enqueue(write, future)
        return await future

    def submit(self, write: Callable[[], Any]) -> None:
        """Like :meth:`commit` without waiting: for rows whose loss in a crash costs little
        (usage counters). A failure is logged."""
        self._enqueue(write, None)

    def _enqueue(self, write: Callable[[], Any], future: asyncio.Future | None) -> None:
        self._queue.append((write, future))
        if len(self._queue) == 1 and not self._busy:
            self.loop.call_soon(self._start)

    def _start(self) -> None:
        if not self.off_loop:
            self.flush()
            return
        if self._busy or not self._queue:
            return
        batch, self._queue = self._queue, []
        self._busy = True  # one transaction at a time: a run's rows commit in the order it wrote them
        self._idle.clear()
        try:
            done = self.loop.run_in_executor(None, self._write_off_loop, batch)
        except BaseException:
            self._idle.set()
            raise
        done.add_done_callback(lambda f: self._finished(batch, f))

    def _finished(self, batch: list[tuple[Callable[[], Any], asyncio.Future | None]], done: Any) -> None:
        self._busy = False
        try:
            self._settle(batch, *done.result())
        finally:
            if self._queue:
                self._start()

    def _write_off_loop(self, batch: list[tuple[Callable[[], Any], asyncio.Future | None]]) -> Any:
        try:
            return self._write(batch)
        finally:
            self._idle.set()

    def flush(self) -> None:
        """Commit what is queued now (the loop calls this; so may a shutdown), after the batch still
        committing off the loop, if any: one transaction at a time, in order (``keel serve``'s shutdown)."""
        self._idle.wait()
        batch, self._queue = self._queue, []
        if batch:
            self._settle(batch, *self._write(batch))

    def _write(self, batch: list[tuple[Callable[[], Any], asyncio.Future | None]]
               ) -> tuple[BaseException | None, list[tuple[asyncio.Future | None, BaseException | None, Any]]]:
        """Write ``batch`` in one transaction: (the transaction's failure or None, each write's outcome).
        Touches no future: it may run on the group's thread."""
        outcomes: list[tuple[asyncio.Future | None, BaseException | None, Any]] = []

        # PostgreSQL: writes whose row counts nobody reads are deferred (PostgresStore.defer) and sent
        # in one pipeline: once for the whole batch, or, with savepoints, once per write inside its own.
        flush = getattr(self.store, "flush_deferred", None) or (lambda: None)
        drop = getattr(self.store, "drop_deferred", None) or (lambda mark: None)
        # PostgreSQL: the notifications queued before a savepoint (those after it go with it)
        mark = getattr(self.store, "deferred_mark", None) or (lambda: None)
        # PostgreSQL: without savepoints, the pipeline carries the COMMIT too (one round trip per batch);
        # a write that fails there aborts the transaction, and the batch is written again as below.
        finish = getattr(self.store, "commit_deferred", None) or flush

        def run_batch(savepoints: bool) -> None:
            outcomes.clear()  # a retried batch starts over
            if not savepoints:
                try:
                    for write, future in batch:
                        outcomes.append((future, None, write()))
                    finish()
                except Exception as e:
                    if getattr(e, "transient", False) or getattr(e, "committing", False) or len(batch) == 1:
                        # retried whole; a COMMIT whose outcome is unknown (never written again); or
                        # (alone in the batch) its own outcome
                        raise
                    raise _Redo from e
                return
            for write, future in batch:
                self.store.execute("SAVEPOINT keel_group")
                since = mark()
                try:
                    result = write()
                    flush()
                except Exception as e:
                    if getattr(e, "transient", False):  # a deadlock or a lost connection: retry the batch whole
                        raise
                    drop(since)  # what the failed write queued (writes, notifications) goes with its savepoint
                    self.store.execute("ROLLBACK TO keel_group")
                    self.store.execute("RELEASE keel_group")
                    outcomes.append((future, e, None))
                    continue
                self.store.execute("RELEASE keel_group")
                outcomes.append((future, None, result))

        def attempt(savepoints: bool) -> None:
            # PostgreSQL: run again, whole, after a serialization failure, a deadlock or a connection
            # lost before the commit (PostgresStore.run_transaction); SQLite: one transaction.
            run_transaction = getattr(self.store, "run_transaction", None)
            if run_transaction is not None:
                run_transaction(lambda: run_batch(savepoints))
            else:
                with self.store.transaction():
                    run_batch(savepoints)

        try:
            try:
                attempt(savepoints=False)
            except _Redo:  # a write failed: roll back, and write the batch again with one savepoint each
                attempt(savepoints=True)
        except BaseException as e:  # the transaction itself failed: nothing of the batch is on disk
            return e, outcomes
        return None, outcomes

    def _settle(self, batch: list[tuple[Callable[[], Any], asyncio.Future | None]], failed: BaseException | None,
                outcomes: list[tuple[asyncio.Future | None, BaseException | None, Any]]) -> None:
        """Give each waiter its write's outcome (on the loop)."""
        if failed is not None:
            e = failed
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(e if isinstance(e, Exception) else RuntimeError("store write interrupted"))
            if not isinstance(e, Exception):
                raise e
            if any(future is None for _, future in batch):
                _log.warning("grouped store writes failed: %s", e)
            return
        self.commits += 1
        self.writes += len(batch)
        for future, error, result in outcomes:
            if future is None:
                if error is not None:
                    _log.warning("a grouped store write failed: %s", error)
            elif not future.done():  # its waiter may have been cancelled meanwhile
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)


class _Redo(Exception):
    """A write of a batch without savepoints failed: roll the batch back and write it with them."""


def later(store: Any, sql: str, params: Any = (), *, many: bool = False,
          check: Callable[[int], None] | None = None) -> None:
    """Run a write whose row count nobody reads now; on PostgreSQL, inside a transaction, it is
    deferred and sent with the transaction's others in one pipeline (``PostgresStore.defer``).

    ``check`` (single statements only) is called with the row count: at once on SQLite, after the
    pipeline on PostgreSQL. A compare-and-set raises there when it changed no row; the flush (and so
    the transaction, or the group commit's batch) fails with it."""
    defer = getattr(store, "defer", None)
    if defer is not None:
        if check is None:
            defer(sql, params, many=many)
        else:
            defer(sql, params, check=check)
    elif many:
        store.executemany(sql, params)
    else:
        changed = store.execute(sql, params)
        if check is not None:
            check(changed)
