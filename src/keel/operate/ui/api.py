"""The web UI's router: its pages, its static files and the JSON it reads, under ``/ui``.

``router()`` returns a FastAPI ``APIRouter``; ``keel serve`` includes it, and so can any
FastAPI app (``app.include_router(router())``). Everything is read from (and runs go
through) the store under ``KEEL_HOME``, the same one the server uses.

=========================================  ==================================================
``GET  /ui``                               the single-page app (``#/chat``, ``#/runs``, ...)
``GET  /ui/static/{path}``                 its scripts, styles and the vendored uPlot
``GET  /ui/api/workflows``                 published workflows and their versions
``POST /ui/api/chat``                      run a workflow on a conversation, as SSE (chat.py)
``POST /ui/api/approvals/{id}/{decision}`` approve or reject, the run continues, as SSE
``GET  /ui/api/runs``                      runs, newest first (workflow, status, since)
``GET  /ui/api/runs/{id}``                 a run with its steps, trace tree and model calls
``GET  /ui/api/evals``                     eval runs; ``/{id}`` summary; ``/{a}/compare/{b}``;
                                           ``/{id}/report`` the HTML report (``?baseline=ID``)
``GET  /ui/api/metrics``                   the service-health dashboard (metrics.py)
``*    /ui/api/canvas/...``                  the workflow canvas: drafts, validate, publish, diff,
                                           preview runs (canvas.py)
``GET  /ui/api/templates``                 the template gallery: every ``keel init`` template
                                           with its graph, models, evals and README (gallery.py)
``GET  /ui/api/connectors``                the connector registry; ``/{name}/tools`` reaches one
                                           (admin keys of every workflow; connectors.py)
=========================================  ==================================================

Errors answer ``{"error": {"type", "message", "hint", ...}}``, the server's shape.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from keel.errors import KeelError, UserError
from keel.operate.ui import metrics
from keel.operate.ui.chat import stream_run
from keel.store import ModelCalls, SQLiteStore, open_store
from keel.workflows import Runs, Spans, Versions, aapprove, arun
from keel.workflows.runs import scope_sql

__all__ = ["ChatMessage", "ChatRequest", "router"]

STATIC = Path(__file__).parent / "static"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ChatMessage(BaseModel):
    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=100_000)


class ChatRequest(BaseModel):
    workflow: str = Field(min_length=1, description="A published workflow's name.")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="A version; the latest when omitted.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=500,
                                        description="The conversation so far; the last one is the user's.")


class Decision(BaseModel):
    by: str | None = Field(default=None, max_length=200)
    """Ignored: the decision records the caller's key (``web UI`` without one)."""
    comment: str | None = Field(default=None, max_length=2000)


def _error(status: int, message: str, *, hint: str | None = None, field: str | None = None,
           type: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"type": type, "code": None, "message": message, "field": field,
                                   "param": field, "hint": hint}}, status_code=status)


def _user_error(e: KeelError) -> JSONResponse:
    not_found = "NotFound" in type(e).__name__ or e.message.startswith("no ")
    return _error(404 if not_found else 400, e.message, hint=e.hint,
                  type="not_found_error" if not_found else "invalid_request_error")


def _no_caller() -> None:
    return None


def _allow(caller: Any, workflow: str) -> None:
    """Raise (the server's 403) unless the caller's key is scoped to ``workflow``."""
    if hasattr(caller, "allow"):
        caller.allow(workflow)


def _sees(caller: Any, workflow: str) -> bool:
    return caller.may_see(workflow) if hasattr(caller, "may_see") else True


def _reads(caller: Any, run: Any) -> bool:
    """Whether the caller may read ``run`` (its key started it, or it is an admin key); no caller: yes."""
    return caller.may_read_run(run) if hasattr(caller, "may_read_run") else True


def _no_run(run_id: str) -> JSONResponse:
    return _error(404, f"no run with id {run_id!r}", type="not_found_error",
                  hint="list the runs you may read on the Runs page")


