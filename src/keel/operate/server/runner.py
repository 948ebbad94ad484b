"""Runs started over HTTP: one long-lived engine, runs as tasks, and their events fanned out.

The server keeps one :class:`~keel.workflows.Engine` (compiled workflows and model
clients are cached across requests) and drives each run in its own task, so a
caller may wait for the result (sync) or come back later (async) while the run
goes on either way. Node events go to an :class:`EventHub`, from which any number
of Server-Sent-Event streams read; a run the hub never saw (started by another
process, or long ago) is replayed from its checkpointed steps.

A request that brings its own provider key gets an engine of its own whose models
are built with that key, used only for the providers the deployment allows, and
dropped when the request ends (an approval answered later continues with the
deployment's keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from keel.ids import new_id
from keel.operate.server.budgets import Budgets, Usage
from keel.operate.server.keys import ApiKey
from keel.secrets import holding
from keel.store import SQLiteStore
from keel.workflows import (
    Engine,
    NodeEvent,
    RunResult,
    Runs,
    Versions,
    WorkflowError,
    WorkflowVersion,
)
from keel.workflows.answer import answer_nodes
from keel.workflows.events import EventLog, follow
from keel.workflows.leases import LEASE_SECONDS
from keel.workflows.queue import RunQueue
from keel.workflows.wakeup import Wakeup

__all__ = ["AnswerTokens", "EventHub", "Runner", "Started"]

_FINAL = ("run_finished", "waiting")
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(NodeEvent))
_TOKENS = ("text_delta", "text_restart")


@dataclass
class _Channel:
    workflow: str
    version: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    queues: set[asyncio.Queue] = field(default_factory=set)
    done: bool = False
    next_seq: int = 0
    key_id: str | None = None
    """Who started the run (before its row reaches the store, reads check this)."""
    end_user: str | None = None


class EventHub:
    """Recent runs' events in memory (bounded), with live subscribers."""

    def __init__(self, *, keep: int = 500) -> None:
        self._channels: OrderedDict[str, _Channel] = OrderedDict()
        self._keep = keep

    def open(self, run_id: str, workflow: str, version: int = 0, *, key_id: str | None = None,
             end_user: str | None = None) -> None:
        ch = self._channels.get(run_id)
        if ch is None:
            self._channels[run_id] = _Channel(workflow, version, key_id=key_id, end_user=end_user)
        else:
            ch.done = False
            self._channels.move_to_end(run_id)
        self._trim()

    def _trim(self) -> None:
        while len(self._channels) > self._keep:
            oldest = next((k for k, c in self._channels.items() if c.done and not c.queues), None)
            if oldest is None:
                return
            del self._channels[oldest]

    def publish(self, event: NodeEvent) -> None:
        ch = self._channels.get(event.run_id)
        if ch is None:
            ch = self._channels[event.run_id] = _Channel("")
        # A shallow copy (NodeEvent holds only scalars): dataclasses.asdict was a tenth of a request.
        doc = {k: v for k, v in vars(event).items() if v is not None}
        doc["seq"] = ch.next_seq
        ch.next_seq += 1
        doc["at"] = time.time()
        ch.events.append(doc)
        ch.done = event.kind in _FINAL
        if ch.done:  # tokens are for live readers: a finished run's history keeps only its steps
            ch.events = [e for e in ch.events if e["kind"] not in _TOKENS]
        for q in ch.queues:
            q.put_nowait(doc)

    def known(self, run_id: str) -> bool:
        return run_id in self._channels

    def meta(self, run_id: str) -> tuple[str, int] | None:
        ch = self._channels.get(run_id)
        return None if ch is None else (ch.workflow, ch.version)

    def owner(self, run_id: str) -> tuple[str | None, str | None]:
        """The API key id and end user that started ``run_id`` here (Nones if unknown)."""
        ch = self._channels.get(run_id)
        return (None, None) if ch is None else (ch.key_id, ch.end_user)

    def in_flight(self, run_id: str) -> bool:
        ch = self._channels.get(run_id)
        return ch is not None and not ch.done

    async def follow(self, run_id: str) -> AsyncIterator[dict[str, Any]]:
        """Events so far, then live ones, until the run finishes or waits."""
        ch = self._channels[run_id]
        q: asyncio.Queue = asyncio.Queue()
        ch.queues.add(q)
        try:
            last = -1
            for doc in list(ch.events):
                last = doc["seq"]
                yield doc
            if ch.done and q.empty():  # finished before we looked; what came after is queued
                return
            while True:
                doc = await q.get()
                if doc["seq"] <= last:
                    continue
                last = doc["seq"]
                yield doc
                if doc["kind"] in _FINAL:
                    return
        finally:
            ch.queues.discard(q)


