"""The workflows API: list workflows and versions, start runs (sync or async), read runs
and traces, stream a run's events (Server-Sent Events), answer approvals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from keel.operate.server.auth import Caller, authorize_decision
from keel.operate.server.auth import caller as caller_dependency
from keel.operate.server.caller_roles import run_input_with_caller_roles
from keel.operate.server.errors import ApiError, ErrorBody
from keel.operate.server.idempotency import fingerprint, key_from_headers
from keel.operate.server.schemas import (
    ApprovalAnswer,
    ApprovalOut,
    CancelRequest,
    ListOut,
    RunOut,
    RunRequest,
    SpanOut,
    TraceOut,
    UsageOut,
    VersionOut,
    WorkflowDetail,
    WorkflowOut,
)
from keel.textcheck import scrub
from keel.workflows import RunNotFoundError, RunRecord, Spans
from keel.workflows.errors import InputFieldError, RunFinishedError

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (400, "Bad request"), (401, "Missing or bad API key"), (403, "Key not scoped to this workflow, or not an approver"),
        (404, "Not found"), (413, "Body too large"), (422, "Invalid field"), (429, "Daily cap reached"))}

router = APIRouter(prefix="/v1", tags=["workflows"], responses=_ERRORS)

WorkflowName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$", description="A published workflow's name")]
RunId = Annotated[str, Path(min_length=4, max_length=64, pattern=r"^[0-9a-f]+$",
                            description="A run id (a unique prefix is enough)")]
ApprovalId = Annotated[str, Path(min_length=4, max_length=64, pattern=r"^[0-9a-f]+$",
                                 description="An approval id, in full")]
FullRunId = Annotated[str, Path(min_length=4, max_length=64, pattern=r"^[0-9a-f]+$",
                                description="A run id, in full")]
CallerDep = Annotated[Caller, Depends(caller_dependency)]


def _services(request: Request) -> Any:
    return request.app.state.keel


def _approval(a: Any) -> ApprovalOut:
    d = asdict(a)
    return ApprovalOut(**{k: d[k] for k in ApprovalOut.model_fields})


def run_out(services: Any, rec: RunRecord, *, with_usage: bool = True) -> RunOut:
    approval = None
    links = {"self": f"/v1/runs/{rec.id}", "events": f"/v1/runs/{rec.id}/events",
             "trace": f"/v1/runs/{rec.id}/trace"}
    if rec.status == "waiting":
        pending = services.runner.runs.approvals(status="pending", run_id=rec.id)
        if pending:
            approval = _approval(pending[-1])
            links["approve"] = f"/v1/approvals/{approval.id}/approve"
            links["reject"] = f"/v1/approvals/{approval.id}/reject"
    usage = None
    if with_usage:
        u = services.budgets.usage_of_trace(rec.trace_id)
        usage = UsageOut(input_tokens=u.input_tokens, output_tokens=u.output_tokens, total_tokens=u.total_tokens,
                         cost_usd=u.cost_usd)
    # scrub: a row stored before inputs were checked may hold a lone surrogate, which JSON cannot carry.
    return RunOut(id=rec.id, workflow=rec.workflow, version=rec.version, status=rec.status, input=scrub(rec.input),
                  output=scrub(rec.output), error=scrub(rec.error), trace_id=rec.trace_id, created_at=rec.created_at,
                  finished_at=rec.finished_at, approval=approval, usage=usage, links=links)


def _no_run(run_id: str) -> ApiError:
    return ApiError(404, f"no run with id {run_id!r}", type="not_found_error", field="path.run_id",
                    hint="list the runs you may read with GET /v1/runs")


def _record(services: Any, caller: Caller, run_id: str, *, prefix: bool = True) -> RunRecord | None:
    """The stored run (None while a run started here has not reached the store yet); 404 also
    for a run the caller may not read (:meth:`Caller.may_read_run`), so ids do not leak.
    ``prefix=False`` (routes that change state): the full id only."""
    try:
        rec = services.runner.runs.get(run_id, prefix=prefix)
    except RunNotFoundError:
        meta = services.runner.hub.meta(run_id)
        if meta is None or not services.runner.hub.in_flight(run_id):
            raise _no_run(run_id) from None
        key_id, end_user = services.runner.hub.owner(run_id)
        if not caller.may_read_run(SimpleNamespace(workflow=meta[0], key_id=key_id, end_user=end_user)):
            raise _no_run(run_id) from None
        return None
    if not caller.may_read_run(rec):
        raise _no_run(run_id)
    return rec


def _running(services: Any, run_id: str) -> RunOut:
    workflow, version = services.runner.hub.meta(run_id)
    return RunOut(id=run_id, workflow=workflow, version=version, status="running",
                  links={"self": f"/v1/runs/{run_id}", "events": f"/v1/runs/{run_id}/events"})


@router.get("/workflows", response_model=ListOut, summary="List published workflows")
def list_workflows(request: Request, caller: CallerDep) -> ListOut:
    rows = [WorkflowOut(**r) for r in _services(request).runner.versions.list() if caller.may_see(r["name"])]
    return ListOut(data=rows)


@router.get("/workflows/{name}", response_model=WorkflowDetail, summary="A workflow and its versions")
def get_workflow(request: Request, name: WorkflowName, caller: CallerDep) -> WorkflowDetail:
    services = _services(request)
    caller.allow(name)
    latest = services.runner.version(name, None)
    # Versions lists only the latest of each workflow; the history is one read of its table.
    rows = services.store.query(
        "SELECT version, digest, published_at FROM workflow_versions WHERE name = ? ORDER BY version", (name,))
    return WorkflowDetail(name=name, description=latest.spec.description or "",
                          versions=[VersionOut(**r) for r in rows])


@router.post("/workflows/{name}/runs", response_model=RunOut, summary="Start a run (sync or async)",
             responses={202: {"model": RunOut, "description": "Started; poll `links.self` or stream `links.events`"}})
async def start_run(request: Request, name: WorkflowName, body: RunRequest, caller: CallerDep) -> Any:
    services = _services(request)
    caller.allow(name)
    caller = caller.with_user(body.user)
    services.budgets.check(caller.key, caller.end_user)
    version = services.runner.version(name, body.version)
    request.state.workflow, request.state.version = version.name, version.version
    value = run_input_with_caller_roles(body.input, services.settings.caller_system_messages)
    reserved = None
    key = key_from_headers(request.headers)
    if key is not None:  # a retry of this request, on any server, returns the run it started
        scope = caller.key.id if caller.key else ""
        run_id, fresh = services.idempotency.reserve(
            scope, key, fingerprint(version.name, body.version, body.input, caller.end_user))
        if not fresh:
            request.state.run_id = run_id
            return await _replayed(services, run_id, version, body.wait)
        reserved = (scope, key, run_id)
    try:
        started = await services.runner.start(version, value, key=caller.key, end_user=caller.end_user,
                                              provider_key=caller.provider_key,
                                              run_id=reserved[2] if reserved else None)
    except InputFieldError as e:  # e.g. forged tool history: name the field
        if reserved:
            services.idempotency.release(*reserved)
        raise ApiError(400, e.message, field=f"body.{e.field}", hint=e.hint) from None
    except Exception:  # refused before its run started: the key goes back (not on cancellation,
        if reserved:     # where the run may already exist: a key without its run is taken over later)
            services.idempotency.release(*reserved)
        raise
    request.state.run_id = started.run_id
    result = await services.runner.wait(started, services.settings.run_timeout) if body.wait else None
    if result is None:
        try:
            out = run_out(services, services.runner.runs.get(started.run_id), with_usage=False)
        except RunNotFoundError:
            out = _running(services, started.run_id)
        return JSONResponse(out.model_dump(mode="json"), status_code=202,
                            headers={"Location": f"/v1/runs/{started.run_id}"})
    request.state.run_status = result.status  # the access log's: a failed run is an error on the dashboard
    out = run_out(services, services.runner.runs.get(result.run_id))
    if out.usage is not None:
        request.state.input_tokens, request.state.output_tokens = out.usage.input_tokens, out.usage.output_tokens
    return out


async def _replayed(services: Any, run_id: str, version: Any, wait: bool) -> JSONResponse:
    """The answer to a retried request (same Idempotency-Key): the run the first one started, as it
    is now; with ``wait``, once it finishes or waits (or after ``run_timeout``: 202), like a first answer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (services.settings.run_timeout if wait else 0.0)
    headers = {"Idempotent-Replayed": "true", "Location": f"/v1/runs/{run_id}"}
    while True:
        try:
            rec = services.runner.runs.get(run_id, prefix=False)
        except RunNotFoundError:  # the first request is writing it right now
            rec = None
        settled = rec is not None and rec.status != "running"
        if settled or loop.time() >= deadline:
            break
        await asyncio.sleep(0.1)
    if rec is None:
        out = RunOut(id=run_id, workflow=version.name, version=version.version, status="running",
                     links={"self": f"/v1/runs/{run_id}", "events": f"/v1/runs/{run_id}/events"})
    else:
        out = run_out(services, rec, with_usage=settled)
    return JSONResponse(out.model_dump(mode="json"), status_code=200 if settled and wait else 202, headers=headers)


