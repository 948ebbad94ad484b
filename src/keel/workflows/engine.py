"""The durable engine: runs workflows one checkpointed step at a time.

Every completed node step is committed to the store in one transaction (the
step row, its span, and the run's new position and variables). A process that
dies — even by ``kill -9`` — loses at most the step in flight; :meth:`Engine.recover`
(``keel runs resume``) continues every orphaned run from its last completed step.

Ownership: a run being executed has an ``owner`` (host, pid) and a lease. Another
engine takes a run over only when its lease has expired or its owner process is
dead; every checkpoint is a compare-and-set on ``(owner, seq)``, so a step is
committed at most once even if two engines race.

Steps of *pure* nodes (Start, Transform, Set state, If/else, While, End: no side
effects, same outcome when re-executed) each get their checkpoint row, but their
commits are grouped with the next step that has effects, or the run's end: a
crash can only lose pure steps, which re-execute identically. A Start -> Transform
-> End run is therefore one transaction (see docs/decisions/0004-durable-execution.md).

Human approval is a durable wait: the run is stored as ``waiting`` with no owner
and no process holds anything; :meth:`Engine.answer` resumes it, whenever that is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from keel import jsontext
from keel.ids import new_id
from keel.secrets import scrub
from keel.store import ModelCalls, SQLiteStore
from keel.store.group import later
from keel.workflows.clock import Clock, SystemClock
from keel.workflows.errors import ApprovalError, RunFinishedError, WorkflowError
from keel.workflows.leases import LEASE_SECONDS, may_take_over, owner_id
from keel.workflows.limits import after_step, before_step, over_time
from keel.workflows.nodes import (
    NodeFailure,
    StepOutcome,
    chat_history_of,
    run_simple_node,
    variables,
)
from keel.workflows.runs import ApprovalRecord, RunResult, Runs
from keel.workflows.spec import (
    AgentNode,
    EndNode,
    FileSearchNode,
    GuardrailsNode,
    HumanApprovalNode,
    IfElseNode,
    McpNode,
    SetStateNode,
    StartNode,
    TransformNode,
    WhileNode,
)
from keel.workflows.stopping import (
    RESUME_ATTEMPTS,
    clear_resume_failures,
    end_run,
    record_resume_failure,
)
from keel.workflows.tracing import INSERT_SQL, Span, Spans, span_row, stable_span_id
from keel.workflows.validate import CompiledWorkflow, compile_workflow
from keel.workflows.versions import Versions, WorkflowVersion

__all__ = ["Engine", "NodeEvent"]


def _memo_row(run_id: str, key: str, value: str) -> tuple[str, tuple]:
    return ("INSERT INTO workflow_memos (run_id, key, value, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (run_id, key) DO NOTHING", (run_id, key, value, time.time()))

_PURE = (StartNode, TransformNode, SetStateNode, IfElseNode, WhileNode, EndNode)
"""Node types without side effects: re-executing one gives the same outcome."""


def _is_pure(node: Any) -> bool:
    """Whether re-executing ``node`` gives the same outcome with no side effect (so its commit may
    wait): the pure node types, and Guardrails nodes that call no model."""
    if isinstance(node, GuardrailsNode):
        return not any(getattr(c, "model", None) for c in node.resolved_checks())
    return isinstance(node, _PURE)


def _model_only(node: Any) -> bool:
    """An Agent node whose only effect is asking its model: no tools of any kind (Python, HTTP, MCP,
    agents as tools), no handoffs, no memory. Everything it records (the model call's memo, span,
    ``model_calls`` and messages rows) is written with the step's commit (:meth:`Engine.memo_with_step`),
    so a crash before that commit leaves no trace of it and a re-execution only asks the model again."""
    return (isinstance(node, AgentNode) and not node.tools and node.http is None and not node.mcp
            and not node.agent_tools and not node.handoffs and node.memory is None)


_MAX_PENDING = 64
"""Most pure steps committed together (a long pure loop still checkpoints regularly)."""


@dataclass(frozen=True)
class NodeEvent:
    """Progress of a run, for streaming to a user (``keel run`` prints these)."""

    kind: Literal["node_started", "node_finished", "node_failed", "waiting", "run_finished", "text_delta",
                  "text_restart", "warning"]
    run_id: str
    node_id: str | None = None
    node_type: str | None = None
    port: str | None = None
    duration_ms: float | None = None
    error: str | None = None
    status: str | None = None
    text: str | None = None
    """For ``text_delta``: a piece of an Agent node's answer as the model writes it (only from an
    engine made with ``stream_text=True``). ``text_restart``: discard the pieces shown so far for this
    node (the model's attempt was rejected and a new one follows). ``warning``: something the operator
    should know, e.g. MCP tools no approval policy names."""


@dataclass
class _ActiveRun:
    id: str
    version: WorkflowVersion
    wf: CompiledWorkflow
    ctx: dict[str, Any]
    seq: int
    current: str
    trace_id: str
    root_span: str
    committed_seq: int = 0
    """``seq`` as last committed; the compare-and-set of the next commit checks it."""
    pending: list[tuple[tuple, tuple]] = field(default_factory=list)
    """Step and span rows of pure steps executed but not committed yet."""
    new: tuple | None = None
    """The run's row, when the run itself is not in the store yet (see :meth:`Engine.start`)."""
    deferred: list[tuple[str, tuple]] = field(default_factory=list)
    """Statements that go into the next commit (see :meth:`Engine.memo_with_step`)."""
    fresh: bool = False
    """Created by this engine and never parked or taken over: no step has run before, so no memo exists."""
    checked: bool = False
    """The store said the run is this engine's and running (a claim, or a commit's compare-and-set)
    after the last effectful step began: the next one needs no cancellation check of its own."""
    status: str = "running"
    output: Any = None
    error: str | None = None
    began: float = 0.0
    """``clock.now()`` when this drive began."""
    spent: float = 0.0
    """Seconds the run was executed before this drive (``limits.max_seconds`` counts both)."""


class _OverTime(Exception):
    """An effectful step was still running when the run's ``limits.max_seconds`` ran out."""


class _LostRun(Exception):
    """Another engine took the run over, or it was cancelled; this one stops executing it."""


_INSERT_RUN = ("INSERT INTO workflow_runs (id, workflow, version, version_id, input, trace_id, created_at,"
               " seq, current_node, context, status, output, error, updated_at, lease_until, finished_at,"
               " owner, key_id, end_user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _one_row(changed: int) -> None:
    """The check of a checkpoint's compare-and-set: it changed the run's row, or the run is lost."""
    if changed != 1:
        raise _LostRun


class Engine:
    """Runs, resumes and answers workflow runs against one store.

    ``tools`` maps bare tool names used in specs to functions (import paths need no entry).
    ``clock`` decides when approvals time out. ``on_event`` receives :class:`NodeEvent` values.
    """

    def __init__(self, store: SQLiteStore, *, clock: Clock | None = None,
                 tools: dict[str, Callable[..., Any]] | None = None,
                 on_event: Callable[[NodeEvent], None] | None = None, stream_text: bool = False) -> None:
        self.store = store
        self.stream_text = stream_text and on_event is not None
        """Stream Agent nodes' answers (without an output schema) to ``on_event`` as ``text_delta``."""
        self.clock = clock or SystemClock()
        self.tools = tools
        self.on_event = on_event
        self.owner = owner_id()
        self.versions = Versions(store)
        self.runs = Runs(store)
        self.spans = Spans(store)
        self.model_calls = ModelCalls(store)
        self._compiled: dict[str, CompiledWorkflow] = {}
        self._models: dict[str, Any] = {}
        self._active: set[str] = set()
        """Runs this engine is driving right now (never claimed a second time)."""
        self._fresh: set[str] = set()
        """Runs being driven for the first time (see ``_ActiveRun.fresh``)."""
        self._inflight: dict[str, asyncio.Task] = {}
        """The task of each effectful step running now, by run (a cancel cancels it)."""
        self._stopping: set[str] = set()
        """Runs of this engine cancelled meanwhile: they stop at their next step."""
        self.on_final: Callable[[str], None] | None = None
        """Store statements for the transaction that commits a run's end (a worker drops the run's
        queue row there: one commit per run fewer). Called with the run's id; may run twice."""
        from keel.workflows.otlp import exporter_from_env

        self.otlp = exporter_from_env()
        """The OTLP exporter when ``KEEL_OTLP_ENDPOINT`` is set (see :mod:`keel.workflows.otlp`)."""

    # -- helpers used by node executors ------------------------------------------------------

    def model(self, model_string: str) -> Any:
        from keel.models import get_model

        if model_string not in self._models:
            self._models[model_string] = get_model(model_string)
        return self._models[model_string]

    def memo_get(self, run_id: str, key: str) -> str | None:
        if run_id in self._fresh:  # nothing of this run was executed before: skip the query
            return None
        rows = self.store.query("SELECT value FROM workflow_memos WHERE run_id = ? AND key = ?", (run_id, key))
        return rows[0]["value"] if rows else None

    def memo_put(self, run_id: str, key: str, value: str, *, also: list[tuple[str, tuple]] = ()) -> None:
        """Store a memo now, with the statements in ``also`` (e.g. the call's span), in one transaction."""
        with self.store.transaction():
            for sql, params in also:
                self.store.execute(sql, params)
            self.store.execute(*_memo_row(run_id, key, value))
            # Progress inside a long step renews the lease.
            self.store.execute("UPDATE workflow_runs SET lease_until = ? WHERE id = ? AND owner = ?",
                               (time.time() + LEASE_SECONDS, run_id, self.owner))

    def memo_with_step(self, run: _ActiveRun, key: str, value: str, *, also: list[tuple[str, tuple]] = ()) -> None:
        """Like :meth:`memo_put`, but written with the run's next commit instead of now.

        For records whose loss in a crash costs nothing but a repeat without side effects: an
        Agent node's final model call (its memo, span and ``model_calls`` row), which a
        re-executed step would make again. Tool results are never deferred."""
        run.deferred.extend([*also, _memo_row(run.id, key, value)])

    async def aclose(self) -> None:
        for m in self._models.values():
            await m.aclose()
        self._models.clear()
        if self.otlp is not None:
            await asyncio.to_thread(self.otlp.flush)

    def compiled(self, version: WorkflowVersion) -> CompiledWorkflow:
        wf = self._compiled.get(version.id)
        if wf is None:
            wf = self._compiled[version.id] = compile_workflow(version.loaded(), tools=self.tools,
                                                               models=version.models)
        return wf

    def _emit(self, event: NodeEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- starting and resuming ---------------------------------------------------------------

    async def start(self, version: WorkflowVersion, input: Any, *, run_id: str | None = None,
                    key_id: str | None = None, end_user: str | None = None) -> RunResult:
        """Start a run of ``version`` with ``input`` (text or JSON) and drive it as far as it goes.

        ``key_id`` / ``end_user``: who asked for it (``keel serve``'s API key and end user), stored
        with the run so that only they (or an admin key) may read it."""
        run = self.create(version, input, run_id=run_id, key_id=key_id, end_user=end_user, _defer=True)
        return await self._drive(run)

    def create(self, version: WorkflowVersion, input: Any, *, run_id: str | None = None,
               key_id: str | None = None, end_user: str | None = None, _defer: bool = False) -> _ActiveRun:
        """Record a new run (owned by this engine) without executing it.

        With ``_defer`` the run's row is written with its first commit instead (a run
        nobody has seen yet has nothing to lose before then).
        """
        from keel.textcheck import lone_surrogate_at

        bad = lone_surrogate_at(input, "input")
        if bad is not None:
            raise WorkflowError(f"{bad} contains a lone UTF-16 surrogate (like \\ud800), which is not text",
                                hint="send valid Unicode text: escape a surrogate pair together, never half of one")
        wf = self.compiled(version)
        start = wf.nodes[wf.start_id]
        if start.input_schema is not None:
            from keel.models.structured import validate_instance

            problem = validate_instance(input, start.input_schema)
            if problem:
                raise WorkflowError(f"the input does not match the start node's input_schema: {problem}",
                                    hint="pass JSON that satisfies it, e.g. --input '{\"...\": ...}'")
        now = time.time()
        run_id = run_id or new_id()
        trace_id = new_id()
        text = input if isinstance(input, str) else json.dumps(input, ensure_ascii=False)
        history = chat_history_of(input, accept_tool_history=start.accept_tool_history)
        if history:  # a conversation in: its last user message is the input text
            text = history.pop()["content"]
        ctx = {"input": input, "input_as_text": text, "state": dict(start.state), "nodes": {},
               "last": {"output_text": text, "output_parsed": None if isinstance(input, str) else input},
               "history": history, "loops": {}}
        root = Span(trace_id, f"workflow {version.name}", "workflow", span_id=stable_span_id(run_id, "root"),
                    run_id=run_id, started_at=now,
                    attributes={"keel.workflow.name": version.name, "keel.workflow.version": version.version,
                                "keel.run.id": run_id})
        row = (run_id, version.name, version.version, version.id, jsontext.dumps(input), trace_id, now, key_id,
               end_user)
        run = _ActiveRun(run_id, version, wf, ctx, 0, wf.start_id, trace_id, root.span_id,
                         new=(row, span_row(root)), fresh=True)
        if not _defer:
            self._flush(run)
        return run

    def _claim(self, run_id: str, *, from_status: str = "running") -> _ActiveRun | None:
        """Take ownership of ``run_id`` if nobody live holds it; None if it is not ours to run."""
        if run_id in self._active:
            return None
        rows = self.store.query("SELECT * FROM workflow_runs WHERE id = ?", (run_id,))
        if not rows or rows[0]["status"] != from_status:
            return None
        r = rows[0]
        if from_status == "running" and r["owner"] != self.owner \
                and not may_take_over(r["owner"], r["lease_until"]):
            return None
        changed = self.store.execute(
            "UPDATE workflow_runs SET owner = ?, lease_until = ?, status = 'running', updated_at = ?"
            " WHERE id = ? AND status = ? AND seq = ? AND COALESCE(owner, '') = ?",
            (self.owner, time.time() + LEASE_SECONDS, time.time(), run_id, from_status, r["seq"],
             r["owner"] or ""))
        if changed != 1:
            return None
        version = self.versions.by_id(r["version_id"])
        return _ActiveRun(run_id, version, self.compiled(version), json.loads(r["context"]), r["seq"],
                          r["current_node"], r["trace_id"], stable_span_id(run_id, "root"), committed_seq=r["seq"],
                          checked=True)

    def claim_unowned(self, run_ids: list[str]) -> dict[str, Any]:
        """Take the running runs among ``run_ids`` that nobody holds (runs a server queued for
        workers) in one statement; pass each to :meth:`resume` as ``claimed``, which must follow
        (a claimed run not driven stays held until this engine's process is gone). The others are
        left to :meth:`resume`'s own claim."""
        ids = [i for i in dict.fromkeys(run_ids) if i not in self._active]
        if not ids:
            return {}
        sql = ("UPDATE workflow_runs SET owner = ?, lease_until = ?, updated_at = ?"
               f" WHERE id IN ({', '.join('?' * len(ids))}) AND status = 'running' AND owner IS NULL"
               " RETURNING id, version_id, context, seq, current_node, trace_id")
        params = (self.owner, time.time() + LEASE_SECONDS, time.time(), *ids)
        if self.store.dialect == "sqlite":
            with self.store.transaction():
                rows = self.store.query(sql, params)
        else:
            rows = self.store.query(sql, params)  # one statement: its own transaction
        claimed = {}
        for r in rows:
            version = self.versions.by_id(r["version_id"])
            # No step committed: nothing effectful ran (every step before an effectful one commits
            # first), so no memo exists and the drive skips the memo reads, as for a run it started.
            claimed[r["id"]] = _ActiveRun(r["id"], version, self.compiled(version), json.loads(r["context"]),
                                          r["seq"], r["current_node"], r["trace_id"],
                                          stable_span_id(r["id"], "root"), committed_seq=r["seq"],
                                          fresh=r["seq"] == 0, checked=True)
        return claimed

    async def resume(self, run_id: str, *, claimed: Any = None) -> RunResult:
        """Continue one run from its last checkpoint (if it is orphaned, or due after a wait).
        ``claimed``: the run as :meth:`claim_unowned` took it."""
        if claimed is not None:
            if claimed.id in self._active:  # never two drives of one run
                return self._result(claimed.id)
            return await self._drive(claimed)
        rec = self.runs.get(run_id)
        run = self._claim(rec.id) if rec.status == "running" else None
        if run is None and rec.status == "waiting" and self._wait_is_over(rec.id):
            run = self._claim(rec.id, from_status="waiting")
        if run is None:
            return self._result(rec.id)
        return await self._drive(run)

    def _wait_is_over(self, run_id: str) -> bool:
        # A waiting run has one current approval, the pending one; earlier ones of the run are
        # answered and were used already. No pending approval means it was answered.
        pending = self.runs.approvals(status="pending", run_id=run_id)
        return not pending or any(a.expires_at is not None and a.expires_at <= self.clock.now() for a in pending)

    async def recover(self, *, concurrency: int = 16) -> list[RunResult]:
        """Resume every run left behind by a dead process, and every wait that is over.

        Call it when a worker starts (``keel runs resume`` does); it is safe to call
        from several processes at once.
        """
        # Runs in the run queue are the workers' to claim (keel.workflows.queue), not recovered here.
        rows = self.store.query("SELECT id FROM workflow_runs WHERE status = 'running'"
                                " AND id NOT IN (SELECT run_id FROM run_queue) ORDER BY created_at")
        waiting = self.store.query(
            "SELECT r.id FROM workflow_runs r WHERE r.status = 'waiting'"
            " AND r.id NOT IN (SELECT run_id FROM run_queue) AND ("
            " NOT EXISTS (SELECT 1 FROM workflow_approvals a WHERE a.run_id = r.id AND a.status = 'pending')"
            " OR EXISTS (SELECT 1 FROM workflow_approvals a WHERE a.run_id = r.id AND a.status = 'pending'"
            " AND a.expires_at <= ?))", (self.clock.now(),))
        sem = asyncio.Semaphore(concurrency)
        results: list[RunResult] = []

        async def one(run_id: str, status: str) -> None:
            async with sem:
                try:
                    run = self._claim(run_id, from_status=status)
                    if run is not None:
                        results.append(await self._drive(run))
                        clear_resume_failures(self.store, run_id)
                except Exception as e:  # the engine could not go on with this run (not a node failure)
                    results.append(self._resume_failed(run_id, e))

        await asyncio.gather(*(one(r["id"], "running") for r in rows),
                             *(one(r["id"], "waiting") for r in waiting))
        return results

    def _resume_failed(self, run_id: str, e: Exception) -> RunResult:
        """Count a resume of ``run_id`` that raised; fail the run after the same error
        :data:`~keel.workflows.stopping.RESUME_ATTEMPTS` times in a row."""
        error = scrub(f"{type(e).__name__}: {e}".encode("utf-8", "backslashreplace").decode())[:2000]
        count = record_resume_failure(self.store, run_id, error)
        if count >= RESUME_ATTEMPTS:
            reason = f"the run could not be resumed ({count} times in a row, same error): {error}"
            if end_run(self.store, run_id, status="failed", error=reason):
                self._emit(NodeEvent("run_finished", run_id, status="failed", error=reason))
                return RunResult(run_id, "failed", None, reason)
        return RunResult(run_id, "running", None, error)

    def cancel(self, run_id: str, *, by: str | None = None, reason: str | None = None) -> RunResult:
        """Cancel a running or waiting run, in whichever process executes it.

        The run is stored as ``cancelled`` (its pending approvals closed) at once; the engine
        driving it stops at its next step boundary, and a model or tool call this engine has in
        flight for it is cancelled. Raises :class:`RunFinishedError` for a finished run."""
        rec = self.runs.get(run_id)
        error = "cancelled" + (f" by {by}" if by else "") + (f": {reason}" if reason else "")
        if rec.status not in ("running", "waiting") or not end_run(self.store, rec.id, status="cancelled",
                                                                     error=error, by=by):
            status = self.runs.get(rec.id).status
            raise RunFinishedError(f"run {rec.id} has finished already: {status}",
                                   hint="only running and waiting runs can be cancelled")
        self.interrupt(rec.id)
        if rec.id not in self._active:
            self._emit(NodeEvent("run_finished", rec.id, status="cancelled", error=error))
        return self._result(rec.id)

    def interrupt(self, run_id: str) -> None:
        """Stop driving ``run_id`` in this engine now (its stored row says it ended): the step in
        flight, if effectful, is cancelled; a pure one finishes and the run stops after it."""
        if run_id in self._active:
            self._stopping.add(run_id)
        task = self._inflight.get(run_id)
        if task is not None:
            task.cancel()

    async def serve(self, *, interval: float = 5.0, stop: asyncio.Event | None = None,
                    concurrency: int = 16) -> None:
        """Be a worker: :meth:`recover` every ``interval`` seconds until ``stop`` is set, so
        crashed runs resume and approval timeouts fire without anyone asking."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self.recover(concurrency=concurrency)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    async def answer(self, approval_id: str, *, approved: bool, by: str | None = None,
                     comment: str | None = None, drive: bool = True) -> RunResult:
        """Approve or reject a pending approval, then continue its run (``drive=False``: leave that to
        whoever the caller queues it for, see :mod:`keel.workflows.queue`)."""
        approval = self.runs.approval(approval_id)
        if approval is None:
            raise ApprovalError(f"no approval with id {approval_id!r}",
                                hint="give the full id or a unique prefix of at least 8 hex digits; "
                                     "list pending approvals with `keel approvals list`")
        if approval.status != "pending":
            raise ApprovalError(f"approval {approval.id} was already answered: {approval.status}",
                                hint="each approval is answered once")
        with self.store.transaction():
            changed = self.store.execute(
                "UPDATE workflow_approvals SET status = ?, decided_at = ?, decided_by = ?, comment = ?"
                " WHERE id = ? AND status = 'pending'",
                ("approved" if approved else "rejected", self.clock.now(), by, comment, approval.id))
            if changed != 1:
                raise ApprovalError(f"approval {approval.id} was answered meanwhile", hint="check `keel runs show`")
        if not drive:
            return self._result(approval.run_id)
        run = self._claim(approval.run_id, from_status="waiting")
        if run is None:
            return self._result(approval.run_id)
        return await self._drive(run)

    def _result(self, run_id: str) -> RunResult:
        rec = self.runs.get(run_id)
        approval = None
        if rec.status == "waiting":
            pending = self.runs.approvals(status="pending", run_id=run_id)
            approval = pending[-1] if pending else None
        return RunResult(rec.id, rec.status, rec.output, rec.error, approval, trace_id=rec.trace_id)

    # -- the step loop -----------------------------------------------------------------------

    async def _drive(self, run: _ActiveRun) -> RunResult:
        self._active.add(run.id)
        if run.fresh:
            self._fresh.add(run.id)
        began = time.time()
        run.began, run.spent = self.clock.now(), float(run.ctx.get("elapsed") or 0.0)
        try:
            while True:
                result = await self._step(run)
                if result is not None:
                    if self.otlp is not None:
                        self._export(run, began)
                    return result
        except _LostRun:
            result = self._result(run.id)
            if result.status == "cancelled":
                self._emit(NodeEvent("run_finished", run.id, status="cancelled", error=result.error))
            return result
        except Exception:
            self._release(run)
            raise
        finally:
            self._active.discard(run.id)
            self._fresh.discard(run.id)
            self._stopping.discard(run.id)

    def _release(self, run: _ActiveRun) -> None:
        """Let go of a run whose drive raised, so the recovery loop (of any process) retries it
        and, after :data:`~keel.workflows.stopping.RESUME_ATTEMPTS` identical failures, fails it."""
        if run.new is None:
            with contextlib.suppress(Exception):
                self.store.execute("UPDATE workflow_runs SET owner = NULL, lease_until = NULL WHERE id = ?"
                                   " AND owner = ?", (run.id, self.owner))

    def _export(self, run: _ActiveRun, since: float) -> None:
        """Queue the spans of ``run``'s trace that ended during this drive for OTLP export."""
        rows = self.store.query("SELECT * FROM trace_spans WHERE trace_id = ? AND ended_at >= ?"
                                " ORDER BY started_at", (run.trace_id, since - 0.001))
        self.otlp.submit([Span(**{**r, "attributes": json.loads(r["attributes"] or "{}")})  # type: ignore[union-attr]
                          for r in rows])

    async def _step(self, run: _ActiveRun) -> RunResult | None:
        node = run.wf.nodes[run.current]
        pure = _is_pure(node)
        # Cancelled: stop at this step boundary. Before an effectful step the store is asked, unless it
        # answered already since the last effectful step began: a cancel or a takeover clears the run's
        # owner, which the claim and every commit's compare-and-set check (one round trip fewer per step;
        # pure steps in between take no time worth a look).
        if run.id in self._stopping or (not pure and run.new is None and not run.checked
                                        and self._ended_elsewhere(run)):
            raise _LostRun
        if not pure:
            run.checked = False
        started = time.time()
        limits = run.wf.spec.run_limits()
        elapsed = run.spent + (self.clock.now() - run.began)
        self._emit(NodeEvent("node_started", run.id, node.id, node.type))
        span = Span(run.trace_id, f"node {node.id}", "node", span_id=stable_span_id(run.id, run.seq),
                    parent_id=run.root_span, run_id=run.id, started_at=started,
                    attributes={"keel.node.id": node.id, "keel.node.type": node.type, "keel.step": run.seq})
        over = before_step(limits, steps=run.seq, elapsed=elapsed, node_id=node.id)
        if over is not None:
            return await self._over_limit(run, node, span, over, started)
        env = variables(run.ctx, run.id, run.version.name)
        error: str | None = None
        try:
            if pure:
                outcome = await self._execute(run, node, env, span)
            else:
                outcome = await self._guarded(run, node, env, span, limits.max_seconds - elapsed)
        except _OverTime:
            over = over_time(limits, elapsed=run.spent + (self.clock.now() - run.began), node_id=node.id)
            return await self._over_limit(run, node, span, over, started)
        except NodeFailure as e:
            error = e.message
            span.attributes["error.type"] = e.kind
            if run.wf.target(node.id, "error") is None or e.kind == "limit":  # a run limit: no edge takes it
                self._emit(NodeEvent("node_failed", run.id, node.id, node.type, error=error,
                                     duration_ms=(time.time() - started) * 1000))
                return await self._checkpoint(run, node, span.end(error=error), None, None, error=error,
                                              started=started)
            outcome = StepOutcome("error", {"output_text": error, "output_parsed": {"error": error,
                                                                                     "type": e.kind}})
        if outcome.wait is not None:
            self._emit(NodeEvent("waiting", run.id, node.id, node.type))
            return self._result(run.id)
        output_json = None if isinstance(node, StartNode) else jsontext.dumps(outcome.output)
        changed = outcome.state is not None or outcome.history is not None
        over = after_step(
            limits, node_id=node.id, output_json=output_json,
            state=(run.ctx["state"] if outcome.state is None else outcome.state) if changed else None,
            history=(run.ctx.get("history") if outcome.history is None else outcome.history) if changed else None)
        if over is not None:
            return await self._over_limit(run, node, span, over, started)
        span.attributes.update(outcome.attributes)
        span.attributes["keel.node.port"] = outcome.port
        self._emit(NodeEvent("node_finished" if error is None else "node_failed", run.id, node.id, node.type,
                             port=outcome.port, error=error, duration_ms=(time.time() - started) * 1000))
        return await self._checkpoint(run, node, span.end(error=error), outcome, outcome.port, error=error,
                                      started=started, output_json=output_json)

    async def _over_limit(self, run: _ActiveRun, node: Any, span: Span, error: str, started: float) -> RunResult | None:
        """Fail the run at ``node`` for going over one of its limits (no ``error`` edge takes this)."""
        span.attributes["error.type"] = "limit"
        self._emit(NodeEvent("node_failed", run.id, node.id, node.type, error=error,
                             duration_ms=(time.time() - started) * 1000))
        return await self._checkpoint(run, node, span.end(error=error), None, None, error=error, started=started)

    async def _guarded(self, run: _ActiveRun, node: Any, env: dict[str, Any], span: Span,
                       remaining: float) -> StepOutcome:
        """Execute an effectful step as a task this engine holds: a cancel of the run cancels it, and
        so does the end of the run's ``limits.max_seconds`` (then :class:`_OverTime`)."""
        task = asyncio.ensure_future(self._execute(run, node, env, span))
        self._inflight[run.id] = task
        done: set = set()
        try:
            done, _ = await asyncio.wait({task}, timeout=max(remaining, 0.001))
        finally:
            self._inflight.pop(run.id, None)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=5)  # never wait on a step that ignores its cancel
        if not done:
            raise _OverTime
        if task.cancelled():
            raise _LostRun
        return task.result()

    def _ended_elsewhere(self, run: _ActiveRun) -> bool:
        """Whether the stored run is no longer this engine's to execute (cancelled, or taken over)."""
        rows = self.store.query("SELECT status, owner FROM workflow_runs WHERE id = ?", (run.id,))
        return not rows or rows[0]["status"] != "running" or rows[0]["owner"] != self.owner

    async def _execute(self, run: _ActiveRun, node: Any, env: dict[str, Any], span: Span) -> StepOutcome:
        if isinstance(node, AgentNode):
            from keel.workflows.agent import run_agent

            return await run_agent(self, run, node, env, span)
        if isinstance(node, McpNode):
            from keel.workflows.mcp_tools import run_mcp_node

            return await run_mcp_node(self, run, node, env, span)
        if isinstance(node, GuardrailsNode):
            from keel.workflows.guardrails import run_guardrails

            return await run_guardrails(self, run, node, env, span)
        if isinstance(node, FileSearchNode):
            from keel.workflows.file_search import run_file_search

            return await run_file_search(self, run, node, env, span)
        if isinstance(node, HumanApprovalNode):
            return self._approval(run, node, env)
        return run_simple_node(run.wf, node, run.ctx, env)

    def _approval(self, run: _ActiveRun, node: HumanApprovalNode, env: dict[str, Any]) -> StepOutcome:
        def message() -> str:
            try:
                return run.wf.templates[(node.id, "message")].render(env)
            except Exception as e:
                raise NodeFailure(f"cannot build the approval message: {e}", kind="cel") from None

        a = self.gate(run, node.id, "", message, node.timeout)
        if a.status == "pending":
            return StepOutcome(None, run.ctx["last"], wait=a)
        port = {"approved": "approved", "rejected": "rejected"}.get(a.status)
        if port is None:
            port = "timeout" if run.wf.target(node.id, "timeout") else "rejected"
        decision = {"decision": a.status, "approval_id": a.id, "by": a.decided_by, "comment": a.comment}
        return StepOutcome(port, {"output_text": a.status, "output_parsed": decision},
                           attributes={"keel.approval.id": a.id, "keel.approval.decision": a.status})

    def gate(self, run: _ActiveRun, node_id: str, key: str, message: Callable[[], str],
             timeout: float | None) -> ApprovalRecord:
        """The approval ``key`` of the run's current step, as it stands.

        The first call creates it and parks the run (status ``pending``: the caller returns a
        waiting :class:`StepOutcome`); once answered it comes back ``approved``, ``rejected`` or
        ``expired``. Human approval nodes and tool calls that need approval both wait here.
        """
        rows = self.store.query("SELECT * FROM workflow_approvals WHERE run_id = ? AND seq = ? AND key = ?",
                                (run.id, run.seq, key))
        if not rows:
            text = message()
            now = self.clock.now()
            approval = ApprovalRecord(uuid.uuid4().hex, run.id, run.seq, node_id, run.version.name, "pending",
                                      text, now, now + timeout if timeout else None, None, None, None, key)
            with self.store.transaction():
                self.store.execute(
                    "INSERT INTO workflow_approvals (id, run_id, seq, node_id, workflow, status, message,"
                    " created_at, expires_at, key) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                    (approval.id, run.id, run.seq, node_id, run.version.name, text, now, approval.expires_at,
                     key))
                self._park(run)
            return approval
        a = ApprovalRecord(**rows[0])
        if a.status == "pending":
            if a.expires_at is None or a.expires_at > self.clock.now():
                with self.store.transaction():
                    self._park(run)
                return a
            self.store.execute("UPDATE workflow_approvals SET status = 'expired', decided_at = ? WHERE id = ?"
                               " AND status = 'pending'", (self.clock.now(), a.id))
            a = dataclasses.replace(a, status="expired", decided_at=self.clock.now())
        return a

    def _park(self, run: _ActiveRun) -> None:
        """Store the run as waiting and let go of it (inside a transaction)."""
        changed = self.store.execute(
            "UPDATE workflow_runs SET status = 'waiting', owner = NULL, lease_until = NULL, updated_at = ?"
            " WHERE id = ? AND owner = ? AND seq = ?", (time.time(), run.id, self.owner, run.seq))
        if changed != 1:
            raise _LostRun

    async def _checkpoint(self, run: _ActiveRun, node: Any, span: Span, outcome: StepOutcome | None,
                          port: str | None, *, error: str | None, started: float,
                          output_json: str | None = None) -> RunResult | None:
        """Record one completed step; commit it now unless it and the next node are pure."""
        error = scrub(error) if error else error  # stored as the step's and the run's error
        ctx = run.ctx
        if outcome is not None:
            ctx = dict(ctx)
            ctx["elapsed"] = run.spent + (self.clock.now() - run.began)
            ctx["last"] = outcome.output
            ctx["nodes"] = {**ctx["nodes"], node.id: outcome.output}
            if outcome.state is not None:
                ctx["state"] = outcome.state
            if outcome.loops is not None:
                ctx["loops"] = outcome.loops
            if outcome.history is not None:
                ctx["history"] = outcome.history
        next_node = run.wf.target(node.id, port) if port else None
        if outcome is None:
            status, run_output = "failed", None
        elif isinstance(node, EndNode):
            status, run_output = "succeeded", outcome.run_output
        elif next_node is None:  # validation makes every required port lead somewhere
            status, run_output, error = "failed", None, f"no edge from {node.id!r} through port {port!r}"
        else:
            status, run_output = "running", None
        now = time.time()
        run.pending.append((
            (run.id, run.seq, node.id, node.type, port, next_node,
             output_json if output_json is not None else jsontext.dumps(outcome.output) if outcome else None,
             error, started, now),
            span_row(span)))
        run.seq += 1
        run.ctx = ctx
        run.status, run.output, run.error = status, run_output, error if status == "failed" else None
        finished = status != "running"
        if not finished:
            run.current = next_node  # type: ignore[assignment]
        # An Agent step may wait for the pure steps after it too: its tool results are committed
        # already, and a crash before the commit only re-asks the model its last question. So may
        # the steps before an Agent node that only asks its model, once the run's row is stored (a
        # crash re-executes them and asks the model again; no memo exists at a stored seq 0 then).
        if finished or len(run.pending) >= _MAX_PENDING or not (_is_pure(node) or isinstance(node, AgentNode)) \
                or not self._may_follow_uncommitted(run, run.wf.nodes[next_node]):
            # Concurrent runs' commits made during this turn of the loop share one transaction;
            # the run goes on once its rows are committed.
            await self.store.commit_group().commit(lambda: self._flush_rows(run))
            self._flushed(run)
        if not finished:
            return None
        self._emit(NodeEvent("run_finished", run.id, status=status, error=error))
        return RunResult(run.id, status, run_output, run.error, trace_id=run.trace_id)  # type: ignore[arg-type]

    @staticmethod
    def _may_follow_uncommitted(run: _ActiveRun, node: Any) -> bool:
        """Whether ``node`` may execute while the steps before it are not committed yet."""
        return _is_pure(node) or (run.new is None and _model_only(node))

    def _flush(self, run: _ActiveRun) -> None:
        """Commit the run's position, variables, and pending step and span rows, in one transaction."""
        with self.store.transaction():
            self._flush_rows(run)
        self._flushed(run)

    def _flushed(self, run: _ActiveRun) -> None:
        run.new = None
        run.pending.clear()
        run.deferred.clear()
        run.committed_seq = run.seq
        run.checked = True  # the commit's compare-and-set (or the run's insert) holds

    def queue_rows(self, run: _ActiveRun) -> None:
        """Write a run :meth:`create` made with ``_defer`` for a worker to execute: its row with no owner
        and its root span, in the caller's transaction, which queues it too (``RunQueue.add``). On
        PostgreSQL both go into that transaction's one pipeline (``keel serve --no-execute``: a run
        queued costs no round trip of its own). May run twice (a group commit's redo)."""
        (rid, name, number, version_id, input_json, trace_id, created, key_id, end_user), root = run.new
        now = time.time()
        later(self.store, _INSERT_RUN, (rid, name, number, version_id, input_json, trace_id, created, run.seq,
                                        run.current, jsontext.dumps(run.ctx), "running", None, None, now, None,
                                        None, None, key_id, end_user))
        later(self.store, INSERT_SQL, root)

    def _flush_rows(self, run: _ActiveRun) -> None:
        """Write the run's position, variables, and pending step and span rows (inside a transaction)."""
        finished = run.status != "running"
        now = time.time()
        fields = (None if finished else run.current, jsontext.dumps(run.ctx), run.status,
                  jsontext.dumps(run.output) if finished else None, run.error, now, now + LEASE_SECONDS,
                  now if finished else None, None if finished else self.owner)
        if run.new is not None:
            (rid, name, number, version_id, input_json, trace_id, created, key_id, end_user), root = run.new
            self.store.execute(_INSERT_RUN, (rid, name, number, version_id, input_json, trace_id, created, run.seq,
                                             *fields, key_id, end_user))
            self.store.execute(INSERT_SQL, root)
        else:
            # The compare-and-set: on PostgreSQL sent with the commit's other writes in one pipeline
            # and checked once it is answered (its failure fails the write, as raising here did).
            later(self.store,
                  "UPDATE workflow_runs SET seq = ?, current_node = ?, context = ?, status = ?, output = ?,"
                  " error = ?, updated_at = ?, lease_until = ?, finished_at = ?, owner = ?"
                  " WHERE id = ? AND owner = ? AND seq = ?",
                  (run.seq, *fields, run.id, self.owner, run.committed_seq), check=_one_row)
        # The rest changes rows no one else writes: deferred, on PostgreSQL one pipeline per commit.
        for sql, params in run.deferred:
            later(self.store, sql, params)
        if run.pending:
            later(self.store, "INSERT INTO workflow_steps (run_id, seq, node_id, node_type, port, next_node, output,"
                  " error, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [p[0] for p in run.pending],
                  many=True)
            later(self.store, INSERT_SQL, [p[1] for p in run.pending], many=True)
        if finished:
            later(self.store, "UPDATE trace_spans SET ended_at = ?, status = ? WHERE span_id = ?",
                  (now, "ok" if run.status == "succeeded" else "error", run.root_span))
            if self.on_final is not None:
                self.on_final(run.id)