class _KeyedEngine(Engine):
    """An engine whose models use a caller's provider key (for allowed providers only)."""

    def __init__(self, *args: Any, provider_key: str, providers: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._provider_key = provider_key
        self._providers = providers

    def model(self, model_string: str) -> Any:
        from keel.config import get_settings
        from keel.models import get_model, parse_model_string

        settings = get_settings()
        prefix = parse_model_string(settings.resolve_alias(model_string)).prefix
        if prefix not in self._providers:
            return super().model(model_string)
        if model_string not in self._models:
            from pydantic import SecretStr

            key = SecretStr(self._provider_key)
            settings = settings.model_copy(update={"openai_api_key": key, "openrouter_api_key": key,
                                                   "openai_compatible_api_key": key})
            self._models[model_string] = get_model(model_string, settings=settings)
        return self._models[model_string]


@dataclass
class Started:
    """A run started by :meth:`Runner.start`."""

    run_id: str
    workflow: str
    version: int
    task: asyncio.Task


class Runner:
    """Starts runs, answers approvals, and accounts usage against budgets."""

    def __init__(self, store: SQLiteStore, budgets: Budgets, *, provider_key_providers: list[str],
                 execute: bool = True, share_events: bool | None = None) -> None:
        self.store = store
        self.budgets = budgets
        self.hub = EventHub()
        self.execute = execute
        """False: runs started here are queued for ``keel worker`` (:mod:`keel.workflows.queue`)."""
        if share_events is None:
            share_events = store.dialect != "sqlite"
        self.event_log = EventLog(store) if share_events and execute else None
        """Where this server's engines also publish events, for other servers' followers."""
        publish = self.hub.publish if self.event_log is None else self._publish_both
        self.wake = Wakeup(store)
        self.queue = RunQueue(store)
        self.engine = Engine(store, on_event=publish)
        self.streaming = Engine(store, on_event=publish, stream_text=True)
        """For callers that show an answer as it is written: Agent nodes' tokens reach the hub."""
        self._answer_nodes: dict[str, frozenset[str]] = {}
        self.versions = Versions(store)
        self.runs = Runs(store)
        self._providers = provider_key_providers
        self._tasks: set[asyncio.Task] = set()
        self._keyed: weakref.WeakSet[Engine] = weakref.WeakSet()
        """Engines made for callers' provider keys, alive now (a cancel reaches their steps too)."""
        self._usage: OrderedDict[str, Usage] = OrderedDict()
        """Total usage of recently finished runs, so answering one needs no second query."""

    def version(self, workflow: str, version: int | None) -> WorkflowVersion:
        return self.versions.get(workflow, version)

    async def off_loop(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``: on PostgreSQL on a thread, so its round trips do not stall the
        other requests of the loop; on SQLite (a local file, and a store bound to its thread) here."""
        if self.store.dialect == "sqlite":
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    def answer_nodes(self, version: WorkflowVersion) -> frozenset[str]:
        """The version's Agent nodes whose tokens are its answer (see :mod:`keel.workflows.answer`)."""
        nodes = self._answer_nodes.get(version.id)
        if nodes is None:
            nodes = self._answer_nodes[version.id] = answer_nodes(self.engine.compiled(version))
        return nodes

    async def start(self, version: WorkflowVersion, input: Any, *, key: ApiKey | None, end_user: str | None,
                    provider_key: str | None = None, stream_text: bool = False, run_id: str | None = None) -> Started:
        """Start a run in a task. Input errors (a start node's ``input_schema``) raise here.

        With ``stream_text``, Agent nodes' tokens are published as ``text_delta`` events. ``run_id``:
        the id to give the run (an idempotency key's reservation), a new one by default."""
        run_id = run_id or new_id()
        if not self.execute and not provider_key:
            return await self._enqueue(version, input, run_id, key=key, end_user=end_user, stream_text=stream_text)
        self.hub.open(run_id, version.name, version.version, key_id=key.id if key else None, end_user=end_user)
        if provider_key:
            engine: Engine = _KeyedEngine(self.store, on_event=self.hub.publish, provider_key=provider_key,
                                          providers=self._providers, stream_text=stream_text)
            self._keyed.add(engine)
        else:
            engine = self.streaming if stream_text else self.engine

        async def go() -> RunResult:
            try:
                # The caller's provider key is a secret for everything this run does (this task and
                # the tasks it starts): scrubbed from every error it stores, returns or logs.
                with holding(provider_key):
                    result = await engine.start(version, input, run_id=run_id,
                                                key_id=key.id if key else None, end_user=end_user)
            finally:
                if engine is not self.engine and engine is not self.streaming:
                    await engine.aclose()
            await self.off_loop(self._account, result, version.name, key, end_user, fresh=True)
            return result

        task = self._spawn(go())
        # Engine.start validates the input before its first suspension: one turn of the loop
        # lets a bad input surface as this request's error instead of a failed background task.
        await asyncio.sleep(0)
        if task.done() and isinstance(task.exception(), WorkflowError):
            self.hub.publish(NodeEvent("run_finished", run_id, status="rejected"))
            raise task.exception()  # type: ignore[misc]
        return Started(run_id, version.name, version.version, task)

    async def answer(self, approval_id: str, *, approved: bool, by: str | None, comment: str | None,
                     key: ApiKey | None, end_user: str | None) -> RunResult:
        approval = self.runs.approval(approval_id)
        if approval is not None:
            self.hub.open(approval.run_id, approval.workflow)
        if not self.execute and approval is not None:
            return await self._answer_queued(approval, approved=approved, by=by, comment=comment, key=key,
                                             end_user=end_user)
        result = await self._spawn(self.engine.answer(approval_id, approved=approved, by=by, comment=comment))
        if approval is not None:
            self._account(result, approval.workflow, key, end_user)
        return result

    # -- runs executed by workers (execute=False) ----------------------------------------------

    def _publish_both(self, event: NodeEvent) -> None:
        self.hub.publish(event)
        self.event_log.publish(event)  # type: ignore[union-attr]

    async def _enqueue(self, version: WorkflowVersion, input: Any, run_id: str, *, key: ApiKey | None,
                       end_user: str | None, stream_text: bool) -> Started:
        """Record the run (no owner) and its queue row in one commit; follow its events from the store."""
        key_id = key.id if key else None
        run = self.engine.create(version, input, run_id=run_id, key_id=key_id, end_user=end_user, _defer=True)
        self.hub.open(run_id, version.name, version.version, key_id=key_id, end_user=end_user)

        def write() -> None:
            self.engine.queue_rows(run)
            self.queue.add(run_id, stream_text=stream_text)

        await self.store.commit_group().commit(write)
        task = self._spawn(self._remote(run_id, version.name, key, end_user, after="", fresh=True))
        return Started(run_id, version.name, version.version, task)

    async def _answer_queued(self, approval: Any, *, approved: bool, by: str | None, comment: str | None,
                             key: ApiKey | None, end_user: str | None) -> RunResult:
        """Record the answer and queue the run for a worker; wait for it like a run started here."""
        last = self.store.query("SELECT COALESCE(MAX(id), '') AS id FROM run_events WHERE run_id = ?",
                                (approval.run_id,))[0]["id"]
        await self.engine.answer(approval.id, approved=approved, by=by, comment=comment, drive=False)
        self.queue.add(approval.run_id)
        return await self._spawn(self._remote(approval.run_id, approval.workflow, key, end_user, after=last))

    async def _remote(self, run_id: str, workflow: str, key: ApiKey | None, end_user: str | None, *,
                      after: str, fresh: bool = False) -> RunResult:
        """Relay the stored events of a run a worker executes to the hub, until it finishes or waits."""
        async for doc in follow(self.store, run_id, self.wake, after=after):
            self.hub.publish(NodeEvent(**{k: doc[k] for k in _EVENT_FIELDS if k in doc}))
        result = self.engine._result(run_id)
        self._account(result, workflow, key, end_user, fresh=fresh)
        return result

    def follow_stored(self, run_id: str, status: str) -> AsyncIterator[dict[str, Any]] | None:
        """The events of a run executed by another process, from the store (None if it has none there):
        from its start, or, for a run continued after an approval, from that continuation."""
        waits = [r["id"] for r in self.store.query(
            "SELECT id FROM run_events WHERE run_id = ? AND kind IN ('waiting', 'run_finished') ORDER BY id",
            (run_id,))]
        if not waits and not self.store.query("SELECT 1 AS x FROM run_events WHERE run_id = ? LIMIT 1", (run_id,)):
            return None
        if status == "running":  # what came after its last wait
            after = waits[-1] if waits else ""
        else:  # what led to the wait or end it is at now
            after = waits[-2] if len(waits) >= 2 else ""
        return follow(self.store, run_id, self.wake, after=after)

    def renew_leases(self) -> None:
        """Extend the leases of the runs this server's engines drive (a long model call keeps its run)."""
        owners = [self.engine.owner, self.streaming.owner, *(e.owner for e in list(self._keyed))]
        marks = ", ".join("?" * len(owners))
        self.store.execute(f"UPDATE workflow_runs SET lease_until = ? WHERE owner IN ({marks}) AND status = 'running'",
                           (time.time() + LEASE_SECONDS, *owners))

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A caller that stops waiting (timeout, disconnect) must not turn the run's outcome into
        # an "exception never retrieved" warning: the outcome is in the store.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    def _account(self, result: RunResult, workflow: str, key: ApiKey | None, end_user: str | None, *,
                 fresh: bool = False) -> None:
        if result.trace_id is None:  # every result the engine returns carries it
            return
        total = self.budgets.usage_of_trace(result.trace_id)
        self._usage[result.run_id] = total
        while len(self._usage) > 1000:
            self._usage.popitem(last=False)
        # A run continued after an approval was accounted up to its wait: count only what is new.
        before = Usage() if fresh else self.budgets.recorded_for_run(result.run_id)
        self.budgets.record(key=key, end_user=end_user, run_id=result.run_id, workflow=workflow,
                            usage=Usage(total.input_tokens - before.input_tokens,
                                        total.output_tokens - before.output_tokens,
                                        total.cost_usd - before.cost_usd))

    def usage(self, run_id: str) -> Usage:
        """A run's total usage (tokens and cost of its model calls)."""
        cached = self._usage.get(run_id)
        return cached if cached is not None else self.budgets.usage_of_trace(self.runs.get(run_id).trace_id)

    async def events(self, started: Started, *, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """The run's events from the hub until it finishes or waits, or its task ends (a run that
        raised publishes no final event), or ``timeout`` seconds have passed."""
        if not self.hub.known(started.run_id):
            return
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        it = self.hub.follow(started.run_id).__aiter__()
        try:
            while True:
                step = asyncio.ensure_future(it.__anext__())
                await asyncio.wait({step, started.task}, return_when=asyncio.FIRST_COMPLETED,
                                   timeout=None if deadline is None else max(0.0, deadline - loop.time()))
                if not step.done() and started.task.done():
                    # What the run published is queued already (publishing is synchronous); the
                    # step needs a turn of the loop to take it. Nothing comes if the run raised.
                    await asyncio.wait({step}, timeout=0.05)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await step
                    return
                try:
                    yield step.result()
                except StopAsyncIteration:
                    return
        finally:
            with contextlib.suppress(Exception):
                await it.aclose()  # type: ignore[attr-defined]

    async def wait(self, started: Started, timeout: float) -> RunResult | None:
        """The run's result, or None if it is still going after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(asyncio.shield(started.task), timeout)
        except TimeoutError:
            return None

    async def worker(self, stop: asyncio.Event, *, interval: float = 5.0) -> None:
        """Resume orphaned runs and fire approval timeouts, like ``keel runs resume``, until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(Exception):
                self.renew_leases()
                if self.execute:
                    await self.engine.recover()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(interval, LEASE_SECONDS / 3))

    def cancel(self, run_id: str, *, by: str | None = None, reason: str | None = None) -> RunResult:
        """Cancel a run (see :meth:`Engine.cancel`); a step this process has in flight for it, in
        any of its engines, is cancelled too."""
        result = self.engine.cancel(run_id, by=by, reason=reason)
        self.streaming.interrupt(result.run_id)
        for engine in list(self._keyed):
            engine.interrupt(result.run_id)
        return result

    async def aclose(self) -> None:
        """Stop without waiting on any run: runs in progress are abandoned at their last checkpoint
        (this process's death frees them; the next server or ``keel runs resume`` continues them)."""
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:  # a task that ignores its cancel is left behind, not awaited
            await asyncio.wait(list(self._tasks), timeout=2)
        await self.engine.aclose()
        await self.streaming.aclose()
        if self.event_log is not None:
            with contextlib.suppress(Exception):
                self.event_log.flush()
        self.wake.close()


class AnswerTokens:
    """A run's answer as its answer nodes write it, for streams that cannot take text back.

    :meth:`feed` returns the piece of each hub event to send (tokens of the version's answer
    nodes, see :mod:`keel.workflows.answer`); :meth:`rest` what is left to send once the run's
    answer is known: the part not streamed yet, or, when what was streamed is not how the
    answer begins (words before a tool call, an attempt the run did not keep), the whole
    answer after a blank line.
    """

    def __init__(self, nodes: frozenset[str]) -> None:
        self.nodes = nodes
        self.sent = ""
        """Everything sent so far."""
        self.turn = ""
        """What was sent since the last ``text_restart``: the answer's beginning, if all goes well."""

    def feed(self, event: dict[str, Any]) -> str:
        if event.get("node_id") not in self.nodes:
            return ""
        if event.get("kind") == "text_delta":
            text = event.get("text") or ""
            self.sent += text
            self.turn += text
            return text
        if event.get("kind") == "text_restart":
            self.turn = ""
        return ""

    def rest(self, answer: str) -> str:
        if self.turn and answer.startswith(self.turn):
            return answer[len(self.turn):]
        if self.sent:
            return "\n\n" + answer
        return answer


EventSource = Callable[[str], AsyncIterator[dict[str, Any]]]
