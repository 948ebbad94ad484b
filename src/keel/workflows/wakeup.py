"""Waking a process when another one wrote something it waits for (a queued run, a run's events).

On PostgreSQL a writer sends ``NOTIFY channel, payload`` with its commit
(:func:`keel.workflows.queue.notify`) and each process keeps one connection that
``LISTEN``\\ s, in a thread of its own; a waiter wakes the moment its notification
arrives, and still polls now and then (a notification is lost when that connection
drops). On SQLite there are no notifications: waiters poll, which on one machine costs a
read of a local file.

A notification's payload is ``key`` or ``key + " " + data``: waiters are found by ``key``, and a
:class:`Feed` (``arm(..., feed=True)``) also receives each ``data`` (run events carried in the
notification itself, :mod:`keel.workflows.events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict, deque
from typing import Any

__all__ = ["Feed", "Wakeup"]

FEED_LIMIT = 1_000_000
"""Characters of payload data a :class:`Feed` holds unread (about a megabyte: run events' payloads
are ASCII JSON) before it drops them all and says so (``lost``). A stalled follower (a slow SSE
client) so costs at most this much, however many notifications come; it then reads the table."""


class Feed(asyncio.Event):
    """An armed wake-up that also keeps the data of the notifications that set it, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.items: deque[str] = deque()
        self.size = 0
        """Characters in :attr:`items`."""
        self.lost = False
        """Payloads were dropped (more than :data:`FEED_LIMIT` unread): read what they said elsewhere."""

    def put(self, data: str) -> None:
        if self.lost:
            return  # the reader goes to the table for all of it: nothing more to keep
        if self.size + len(data) > FEED_LIMIT:
            self.items.clear()
            self.size = 0
            self.lost = True
            return
        self.items.append(data)
        self.size += len(data)

    def take(self) -> tuple[list[str], bool]:
        """The payloads so far and whether some were dropped; both reset."""
        items, lost = list(self.items), self.lost
        self.items.clear()
        self.size = 0
        self.lost = False
        return items, lost

_log = logging.getLogger("keel.workflows")


class Wakeup:
    """Wait for ``(channel, key)`` notifications, or a poll interval, whichever comes first.

    ``key`` is the notification's payload ("" for any). One instance per process and store.
    """

    def __init__(self, store: Any, *, poll: float | None = None) -> None:
        self.store = store
        self.listening = store.dialect != "sqlite" and getattr(store, "url", None) is not None
        self.poll = poll if poll is not None else (1.0 if self.listening else 0.02)
        """Seconds between polls: the only way on SQLite, a backstop on PostgreSQL."""
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = defaultdict(set)
        self._channels: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    async def wait(self, channel: str, key: str = "", *, timeout: float | None = None) -> bool:
        """Until a notification for ``key`` on ``channel`` (True), or ``timeout`` (default: the poll
        interval) passes (False)."""
        timeout = self.poll if timeout is None else timeout
        if not self.listening:
            await asyncio.sleep(timeout)
            return False
        self._ensure(channel)
        event = asyncio.Event()
        self._waiters[(channel, key)].add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
                return True
            return False
        finally:
            waiters = self._waiters.get((channel, key))
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    self._waiters.pop((channel, key), None)

    def arm(self, channel: str, key: str = "", *, feed: bool = False) -> asyncio.Event | None:
        """An event set by every later notification for ``key`` on ``channel`` (None on SQLite).
        Clear it, then look, then wait on it: a notification that comes in between is not missed.
        Give it back with :meth:`disarm`. ``feed``: a :class:`Feed`, which keeps the payloads' data."""
        if not self.listening:
            return None
        self._ensure(channel)
        event = Feed() if feed else asyncio.Event()
        self._waiters[(channel, key)].add(event)
        return event

    def disarm(self, channel: str, key: str, event: asyncio.Event | None) -> None:
        waiters = self._waiters.get((channel, key))
        if event is not None and waiters is not None:
            waiters.discard(event)
            if not waiters:
                self._waiters.pop((channel, key), None)

    async def sleep(self, event: asyncio.Event | None, timeout: float | None = None) -> None:
        """Until ``event`` (from :meth:`arm`) is set, or the poll interval passes."""
        timeout = self.poll if timeout is None else timeout
        if event is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def _ensure(self, channel: str) -> None:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            if channel in self._channels and self._thread is not None and self._thread.is_alive():
                return
            self._channels.add(channel)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._listen, name="keel-listen", daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        import time

        import psycopg

        while not self._stop.is_set():
            try:
                from keel.store.postgres import KEEPALIVES

                with psycopg.connect(self.store.url, autocommit=True, connect_timeout=10, **KEEPALIVES) as conn:
                    listened: set[str] = set()
                    while not self._stop.is_set():
                        for ch in list(self._channels - listened):
                            conn.execute(f'LISTEN "{ch}"')
                            listened.add(ch)
                        for n in conn.notifies(timeout=0.5, stop_after=None):
                            self._deliver(n.channel, n.payload)
            except Exception as e:  # the connection dropped: polls carry on, listen again soon
                _log.debug("LISTEN connection lost: %s", e)
                self._stop.wait(1.0)
                time.sleep(0)

    def _deliver(self, channel: str, payload: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        key, _, data = payload.partition(" ")

        def wake() -> None:
            for k in (key, ""):
                for event in list(self._waiters.get((channel, k), ())):
                    if data and isinstance(event, Feed):
                        event.put(data)
                    event.set()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