def _eval_workflows(spec: dict[str, Any]) -> list[str]:
    """The workflows an eval runs (its workflow targets), which decide who may read it."""
    return sorted({str(t.get("workflow", "")).partition("@")[0] for t in spec.get("targets") or []
                   if isinstance(t, dict) and t.get("type") == "workflow"})


def _reads_eval(caller: Any, store: SQLiteStore, eval_id: str) -> bool:
    """Whether the caller may read eval run ``eval_id``: an admin key of its workflows (``*`` for
    evals without a workflow target); no caller or open mode: yes. An unknown id: True (the
    route answers its own 404)."""
    if not hasattr(caller, "may_read_eval"):
        return True
    from keel.evals import get_run

    try:
        info = get_run(store, eval_id)
    except UserError:
        return True
    return caller.may_read_eval(_eval_workflows(info.spec))


def _no_eval(eval_id: str) -> JSONResponse:
    return _error(404, f"no eval run {eval_id!r}", type="not_found_error",
                  hint="evals are shown to admin keys of their workflows (keel keys create NAME --workflow W --admin)")


def _accountant(request: Request, caller: Any, store: SQLiteStore, *, fresh: bool) -> Callable[[Any, str], None]:
    """Under ``keel serve``: refuse (429) a key or user over its daily cap now, and return what
    records a finished run's tokens and cost against it, as the server's own runs do. Elsewhere
    (the UI alone, no budgets): nothing."""
    budgets = getattr(getattr(request.app.state, "keel", None), "budgets", None)
    if budgets is None or not hasattr(caller, "key"):
        return lambda result, workflow: None
    budgets.check(caller.key, caller.end_user)

    def account(result: Any, workflow: str) -> None:
        try:
            total = budgets.usage_of_trace(Runs(store).get(result.run_id).trace_id)
            if not fresh:  # a run continued after an approval: count only what is new
                before = budgets.recorded_for_run(result.run_id)
                total = type(total)(total.input_tokens - before.input_tokens,
                                    total.output_tokens - before.output_tokens, total.cost_usd - before.cost_usd)
            budgets.record(key=caller.key, end_user=caller.end_user, run_id=result.run_id, workflow=workflow,
                           usage=total)
        except Exception:  # accounting must not turn a finished run into an error
            logging.getLogger("keel.ui").warning("could not record the usage of run %s", result.run_id,
                                                 exc_info=True)

    return account


def _answerer(models: dict[str, str]) -> dict[str, str] | None:
    """``{"name": "extractive", "switch": ...}`` when a version's models include the extractive
    answerer (answers quote the sources, no model), else None."""
    from keel.models.extractive import switch_line

    if any(m.strip() == "extractive" or m.strip().startswith("extractive:") for m in models.values()):
        # The page's reader is not in a terminal in the project folder: name the folder the
        # server runs in when it holds the project (`keel up` serves from it).
        here = Path.cwd()
        project = str(here) if (here / "keel.toml").is_file() else None
        return {"name": "extractive", "switch": switch_line(project)}
    return None


def _default_workflow(visible: list[dict[str, Any]]) -> str | None:
    """The workflow the chat opens on: the project's (``[chatkit] workflow`` of the server
    folder's keel.toml, which ``keel up`` sets, or ``KEEL_CHATKIT_WORKFLOW``) when the caller
    sees it, else the most recently published one; never just the first by name, which may
    belong to another folder's project."""
    names = {w["name"] for w in visible}
    try:
        from keel.operate.server.chatkit_server import default_workflow

        project = default_workflow()
    except (ImportError, UserError):  # no ChatKit installed, or a broken [chatkit] table
        project = None
    if project in names:
        return project
    return max(visible, key=lambda w: w["published_at"])["name"] if visible else None