@router.get("/runs", response_model=ListOut, summary="Recent runs, newest first")
def list_runs(request: Request, caller: CallerDep,
              workflow: Annotated[str | None, Query(max_length=100)] = None,
              status: Annotated[str | None, Query(pattern="^(running|waiting|succeeded|failed|cancelled)$")] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50) -> ListOut:
    services = _services(request)
    if workflow is not None:
        caller.allow(workflow)
    rows = services.runner.runs.list(workflow=workflow, status=status, limit=limit, **caller.run_filter())
    return ListOut(data=[run_out(services, r, with_usage=False) for r in rows if caller.may_read_run(r)])


@router.get("/runs/{run_id}", response_model=RunOut, summary="A run: status, output, pending approval, usage")
def get_run(request: Request, run_id: RunId, caller: CallerDep) -> RunOut:
    services = _services(request)
    rec = _record(services, caller, run_id)
    return _running(services, run_id) if rec is None else run_out(services, rec)


@router.get("/runs/{run_id}/trace", response_model=TraceOut, summary="A run's trace: spans with GenAI attributes")
def get_trace(request: Request, run_id: RunId, caller: CallerDep) -> TraceOut:
    services = _services(request)
    rec = _record(services, caller, run_id)
    if rec is None:
        raise ApiError(404, f"run {run_id} has no trace yet", type="not_found_error", field="path.run_id",
                       hint="retry in a moment, or follow GET /v1/runs/{run_id}/events")
    spans = [SpanOut(span_id=s.span_id, parent_id=s.parent_id, name=s.name, kind=s.kind, started_at=s.started_at,
                     ended_at=s.ended_at, duration_ms=s.duration_ms, status=s.status, error=s.error,
                     attributes=s.attributes) for s in Spans(services.store).for_trace(rec.trace_id)]
    u = services.budgets.usage_of_trace(rec.trace_id)
    return TraceOut(run_id=rec.id, trace_id=rec.trace_id, spans=spans,
                    usage=UsageOut(input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                                   total_tokens=u.total_tokens, cost_usd=u.cost_usd))


