"""Run events in the store, for followers in other processes (``run_events``).

A process that executes runs for others (``keel worker``; a server sharing a store with
other servers) publishes its engines' :class:`~keel.workflows.engine.NodeEvent` values
to an :class:`EventLog`: each turn of its event loop writes what was published during
that turn as one batch, inside the store's group commit (the same transaction as the
checkpoints of that turn), and on PostgreSQL notifies the followers of each run.

A follower (:func:`follow`) reads ``WHERE run_id = ? AND id > last`` whenever it is woken
(PostgreSQL) or its poll interval passes (SQLite), and stops after the run's final event
(``run_finished`` or ``waiting``). A final event lost in a crash (the process died after
committing the run's end, before the event's batch) is made up from the run's row.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from keel.store.group import later
from keel.workflows.queue import notify
from keel.workflows.wakeup import Wakeup

__all__ = ["CHANNEL", "FINAL", "EventLog", "follow"]

CHANNEL = "keel_run_events"
FINAL = ("run_finished", "waiting")
TOKENS = ("text_delta", "text_restart")

_INSERT = "INSERT INTO run_events (run_id, id, kind, doc, created_at) VALUES (?, ?, ?, ?, ?)"


class EventLog:
    """Publishes node events to ``run_events`` (use its :meth:`publish` as an engine's ``on_event``)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._buffer: list[tuple[str, str, str, str, float]] = []
        self._last_ns = 0
        self._nonce = os.urandom(3).hex()
        self.written = 0
        """Events written so far."""

    def _next_id(self) -> str:
        # Increasing within this process (time, never repeated): a follower's "id > last" holds.
        now = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = now
        return f"{now:019d}{self._nonce}"

    def publish(self, event: Any) -> None:
        doc = {k: v for k, v in vars(event).items() if v is not None}
        doc["at"] = time.time()
        self._buffer.append((event.run_id, self._next_id(), event.kind, json.dumps(doc, ensure_ascii=False,
                                                                                  default=str), doc["at"]))
        if len(self._buffer) > 1:
            return
        try:
            group = self.store.commit_group()
        except RuntimeError:  # no event loop: write now
            self._write()
            return
        taken: list[list[tuple[str, str, str, str, float]]] = []

        def write() -> None:  # the group may run it twice (a batch written again): the same rows
            if not taken:
                taken.append(self._take())
            self._insert(taken[0])

        group.submit(write)

    def _take(self) -> list[tuple[str, str, str, str, float]]:
        rows, self._buffer = self._buffer, []
        return rows

    def _insert(self, rows: list[tuple[str, str, str, str, float]]) -> None:
        if not rows:
            return
        later(self.store, _INSERT, rows, many=True)  # with the group's other deferred writes
        self.written += len(rows)
        for run_id in dict.fromkeys(r[0] for r in rows):
            notify(self.store, CHANNEL, run_id)  # sent with the commit, all in one statement

    def _write(self) -> None:
        self._insert(self._take())

    def flush(self) -> None:
        """Write what is buffered now (at shutdown)."""
        self._write()


async def follow(store: Any, run_id: str, wake: Wakeup, *, after: str = "", check_every: float = 2.0,
                 stop_when_idle: float | None = None) -> AsyncIterator[dict[str, Any]]:
    """The stored events of ``run_id`` in order, live, until its final event.

    Each event is the publisher's document plus ``seq`` (this follower's count). ``check_every``
    seconds without events, the run's row is read: a run that ended without its final event in
    the store (its process died between the two) gets one made from the row. ``after``: an event
    id; only later events are read (a run continued after an approval). ``stop_when_idle``:
    give up after that many seconds without events (None: follow as long as the run goes on).
    """
    wakeup = wake.arm(CHANNEL, run_id)
    try:
        async for doc in _follow(store, run_id, wake, wakeup, after, check_every, stop_when_idle):
            yield doc
    finally:
        wake.disarm(CHANNEL, run_id, wakeup)


async def _follow(store: Any, run_id: str, wake: Wakeup, wakeup: Any, after: str, check_every: float,
                  stop_when_idle: float | None) -> AsyncIterator[dict[str, Any]]:
    last, seq = after, 0
    quiet_since = time.monotonic()
    checked = time.monotonic()
    ended_seen: str | None = None
    while True:
        if wakeup is not None:
            wakeup.clear()  # before reading: a notification from now on wakes the next wait
        rows = store.query("SELECT id, doc FROM run_events WHERE run_id = ? AND id > ? ORDER BY id",
                           (run_id, last))
        for r in rows:
            last = r["id"]
            doc = json.loads(r["doc"])
            doc["seq"] = seq
            seq += 1
            yield doc
            if doc.get("kind") in FINAL:
                return
        now = time.monotonic()
        if rows:
            quiet_since = checked = now
            ended_seen = None
        elif now - checked >= check_every:
            checked = now
            found = store.query("SELECT status, error FROM workflow_runs WHERE id = ?", (run_id,))
            status = found[0]["status"] if found else None
            if status == "waiting" and (store.query("SELECT 1 AS x FROM run_queue WHERE run_id = ?", (run_id,))
                                        or not store.query("SELECT 1 AS x FROM workflow_approvals WHERE run_id = ?"
                                                           " AND status = 'pending'", (run_id,))):
                status = None  # answered, and queued for a worker: it goes on
            if status is not None and status != "running":
                if ended_seen == status:  # ended a whole interval ago, and still no final event
                    kind = "waiting" if status == "waiting" else "run_finished"
                    doc = {"kind": kind, "run_id": run_id, "status": status, "seq": seq}
                    if found[0]["error"]:
                        doc["error"] = found[0]["error"]
                    yield doc
                    return
                ended_seen = status
            if stop_when_idle is not None and now - quiet_since >= stop_when_idle:
                return
        await wake.sleep(wakeup)