def router(*, store: Callable[[], SQLiteStore] | None = None, dependencies: Sequence[Any] = ()) -> APIRouter:
    """The UI's routes. ``store`` returns the store to use (default: the one under
    ``KEEL_HOME``, opened once); ``dependencies`` (e.g. the server's API-key check) apply to
    every ``/ui/api`` route, not to the page and its static files.

    When the first dependency returns a caller with ``allow(workflow)`` / ``may_see(workflow)``
    (``keel serve``'s :class:`~keel.operate.server.auth.Caller`), the UI keeps to the key's
    scope: chat, approvals and a run's trace need it, and lists show only what it may see."""
    get_store = store or functools.cache(open_store)
    r = APIRouter(tags=["ui"])
    api = APIRouter(prefix="/ui/api", dependencies=list(dependencies))
    auth = next((d.dependency for d in dependencies if getattr(d, "dependency", None)), _no_caller)
    caller_dep = Depends(auth)

    @r.get("/ui", include_in_schema=False)
    @r.get("/ui/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @r.get("/ui/static/{path:path}", include_in_schema=False)
    def static(path: str) -> Any:
        target = (STATIC / path).resolve()
        if not target.is_relative_to(STATIC.resolve()) or not target.is_file():
            return _error(404, f"no UI file {path!r}", type="not_found_error")
        return FileResponse(target, headers={"Cache-Control": "no-cache"})

    @api.get("/workflows")
    def workflows(caller: Any = caller_dep) -> dict[str, Any]:
        s = get_store()
        rows = s.query("SELECT name, version, published_at FROM workflow_versions ORDER BY name, version DESC")
        out: dict[str, dict[str, Any]] = {}
        for w in Versions(s).list():
            if _sees(caller, w["name"]):
                out[w["name"]] = {**w, "versions": []}
        for row in rows:
            if row["name"] in out:
                out[row["name"]]["versions"].append(row["version"])
        for name, w in out.items():  # issue 19: the chat says when the answers come from no model
            w["answerer"] = _answerer(Versions(s).get(name).models)
        return {"workflows": list(out.values()), "default": _default_workflow(list(out.values()))}

    @api.post("/chat")
    async def chat(body: ChatRequest, request: Request, caller: Any = caller_dep) -> Any:
        _allow(caller, body.workflow)
        s = get_store()
        request.state.workflow, request.state.version = body.workflow, body.version
        try:
            await asyncio.to_thread(Versions(s).get, body.workflow, body.version)
        except UserError as e:
            return _user_error(e)
        messages = [m.model_dump() for m in body.messages]
        settings = getattr(getattr(request.app.state, "keel", None), "settings", None)
        if settings is not None:  # under keel serve: a caller's system messages as [serve] says (400 if refused)
            from keel.operate.server.caller_roles import apply_caller_roles

            messages = apply_caller_roles(messages, [f"body.messages[{i}]" for i in range(len(messages))],
                                          settings.caller_system_messages)
        conversation = {"messages": messages}
        account = _accountant(request, caller, s, fresh=True)

        async def start(on_event: Callable) -> Any:
            result = await arun(body.workflow, conversation, version=body.version, store=s, on_event=on_event,
                                stream_text=True, key_id=getattr(getattr(caller, "key", None), "id", None),
                                end_user=getattr(caller, "end_user", None))
            account(result, body.workflow)
            request.state.run_id, request.state.run_status = result.run_id, result.status  # the access log's
            return result

        return StreamingResponse(stream_run(s, start), media_type="text/event-stream", headers=_SSE_HEADERS)

    @api.post("/approvals/{approval_id}/{decision}")
    async def answer(approval_id: str, decision: Literal["approve", "reject"], request: Request,
                     body: Decision | None = None, caller: Any = caller_dep) -> Any:
        s = get_store()
        a = Runs(s).approval(approval_id, prefix=False)  # the UI has the full id: no guessing by prefix
        if a is not None and hasattr(caller, "check_decide"):
            from keel.operate.server.auth import authorize_decision

            authorize_decision(caller, a, Runs(s), Versions(s))  # 404 unless visible, 403 unless an approver
        if a is not None:
            request.state.workflow, request.state.run_id = a.workflow, a.run_id
        if a is None:
            return _error(404, f"no approval {approval_id!r}", type="not_found_error",
                          hint="it may have been answered from elsewhere; reload the run")
        if a.status != "pending":
            return _error(409, f"approval {a.id} is already {a.status}", type="invalid_request_error",
                          hint="reload the run to see where it stands")
        body = body or Decision()
        account = _accountant(request, caller, s, fresh=False)

        async def start(on_event: Callable) -> Any:
            by = caller.identity("web UI") if hasattr(caller, "identity") else "web UI"  # never the body's
            result = await aapprove(a.id, approved=decision == "approve", by=by,
                                    comment=body.comment, store=s, on_event=on_event, stream_text=True)
            account(result, a.workflow)
            request.state.run_status = result.status  # the access log's
            return result

        return StreamingResponse(stream_run(s, start, run_id=a.run_id), media_type="text/event-stream",
                                 headers=_SSE_HEADERS)

    @api.get("/runs")
    def runs(workflow: str | None = None, status: str | None = None,
             since: float | None = Query(default=None, description="Seconds ago; runs created since then."),
             limit: int = Query(default=100, ge=1, le=1000), caller: Any = caller_dep) -> dict[str, Any]:
        sql = ("SELECT id, workflow, version, status, error, created_at, updated_at, finished_at, trace_id, "
               "key_id, end_user FROM workflow_runs WHERE 1 = 1")
        params: list[Any] = []
        for column, value in (("workflow", workflow), ("status", status)):
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        # The caller's runs only, in SQL: filtered after LIMIT, a scoped key's list came back short.
        scope, scope_params = scope_sql(**(caller.run_filter() if hasattr(caller, "run_filter") else {}))
        sql += scope
        params += scope_params
        if since:
            sql += " AND created_at >= ?"
            params.append(time.time() - since)
        rows = get_store().query(sql + " ORDER BY created_at DESC LIMIT ?", (*params, limit))
        return {"runs": [r for r in rows if _reads(caller, SimpleNamespace(**r))]}

    @api.get("/runs/{run_id}")
    def run(run_id: str, caller: Any = caller_dep) -> Any:
        s = get_store()
        try:
            record = Runs(s).get(run_id, prefix=False)
        except UserError as e:
            return _user_error(e)
        if not _reads(caller, record):
            return _no_run(run_id)
        spans = Spans(s).for_trace(record.trace_id)
        calls = ModelCalls(s).for_trace(record.trace_id)
        steps = Runs(s).steps(record.id)
        by_seq = {st.seq: st for st in steps}
        nodes = {sp.span_id: {**asdict(sp), "duration_ms": sp.duration_ms, "children": []} for sp in spans}
        for node in nodes.values():
            step = by_seq.get(node["attributes"].get("keel.step"))
            if node["kind"] == "node" and step is not None:
                before = by_seq.get(step.seq - 1)
                node["input"] = record.input if before is None else before.output
                node["output"], node["port"] = step.output, step.port
        roots = []
        for sp in spans:
            parent = nodes.get(sp.parent_id or "")
            (parent["children"] if parent else roots).append(nodes[sp.span_id])
        return {
            "run": asdict(record),
            "steps": [asdict(st) for st in steps],
            "approvals": [asdict(a) for a in Runs(s).approvals(status=None, run_id=record.id)],
            "trace": roots,
            "model_calls": [asdict(c) for c in calls],
            "totals": {
                "input_tokens": sum(c.input_tokens or 0 for c in calls),
                "output_tokens": sum(c.output_tokens or 0 for c in calls),
                "cost_usd": round(sum(c.cost_usd or 0.0 for c in calls), 6),
                "duration_ms": ((record.finished_at or time.time()) - record.created_at) * 1000,
            },
        }

    @api.get("/evals")
    def evals(limit: int = Query(default=100, ge=1, le=1000), caller: Any = caller_dep) -> dict[str, Any]:
        from keel.evals import list_runs

        rows = list_runs(get_store(), limit=limit)
        if hasattr(caller, "may_read_eval"):
            rows = [e for e in rows if caller.may_read_eval(_eval_workflows(e.spec))]
        return {"evals": [{"id": e.id, "name": e.name, "status": e.status, "created_at": e.created_at,
                           "finished_at": e.finished_at, "summary": e.summary} for e in rows]}

    @api.get("/evals/{eval_id}")
    def eval_summary(eval_id: str, caller: Any = caller_dep) -> Any:
        from keel.evals import summarize

        if not _reads_eval(caller, get_store(), eval_id):
            return _no_eval(eval_id)
        try:
            return summarize(get_store(), eval_id).model_dump()
        except UserError as e:
            return _user_error(e)

    @api.get("/evals/{run_a}/compare/{run_b}")
    def eval_compare(run_a: str, run_b: str, caller: Any = caller_dep) -> Any:
        from keel.evals import compare_runs

        for eval_id in (run_a, run_b):
            if not _reads_eval(caller, get_store(), eval_id):
                return _no_eval(eval_id)
        try:
            return compare_runs(get_store(), run_a, run_b).model_dump()
        except UserError as e:
            return _user_error(e)

    @api.get("/evals/{eval_id}/report", response_class=HTMLResponse)
    def eval_report(eval_id: str, baseline: str | None = None, caller: Any = caller_dep) -> Any:
        from keel.evals import compare_runs, summarize
        from keel.evals.html import render_html

        s = get_store()
        for one in (eval_id, baseline):
            if one is not None and not _reads_eval(caller, s, one):
                return _no_eval(one)
        try:
            summary = summarize(s, eval_id)
            comparison = compare_runs(s, baseline, summary.run_id) if baseline else None
        except UserError as e:
            return _user_error(e)
        return HTMLResponse(render_html(s, summary, comparison=comparison))

    @api.get("/metrics")
    def dashboard(range: str = Query(default="1h", pattern="^(" + "|".join(metrics.RANGES) + ")$"),
                  workflow: str | None = None, model: str | None = None,
                  slo_target: float = Query(default=0.99, gt=0, lt=1),
                  slo_window: str | None = Query(default=None, pattern="^(" + "|".join(metrics.RANGES) + ")$"),
                  slo_latency_ms: float | None = Query(default=None, gt=0), caller: Any = caller_dep) -> Any:
        if getattr(caller, "via_token", False):  # an end user's browser: not every caller's traffic
            return _error(403, "a client token acts for one end user; the service dashboard needs an API key",
                          type="permission_error", field="header.Authorization",
                          hint="open the dashboard with an API key of the workflows (keel keys create NAME "
                               "--workflow W); client tokens are for ChatKit and the chat")
        d = metrics.dashboard(get_store(), range_s=metrics.RANGES[range], workflow=workflow or None,
                              model=model or None, slo_target=slo_target, slo_latency_ms=slo_latency_ms,
                              slo_window_s=metrics.RANGES[slo_window] if slo_window else None,
                              visible=(lambda w: _sees(caller, w)) if hasattr(caller, "may_see") else None)
        return {**asdict(d), "range": range, "ranges": list(metrics.RANGES)}

    from keel.operate.ui import canvas

    api.include_router(canvas.router(get_store, caller_dep))  # /ui/api/canvas/... (canvas.py)
    from keel.operate.ui import gallery

    api.include_router(gallery.router(caller_dep))  # /ui/api/templates (gallery.py)
    from keel.operate.ui import connectors

    api.include_router(connectors.router(get_store, caller_dep))  # /ui/api/connectors (connectors.py)
    r.include_router(api)
    return r