def sse(kind: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


async def _replay(services: Any, rec: RunRecord) -> AsyncIterator[dict[str, Any]]:
    """Events of a run this server did not drive, rebuilt from its checkpointed steps."""
    seq, seen = 0, 0
    for _ in range(3600):  # a run driven elsewhere is polled for at most ~30 minutes
        for step in services.runner.runs.steps(rec.id)[seen:]:
            seen += 1
            doc = {"kind": "node_failed" if step.error else "node_finished", "run_id": rec.id,
                   "node_id": step.node_id, "node_type": step.node_type, "port": step.port,
                   "duration_ms": round((step.finished_at - step.started_at) * 1000, 3), "error": step.error,
                   "seq": seq, "at": step.finished_at}
            seq += 1
            yield {k: v for k, v in doc.items() if v is not None}
        rec = services.runner.runs.get(rec.id)
        if rec.status != "running":
            kind = "waiting" if rec.status == "waiting" else "run_finished"
            yield {"kind": kind, "run_id": rec.id, "status": rec.status, "seq": seq,
                   **({"error": rec.error} if rec.error else {})}
            return
        await asyncio.sleep(0.5)


@router.get("/runs/{run_id}/events", summary="Stream a run's events (Server-Sent Events)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: node_started|node_finished|node_failed|waiting|run_finished`, "
                                            "`data:` one JSON object; the stream ends when the run finishes or waits"}})
