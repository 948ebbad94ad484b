"""The run queue: runs a server started for workers to execute (``keel worker``).

A server started with ``--no-execute`` records each new run (its ``workflow_runs`` row,
with no owner) and a ``run_queue`` row in one transaction, and a worker anywhere claims
it. Claiming takes the oldest unclaimed rows: on PostgreSQL ``FOR UPDATE SKIP LOCKED``
so concurrent workers never wait on each other's rows, on SQLite one statement under
the store's writer lock. The queue only says who should look at a run next; the run's
own row keeps the owner and lease the engine checks (:mod:`keel.workflows.leases`), so
a claim that races with another executor still commits each step at most once.

A claimed row is held until ``claimed_until``, which the worker's heartbeat renews
(:meth:`RunQueue.renew`). A worker that dies stops renewing it: another worker claims
it once it lapses, or at once when the dead worker was on its own host
(:meth:`RunQueue.reap`). The row is deleted when the run finishes or waits for an
approval; answering the approval queues it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from keel.store.group import later
from keel.workflows.leases import LEASE_SECONDS, owner_alive

__all__ = ["CHANNEL", "QueuedRun", "RunQueue", "notify"]

CHANNEL = "keel_run_queue"
"""The PostgreSQL notification channel a worker listens on for new queue rows."""


@dataclass(frozen=True)
class QueuedRun:
    run_id: str
    stream_text: bool
    """Whether a caller shows the run's answer as it is written (its Agent nodes' tokens are published)."""
    attempts: int
    """How often the row was claimed, this claim included."""


def notify(store: Any, channel: str, payload: str = "") -> None:
    """Wake the listeners of ``channel`` when the current transaction commits (PostgreSQL only;
    on SQLite the listeners poll)."""
    if store.dialect != "sqlite":
        send = getattr(store, "notify", None)  # PostgresStore: batched with the transaction's others
        if send is not None:
            send(channel, payload)
        else:
            store.query("SELECT pg_notify(?, ?)", (channel, payload))


class RunQueue:
    """The ``run_queue`` table of one store."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def add(self, run_id: str, *, stream_text: bool = False) -> None:
        """Queue ``run_id`` (inside the caller's transaction, with the run's own row); queueing a run
        that is queued already frees its claim."""
        now = time.time()
        later(self.store,  # deferred on PostgreSQL: sent with the transaction's other writes
              "INSERT INTO run_queue (run_id, stream_text, enqueued_at, claimed_by, claimed_until, attempts)"
              " VALUES (?, ?, ?, NULL, 0, 0) ON CONFLICT (run_id) DO UPDATE SET claimed_by = NULL,"
              " claimed_until = 0, stream_text = excluded.stream_text",
              (run_id, int(stream_text), now))
        notify(self.store, CHANNEL)

    def claim(self, owner: str, *, limit: int, hold: float = LEASE_SECONDS) -> list[QueuedRun]:
        """Up to ``limit`` of the oldest unclaimed (or lapsed) rows, now held by ``owner`` for ``hold`` s."""
        if limit <= 0:
            return []
        now = time.time()
        lock = "" if self.store.dialect == "sqlite" else " FOR UPDATE SKIP LOCKED"
        sql = ("UPDATE run_queue SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1"
               " WHERE run_id IN (SELECT run_id FROM run_queue WHERE claimed_until < ?"
               f" ORDER BY claimed_until, enqueued_at LIMIT ?{lock})"
               " RETURNING run_id, stream_text, attempts")
        if self.store.dialect == "sqlite":
            with self.store.transaction():  # the writer lock, so claims queue instead of retrying
                rows = self.store.query(sql, (owner, now + hold, now, limit))
        else:  # one statement is its own transaction: one round trip
            rows = self.store.query(sql, (owner, now + hold, now, limit))
        return [QueuedRun(r["run_id"], bool(r["stream_text"]), int(r["attempts"])) for r in rows]

    def renew(self, owner: str, *, hold: float = LEASE_SECONDS) -> int:
        """Extend every claim of ``owner`` (the worker's heartbeat); the number of rows it holds."""
        return self.store.execute("UPDATE run_queue SET claimed_until = ? WHERE claimed_by = ?",
                                  (time.time() + hold, owner))

    def done(self, run_id: str, owner: str) -> None:
        """The run finished or waits: drop its row (only while ``owner`` holds it: a row queued again
        meanwhile, by an approval answered, stays). Inside a transaction on PostgreSQL the delete is
        deferred (:func:`keel.store.group.later`)."""
        later(self.store, "DELETE FROM run_queue WHERE run_id = ? AND claimed_by = ?", (run_id, owner))

    def release(self, run_id: str, owner: str, *, after: float = 0.0) -> None:
        """Give the row back, claimable again in ``after`` seconds."""
        self.store.execute("UPDATE run_queue SET claimed_by = NULL, claimed_until = ? WHERE run_id = ?"
                           " AND claimed_by = ?", (time.time() + after, run_id, owner))

    def reap(self) -> int:
        """Free the claims of dead workers on this host at once (elsewhere, their claims lapse)."""
        rows = self.store.query("SELECT DISTINCT claimed_by FROM run_queue WHERE claimed_by IS NOT NULL")
        freed = 0
        for r in rows:
            if owner_alive(r["claimed_by"]) is False:
                freed += self.store.execute("UPDATE run_queue SET claimed_by = NULL, claimed_until = 0"
                                            " WHERE claimed_by = ?", (r["claimed_by"],))
        return freed

    def depth(self) -> dict[str, int]:
        """Rows waiting for a worker, and rows held by one."""
        row = self.store.query(
            "SELECT COALESCE(SUM(CASE WHEN claimed_by IS NULL OR claimed_until < ? THEN 1 ELSE 0 END), 0) AS ready,"
            " COALESCE(SUM(CASE WHEN claimed_by IS NOT NULL AND claimed_until >= ? THEN 1 ELSE 0 END), 0) AS held"
            " FROM run_queue", (time.time(), time.time()))[0]
        return {"ready": int(row["ready"]), "held": int(row["held"])}
