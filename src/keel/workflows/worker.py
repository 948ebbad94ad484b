"""A worker: executes the runs servers queued (``keel worker``), any number of them, anywhere.

Each worker claims up to ``concurrency`` rows of the run queue (:mod:`keel.workflows.queue`)
at a time, drives each run with its engine from the run's last checkpoint, and publishes
the run's events to the store for the server whose client follows them
(:mod:`keel.workflows.events`). A heartbeat renews the leases of its runs and its queue
claims every ``LEASE_SECONDS / 3`` seconds, so a model call that takes minutes keeps its
run on this worker; a worker that stops renewing (killed, cut off) loses its runs to the
others once the lease lapses, and at once to a worker on its own host, which sees its
process is gone. Every ``recover_every`` seconds a worker also resumes what no queue row
covers: runs orphaned by a server that executed them itself, and approvals that timed out.

Stopping (:meth:`Worker.run`'s ``stop``): no new claims; runs in flight get ``grace``
seconds to finish, then are left at their last checkpoint with their claims and leases
given up, so another worker continues them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from keel.errors import StoreError
from keel.workflows.engine import Engine
from keel.workflows.events import EventLog
from keel.workflows.leases import LEASE_SECONDS
from keel.workflows.queue import CHANNEL, QueuedRun, RunQueue
from keel.workflows.wakeup import Wakeup

__all__ = ["Worker"]

_log = logging.getLogger("keel.worker")


class Worker:
    """Claims queued runs and drives them; see the module docstring."""

    def __init__(self, store: Any, *, concurrency: int = 16, recover_every: float = 5.0,
                 tools: dict[str, Callable[..., Any]] | None = None,
                 on_finished: Callable[[str, str], None] | None = None) -> None:
        self.store = store
        self.concurrency = concurrency
        self.recover_every = recover_every
        self.events = EventLog(store)
        self.engine = Engine(store, tools=tools, on_event=self.events.publish)
        self.streaming = Engine(store, tools=tools, on_event=self.events.publish, stream_text=True)
        """For runs whose caller shows the answer as it is written (their tokens are published)."""
        self.owner = self.engine.owner
        """Who holds this worker's queue claims."""
        self.queue = RunQueue(store)
        self.wake = Wakeup(store)
        self._driving: set[str] = set()
        """Runs of claimed queue rows being driven now (:meth:`_one`)."""
        self._dequeued: set[str] = set()
        """Of those, runs whose queue row went with the commit of their end (no separate delete needed)."""
        self.engine.on_final = self.streaming.on_final = self._drop_queued
        self.on_finished = on_finished
        self.finished = 0
        """Runs this worker drove to an end (finished or waiting)."""
        self._tasks: set[asyncio.Task] = set()
        self._room = asyncio.Event()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, grace: float = 30.0) -> None:
        """Claim and drive runs until ``stop`` is set, then stop as the module docstring says."""
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        next_recover = 0.0
        wakeup = self.wake.arm(CHANNEL)
        try:
            while not stop.is_set():
                if wakeup is not None:
                    wakeup.clear()  # before claiming: a run queued from now on wakes the wait below
                free = self.concurrency - len(self._tasks)
                claimed: list[QueuedRun] = []
                try:
                    if time.monotonic() >= next_recover:
                        next_recover = time.monotonic() + self.recover_every
                        self.queue.reap()
                        if free > 0:
                            self._spawn(self._recover(free))
                            free = self.concurrency - len(self._tasks)
                    claimed = self.queue.claim(self.owner, limit=free)
                except Exception as e:  # the store is unreachable: try again after a pause
                    _log.warning("keel worker: cannot reach the store: %s", e)
                    await _sleep_or(stop, 1.0)
                    continue
                taken: dict[str, Any] = {}
                try:  # the runs nobody holds (as queued), for both engines in one statement each
                    for engine, stream in ((self.engine, False), (self.streaming, True)):
                        ids = [q.run_id for q in claimed if q.stream_text is stream]
                        if ids:
                            taken.update(engine.claim_unowned(ids))
                except StoreError as e:  # each run's resume claims it on its own
                    _log.warning("keel worker: cannot reach the store: %s", e)
                for q in claimed:
                    self._spawn(self._one(q, taken.get(q.run_id)))
                if len(claimed) == free and free > 0:
                    continue  # there may be more: claim again at once
                self._room.clear()
                waits = [asyncio.ensure_future(stop.wait())]
                if len(self._tasks) < self.concurrency:
                    waits.append(asyncio.ensure_future(self.wake.sleep(wakeup)))
                else:
                    waits.append(asyncio.ensure_future(self._room.wait()))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED, timeout=self.recover_every)
                finally:
                    for w in waits:
                        w.cancel()
        finally:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=grace)
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5)
            heartbeat.cancel()
            self.wake.disarm(CHANNEL, "", wakeup)
            with contextlib.suppress(Exception):
                self.events.flush()
                self._give_up()
            with contextlib.suppress(Exception):
                await self.engine.aclose()
                await self.streaming.aclose()
            self.wake.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            self._room.set()
            if not t.cancelled() and t.exception() is not None:
                _log.warning("keel worker: %s", t.exception())

        task.add_done_callback(done)

    def _drop_queued(self, run_id: str) -> None:
        """In the transaction that commits the run's end (:attr:`Engine.on_final`): drop its queue row
        (a run resumed by :meth:`_recover` has none)."""
        if run_id in self._driving:
            self.queue.done(run_id, self.owner)
            self._dequeued.add(run_id)

    async def _one(self, q: QueuedRun, claimed: Any = None) -> None:
        engine = self.streaming if q.stream_text else self.engine
        self._driving.add(q.run_id)
        try:
            try:
                result = await engine.resume(q.run_id, claimed=claimed)
            finally:
                self._driving.discard(q.run_id)
                dequeued = q.run_id in self._dequeued  # only if the run's end was committed
                self._dequeued.discard(q.run_id)
        except StoreError:  # the store went away mid-run: hand the run back as soon as it answers again
            await self._release_when_reachable(q.run_id)
            return
        except Exception as e:  # not a node's failure: the engine could not go on (counted, retried)
            with contextlib.suppress(StoreError):
                engine._resume_failed(q.run_id, e)
            await self._release_when_reachable(q.run_id, after=1.0)
            return
        if result.status == "running":  # another live process holds it: look again later
            self.queue.release(q.run_id, self.owner, after=LEASE_SECONDS / 3)
            return
        try:
            if not (dequeued and result.status in ("succeeded", "failed")):
                self.queue.done(q.run_id, self.owner)
        except StoreError:  # claimed again once the store answers, and dropped then
            await self._release_when_reachable(q.run_id)
        self.finished += 1
        if self.on_finished is not None:
            self.on_finished(q.run_id, result.status)

    async def _release_when_reachable(self, run_id: str, *, after: float = 0.0) -> None:
        """Free the run's queue row (claimable by any worker, this one included), retrying while the
        store is unreachable, so a run continues within a second or so of the store's return instead
        of when its claim lapses."""
        delay = 0.2
        while True:
            try:
                with self.store.transaction():
                    # the engine's own release may have failed with the store: no owner, any worker
                    self.store.execute("UPDATE workflow_runs SET owner = NULL, lease_until = NULL WHERE id = ?"
                                       " AND owner IN (?, ?) AND status = 'running'",
                                       (run_id, self.engine.owner, self.streaming.owner))
                    self.queue.release(run_id, self.owner, after=after)
                return
            except StoreError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _recover(self, limit: int) -> None:
        await self.engine.recover(concurrency=max(1, limit))

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep_or(stop, LEASE_SECONDS / 3)
            with contextlib.suppress(Exception):
                self.renew()

    def renew(self) -> None:
        """Extend the leases of the runs this worker drives, and its queue claims."""
        self.store.execute("UPDATE workflow_runs SET lease_until = ? WHERE owner IN (?, ?) AND status = 'running'",
                           (time.time() + LEASE_SECONDS, self.engine.owner, self.streaming.owner))
        self.queue.renew(self.owner)

    def _give_up(self) -> None:
        """Leave the runs still held (cancelled at a step boundary or mid-step) to other workers now."""
        with self.store.transaction():
            self.store.execute("UPDATE workflow_runs SET owner = NULL, lease_until = NULL"
                               " WHERE owner IN (?, ?) AND status = 'running'",
                               (self.engine.owner, self.streaming.owner))
            self.store.execute("UPDATE run_queue SET claimed_by = NULL, claimed_until = 0 WHERE claimed_by = ?",
                               (self.owner,))


async def _sleep_or(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