async def run_events(request: Request, run_id: RunId, caller: CallerDep) -> StreamingResponse:
    services = _services(request)
    rec = _record(services, caller, run_id)
    hub = services.runner.hub
    full_id = run_id if rec is None else rec.id
    if hub.known(full_id):
        source = hub.follow(full_id)
    else:  # driven by another process: its stored events (tokens included), else its checkpointed steps
        stored = services.runner.follow_stored(rec.id, rec.status)  # type: ignore[union-attr]
        source = stored if stored is not None else _replay(services, rec)  # type: ignore[arg-type]

    async def stream() -> AsyncIterator[bytes]:
        yield b": keel run events\n\n"
        it = source.__aiter__()
        while True:
            try:
                doc = await asyncio.wait_for(it.__anext__(), timeout=15)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield b": ping\n\n"  # keeps proxies from closing an idle stream
                continue
            yield sse(doc["kind"], doc, doc.get("seq"))

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/approvals", response_model=ListOut, summary="Approvals (pending by default), oldest first")
def list_approvals(request: Request, caller: CallerDep,
                   status: Annotated[str, Query(pattern="^(pending|approved|rejected|expired|cancelled|all)$")] = "pending"
                   ) -> ListOut:
    runs = _services(request).runner.runs
    rows = runs.approvals(status=None if status == "all" else status, **caller.approval_filter())
    return ListOut(data=[_approval(a) for a in rows if caller.may_see(a.workflow)])


async def _answer(request: Request, approval_id: str, body: ApprovalAnswer | None, caller: Caller,
                  approved: bool) -> RunOut:
    services = _services(request)
    body = body or ApprovalAnswer()
    # The full id only: ids start with their creation time, so an 8-digit prefix names "the
    # approval created this minute", not one approval (docs/security.md, "Ids are not patterns").
    approval = services.runner.runs.approval(approval_id, prefix=False)
    if approval is None:
        raise ApiError(404, f"no approval with id {approval_id!r}", type="not_found_error",
                       field="path.approval_id", hint="list pending approvals with GET /v1/approvals")
    authorize_decision(caller, approval, services.runner.runs, services.runner.versions)
    request.state.run_id = approval.run_id
    # Who decided comes from the credential; the body's `by` is ignored (docs/security.md).
    result = await services.runner.answer(approval.id, approved=approved, by=caller.identity("open mode (loopback)"),
                                          comment=body.comment, key=caller.key, end_user=caller.end_user)
    request.state.run_status = result.status  # how the run went on after the decision
    return run_out(services, services.runner.runs.get(result.run_id))


@router.post("/approvals/{approval_id}/approve", response_model=RunOut,
             summary="Approve, and continue the run until it finishes or waits again")
async def approve(request: Request, approval_id: ApprovalId, caller: CallerDep,
                  body: ApprovalAnswer | None = None) -> RunOut:
    return await _answer(request, approval_id, body, caller, True)


@router.post("/approvals/{approval_id}/reject", response_model=RunOut,
             summary="Reject, and continue the run along its 'rejected' edge")
async def reject(request: Request, approval_id: ApprovalId, caller: CallerDep,
                 body: ApprovalAnswer | None = None) -> RunOut:
    return await _answer(request, approval_id, body, caller, False)


@router.post("/runs/{run_id}/cancel", response_model=RunOut, summary="Cancel a running or waiting run",
             responses={409: {"model": ErrorBody, "description": "The run has finished already"}})
def cancel_run(request: Request, run_id: FullRunId, caller: CallerDep, body: CancelRequest | None = None) -> RunOut:
    """The run becomes `cancelled` at once (its pending approvals are closed); the process executing
    it stops at its next step boundary, cancelling a model or tool call it has in flight."""
    services = _services(request)
    rec = _record(services, caller, run_id, prefix=False)
    if rec is None:
        raise ApiError(409, f"run {run_id} is starting and not stored yet", field="path.run_id",
                       hint="retry in a moment")
    request.state.run_id = rec.id
    body = body or CancelRequest()
    try:
        # Who cancelled comes from the credential, as for approvals; the body's free-text `by` is ignored.
        services.runner.cancel(rec.id, by=caller.identity("open mode (loopback)"), reason=body.reason)
    except RunFinishedError as e:
        raise ApiError(409, e.message, field="path.run_id", hint=e.hint) from None
    return run_out(services, services.runner.runs.get(rec.id))
