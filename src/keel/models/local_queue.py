"""The queue in front of local generation: a bounded number run at once, a bounded number wait.

llama.cpp generation runs on a worker thread (never on the event loop), but each generation
takes the CPU for seconds; a server that let every request start one would answer none of
them quickly. So every :class:`~keel.models.local.LocalModel` call takes a slot here first:

- at most ``KEEL_LOCAL_CONCURRENCY`` generations run at once in this process (default 1);
- at most ``KEEL_LOCAL_QUEUE`` more wait for a slot, in arrival order (default 32); one more
  is refused at once with :class:`LocalQueueFullError` (a rate-limit error: HTTP 429 from
  the provider's point of view, retried with backoff like any rate limit);
- :func:`local_generations` reports ``running``, ``waiting`` and both limits; ``keel serve``
  shows it in ``GET /readyz``.

The queue is shared by every event loop of the process (a thread-safe counter; waiters are
woken on their own loop), and a waiter that is cancelled (its client went away) leaves the
queue without taking a slot.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from keel.errors import RateLimitedError

__all__ = ["GenerationQueue", "LocalQueueFullError", "configure", "local_generations", "queue"]


class LocalQueueFullError(RateLimitedError):
    """Every local generation slot is busy and the waiting line is full."""


def _env_int(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return max(int(raw), minimum) if raw else default
    except ValueError:
        return default


class GenerationQueue:
    """``concurrency`` slots and a waiting line of at most ``max_waiting``."""

    def __init__(self, concurrency: int = 1, max_waiting: int = 32) -> None:
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"running": self._running, "waiting": len(self._waiters),
                    "concurrency": self.concurrency, "max_waiting": self.max_waiting}

    @asynccontextmanager
    async def slot(self, what: str = "local model") -> AsyncIterator[None]:
        """Hold one generation slot for the ``async with`` body (waiting for one if need be)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._running < self.concurrency and not self._waiters:
                self._running += 1
                waiter = None
            elif len(self._waiters) >= self.max_waiting:
                raise LocalQueueFullError(
                    f"{what}: {self._running} local generations are running and {len(self._waiters)} are waiting "
                    f"(the most this server queues)",
                    hint="retry later; or raise KEEL_LOCAL_QUEUE (waiting) or KEEL_LOCAL_CONCURRENCY (running at "
                         "once) where the server runs, or use a hosted model",
                    provider="local", status_code=429,
                )
            else:
                waiter = (loop, loop.create_future())
                self._waiters.append(waiter)
        if waiter is not None:
            try:
                await waiter[1]
            except asyncio.CancelledError:
                with self._lock:
                    waiting = waiter in self._waiters
                    if waiting:  # still in line: just leave it
                        self._waiters.remove(waiter)
                # Handed a slot already: if the hand-over found the future cancelled, it passed
                # the slot on itself (_hand_over); if it had set the result, the slot is ours.
                if not waiting and not waiter[1].cancelled():
                    self._release()
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._lock:
            if not self._waiters:
                self._running -= 1
                return
            loop, future = self._waiters.popleft()  # the slot passes on; running stays the same
        try:
            loop.call_soon_threadsafe(self._hand_over, future)
        except RuntimeError:  # that loop is closed: nobody waits there any more
            self._release()

    def _hand_over(self, future: asyncio.Future[None]) -> None:
        if future.done():  # cancelled meanwhile: its owner will not use the slot
            self._release()
        else:
            future.set_result(None)


queue = GenerationQueue(_env_int("KEEL_LOCAL_CONCURRENCY", 1, 1), _env_int("KEEL_LOCAL_QUEUE", 32, 0))
"""The process's queue (configured from the environment when Keel is imported)."""


def configure(*, concurrency: int | None = None, max_waiting: int | None = None) -> None:
    """Change the limits of the process's queue (tests, embedding applications)."""
    if concurrency is not None:
        queue.concurrency = max(concurrency, 1)
    if max_waiting is not None:
        queue.max_waiting = max(max_waiting, 0)


def local_generations() -> dict[str, int]:
    """``{"running", "waiting", "concurrency", "max_waiting"}`` of the process's queue."""
    return queue.stats()
