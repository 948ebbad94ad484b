"""Run events across processes: rows in ``run_events`` for replay, NOTIFY payloads for live followers.

A process that executes runs for others (``keel worker``; a server sharing a store with
other servers) publishes its engines' :class:`~keel.workflows.engine.NodeEvent` values
to an :class:`EventLog`: each turn of its event loop writes what was published during
that turn as one batch, inside the store's group commit (the same transaction as the
checkpoints of that turn). On PostgreSQL the same commit carries the batch to live
followers as notifications (decision 0037): ``NOTIFY keel_run_events, '<run_id> <json>'``,
the events themselves, chunked under PostgreSQL's 8,000-byte payload cap, each chunk naming
the id of the event before its first (``p``), so a follower knows it missed nothing. An event
too big for a payload goes as a pointer (its id, no document): the follower reads the row.

A follower (:func:`follow`) first reads ``WHERE run_id = ? AND id > last`` (a late follower
replays everything stored, tokens included), then takes events from the payloads, with no
read per event. It reads the table again only when a payload does not continue from its last
event (a notification lost with the listening connection, a run continued by another process),
when a payload is a pointer, or when its poll interval passes without any notification; on
SQLite (no notifications) it reads on every poll. It stops after the run's final event
(``run_finished`` or ``waiting``). A final event lost in a crash (the process died after
committing the run's end, before the event's batch) is made up from the run's row.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from keel.store.group import later
from keel.workflows.queue import notify
from keel.workflows.wakeup import Feed, Wakeup

__all__ = ["CHANNEL", "FINAL", "PAYLOAD_LIMIT", "EventLog", "follow"]

CHANNEL = "keel_run_events"
FINAL = ("run_finished", "waiting")
TOKENS = ("text_delta", "text_restart")
PAYLOAD_LIMIT = 7_900
"""Bytes of one notification's payload (PostgreSQL refuses 8,000 and more)."""
_KEEP_PREV = 10_000  # runs whose last event id a writer remembers (the chain its payloads carry)

_INSERT = "INSERT INTO run_events (run_id, id, kind, doc, created_at) VALUES (?, ?, ?, ?, ?)"


class EventLog:
    """Publishes node events to ``run_events`` (use its :meth:`publish` as an engine's ``on_event``)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._buffer: list[tuple[str, str, str, str, float, str]] = []
        self._buffer_lock = threading.Lock()
        self._last_ns = 0
        self._nonce = os.urandom(3).hex()
        self._prev: OrderedDict[str, str] = OrderedDict()
        """Each run's last event id published here (removed at its final event; bounded)."""
        self.written = 0
        """Events written so far."""
        self.payloads = 0
        """Notifications that carried events (PostgreSQL)."""

    def _next_id(self) -> str:
        # Increasing within this process (time, never repeated): a follower's "id > last" holds.
        now = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = now
        return f"{now:019d}{self._nonce}"

    def publish(self, event: Any) -> None:
        doc = {k: v for k, v in vars(event).items() if v is not None}
        doc["at"] = time.time()
        event_id = self._next_id()
        prev = self._prev.pop(event.run_id, "")
        if event.kind not in FINAL:
            self._prev[event.run_id] = event_id
            if len(self._prev) > _KEEP_PREV:  # a run forgotten here: its next payload sends followers to the table
                self._prev.popitem(last=False)
        row = (event.run_id, event_id, event.kind, json.dumps(doc, ensure_ascii=False, default=str), doc["at"], prev)
        # The group may commit on a thread (keel serve on PostgreSQL) and take the buffer there:
        # appending and the swap in _take hold one lock, or an event appended to a list already
        # taken would be neither stored nor sent.
        with self._buffer_lock:
            self._buffer.append(row)
            if len(self._buffer) > 1:
                return
        try:
            group = self.store.commit_group()
        except RuntimeError:  # no event loop: write now
            self._write()
            return
        taken: list[list[tuple[str, str, str, str, float, str]]] = []

        def write() -> None:  # the group may run it twice (a batch written again): the same rows
            if not taken:
                taken.append(self._take())
            self._insert(taken[0])

        group.submit(write)

    def _take(self) -> list[tuple[str, str, str, str, float, str]]:
        with self._buffer_lock:
            rows, self._buffer = self._buffer, []
        return rows

    def _insert(self, rows: list[tuple[str, str, str, str, float, str]]) -> None:
        if not rows:
            return
        later(self.store, _INSERT, [r[:5] for r in rows], many=True)  # with the group's other deferred writes
        self.written += len(rows)
        if self.store.dialect == "sqlite":  # no notifications: followers poll the table
            return
        for payload in _payloads(rows):
            notify(self.store, CHANNEL, payload)  # sent with the commit, all in one statement
            self.payloads += 1

    def _write(self) -> None:
        self._insert(self._take())

    def flush(self) -> None:
        """Write what is buffered now (at shutdown)."""
        self._write()


def _payloads(rows: list[tuple[str, str, str, str, float, str]]) -> list[str]:
    """``'<run_id> {"p": prev, "e": [[id, doc], ...]}'`` per run, in order, each at most
    :data:`PAYLOAD_LIMIT` bytes; ``p`` is the id of the event before the first (``""``: none).
    An event too big on its own goes as ``[id, null]``: the follower reads its row."""
    by_run: dict[str, list[tuple[str, str, str]]] = {}
    for run_id, event_id, _kind, doc, _at, prev in rows:
        by_run.setdefault(run_id, []).append((event_id, doc, prev))
    out = []
    for run_id, events in by_run.items():
        frame = len(run_id.encode()) + 64  # '<run_id> {"p": "<prev id>", "e": []}'
        chunk: list[str] = []
        first, size = "", frame
        for event_id, doc, prev in events:
            entry = f'["{event_id}", {doc}]'
            n = len(entry.encode()) + 2
            if frame + n > PAYLOAD_LIMIT:
                entry = f'["{event_id}", null]'
                n = len(entry) + 2
            if chunk and size + n > PAYLOAD_LIMIT:
                out.append(_payload(run_id, first, chunk))
                chunk = []
            if not chunk:
                first, size = prev, frame
            chunk.append(entry)
            size += n
        out.append(_payload(run_id, first, chunk))
    return out


def _payload(run_id: str, prev: str, entries: list[str]) -> str:
    return f'{run_id} {{"p": "{prev}", "e": [{", ".join(entries)}]}}'


async def follow(store: Any, run_id: str, wake: Wakeup, *, after: str = "", check_every: float = 2.0,
                 stop_when_idle: float | None = None) -> AsyncIterator[dict[str, Any]]:
    """The stored events of ``run_id`` in order, live, until its final event.

    Each event is the publisher's document plus ``seq`` (this follower's count). ``check_every``
    seconds without events, the run's row is read: a run that ended without its final event in
    the store (its process died between the two) gets one made from the row. ``after``: an event
    id; only later events are read (a run continued after an approval). ``stop_when_idle``:
    give up after that many seconds without events (None: follow as long as the run goes on).
    """
    wakeup = wake.arm(CHANNEL, run_id, feed=True)
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
    first = True
    while True:
        if wakeup is not None:
            wakeup.clear()  # before reading: a notification from now on wakes the next wait
        items, lost = wakeup.take() if isinstance(wakeup, Feed) else ([], False)
        if items and not lost and not first:  # the events came with the notifications
            rows, gap = _from_payloads(items, last)
        else:  # the start, a poll, a plain wake-up, or payloads dropped: read the table
            rows, gap = [], True
        first = False
        if gap:  # what the payloads could not give (or nothing came): from the table, after what they gave
            after_last = rows[-1][0] if rows else last
            rows += [(r["id"], r["doc"]) for r in store.query(
                "SELECT id, doc FROM run_events WHERE run_id = ? AND id > ? ORDER BY id", (run_id, after_last))]
        for event_id, doc in rows:
            last = event_id
            doc = json.loads(doc) if isinstance(doc, str) else doc
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


def _from_payloads(items: list[str], last: str) -> tuple[list[tuple[str, Any]], bool]:
    """The events of ``items`` (payloads of :func:`_payloads`, in commit order) that follow ``last``,
    and whether the table must be read after them: a payload that does not continue from the last
    event taken (one was lost, or another process wrote the events before), or a pointer."""
    out: list[tuple[str, Any]] = []
    for data in items:
        try:
            message = json.loads(data)
            prev, entries = message["p"], message["e"]
        except (ValueError, KeyError, TypeError):
            return out, True
        for event_id, doc in entries:
            if event_id <= last:  # read from the table already
                prev = event_id
                continue
            if prev != last or not isinstance(doc, dict):
                return out, True
            out.append((event_id, doc))
            last = prev = event_id
    return out, False
