"""The workflow canvas's API: read a workflow as YAML and as structured JSON, save drafts with
optimistic concurrency, validate, publish, diff, preview-run, and the schema, models and CEL
names an inspector needs. Mounted under ``/ui/api/canvas`` by the UI router
(:func:`keel.operate.ui.api.router`), so ``keel serve``'s API-key check applies.

**Who may call it.** Every route needs the ``admin`` role for the workflow it touches
(``keel keys create NAME --workflow W --admin``), or open mode (no keys, loopback only), or the
UI alone (``keel.operate.ui.app``). Lists show only workflows the key administers; another
workflow answers 403. A client token (ChatKit) has no roles: no canvas. Editing is powerful: a
draft that is previewed or published runs its Python tools and ``stdio:`` MCP commands on the
server (docs/security.md, "Workflow canvas").

**A document** (what ``GET /workflows/{name}`` answers, and the ``current`` of a conflict)::

    {"name", "origin": "draft" | "version",     # the draft when there is one, else the latest version
     "revision": int,                           # the draft's revision; 0 when there is no draft
     "version": int | null,                     # the latest published version
     "yaml": str,                               # the text, comments and all
     "spec": object | null,                     # the same as JSON (what the YAML says, no defaults
                                                #   added); null when the text is not a YAML mapping
     "layout": {"nodes": {ID: {x, y}}, "viewport": {x, y, zoom}?} | null,   # null: lay it out yourself
     "read_only": bool, "message": str | null,  # true when the canvas cannot draw it (a node type this
                                                #   Keel does not know, a broken layout section, text
                                                #   that is not a spec): show the YAML and the message
     "problems": [Problem],                     # what `keel workflows validate` says about it
     "updated_at": float | null, "updated_by": str | null, "draft_changed": bool | null}

``draft_changed``: whether the draft means something else than the latest version (None when
there is no draft or it does not parse). A **Problem** is ``{"severity": "error" | "warning",
"message", "hint", "node_id", "pointer", "path", "line"}``: ``pointer`` is a JSON pointer into
``spec`` (``/nodes/3/branches/0/condition``), ``path`` the CLI's form (``nodes[3].branches[0]
.condition``), ``line`` the line in ``yaml``.

=================================================  =================================================
``GET    /ui/api/canvas/workflows``                ``{"workflows": [{name, description, version,
                                                   has_draft, revision, draft_changed, updated_at}]}``
``GET    /ui/api/canvas/workflows/{name}``         a document (404 when there is neither draft
                                                   nor version)
``PUT    /ui/api/canvas/workflows/{name}/draft``   body ``{"base_revision": int, "spec": object}``
                                                   or ``{"base_revision", "yaml": str}``: the new
                                                   revision (below); 409 on a conflict
``DELETE /ui/api/canvas/workflows/{name}/draft``   ``?revision=N``: discard the draft (409 if not at N)
``POST   /ui/api/canvas/validate``                 ``{"spec"}`` or ``{"yaml"}`` -> ``{"valid", "problems"}``
``POST   /ui/api/canvas/workflows/{name}/publish`` ``{"revision"}`` -> ``{"version", "created", "message"}``
``GET    /ui/api/canvas/workflows/{name}/versions`` ``{"versions": [{version, published_at, digest,
                                                   source_file}]}``, newest first
``GET    /ui/api/canvas/workflows/{name}/diff``    ``?a=1&b=draft`` (a version number or ``draft``):
                                                   :func:`keel.workflows.spec_diff.diff_specs`
``POST   /ui/api/canvas/workflows/{name}/preview`` ``{"input": text or JSON, "revision": int}``: run
                                                   the draft unpublished, as SSE (below)
``GET    /ui/api/canvas/schema``                   the workflow JSON Schema (docs/workflow.schema.json)
``GET    /ui/api/canvas/models``                   ``{"default", "aliases": [{name, model}], "providers"}``
``GET    /ui/api/canvas/workflows/{name}/names``   ``?node=ID``: ``{"node", "names": [{name, type,
                                                   detail}]}``, the CEL names in scope there
=================================================  =================================================

**Saving.** ``base_revision`` is the revision the client's copy came from (0 when it opened a
version, i.e. there was no draft). A structured save applies ``spec`` onto the current text
(:mod:`keel.workflows.roundtrip`): only what changed is rewritten, comments and key order
elsewhere survive, and an unchanged spec gives the same bytes. The answer is the new document
plus ``"changed"`` and ``"comments_kept"``. A draft may be invalid (its ``problems`` say why);
only publish and preview refuse one. A save is refused, with the text or spec sent returned
under ``"rejected"`` so nothing is lost:

- 409 ``code: draft_conflict``: the draft is no longer at ``base_revision`` (another tab saved);
  the body also holds ``"current"``, the document as it is now. Merge and save again with
  ``current.revision``;
- 400: the spec names another workflow, or ``spec`` is not an object, or the text is too long.

**Publishing** validates the draft at ``revision`` (400 with ``problems`` if invalid, 409 if the
draft moved on) and publishes it through :meth:`keel.workflows.Versions.publish`, as
``keel workflows publish`` does. A draft that differs from the latest version only in its
``layout`` publishes nothing new (``created: false``): the layout is not part of a version's
meaning; it stays in the draft. The draft is kept after publishing.

**Preview** runs the draft at ``revision`` (or the latest version's text when there is no draft,
revision 0) without publishing it: a snapshot of it is stored as an unlisted preview version
(version 0 in the run's record) and run like any run: durable, in the Runs page, traced. The
answer streams the UI chat's events (:mod:`keel.operate.ui.chat`: ``run``, ``node``, ``token``,
``tool``, ``approval``, ``done``...), preceded by ``preview`` ``{"version_id", "revision"}``. An
``approval`` is answered with the UI's ``POST /ui/api/approvals/{id}/approve`` (or ``reject``),
which streams the rest of the run; the admin who started a preview may answer its approvals.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, JsonValue, model_validator

from keel.operate.ui.check_cache import CheckCache
from keel.store import SQLiteStore
from keel.workflows.drafts import Draft, DraftConflict, Drafts
from keel.workflows.errors import Problem, SpecError, WorkflowError
from keel.workflows.loader import parse_spec, read_document, spec_from_document
from keel.workflows.roundtrip import apply_data, fresh_yaml, to_json
from keel.workflows.spec import NODE_TYPES
from keel.workflows.versions import Versions, WorkflowVersion

__all__ = ["CanvasSave", "router"]

_NAME = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_MAX_YAML = 1_000_000


class _Body(BaseModel):
    spec: dict[str, JsonValue] | None = Field(default=None, description="The spec as structured JSON.")
    yaml: str | None = Field(default=None, max_length=_MAX_YAML, description="The spec as YAML (or JSON) text.")

    @model_validator(mode="after")
    def _one(self) -> _Body:
        if (self.spec is None) == (self.yaml is None):
            raise ValueError("send exactly one of `spec` (structured JSON) and `yaml` (text)")
        return self


class CanvasSave(_Body):
    base_revision: int = Field(ge=0, le=2**31 - 1, description="The draft revision the edit started from (0: none).")


class CanvasValidate(_Body):
    pass


class CanvasPublish(BaseModel):
    revision: int = Field(ge=1, le=2**31 - 1, description="The draft revision to publish.")


class CanvasPreview(BaseModel):
    input: JsonValue = Field(default="", description="The run's input: text, or JSON (e.g. {\"messages\": [...]}).")
    revision: int = Field(default=0, ge=0, le=2**31 - 1,
                          description="The draft revision to run (0: the latest version, when there is no draft).")


def _error(status: int, message: str, *, hint: str | None = None, field: str | None = None, code: str | None = None,
           type: str = "invalid_request_error", **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": type, "code": code, "message": message, "field": field, "param": field,
                                   "hint": hint}, **extra}, status_code=status)


_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def problem_json(p: Problem, *, severity: str = "error") -> dict[str, Any]:
    """A spec problem as the canvas shows it (see the module docstring)."""
    pointer = None
    if p.path:
        parts = [int(m.group(1)) if m.group(1) is not None else m.group(2) for m in _PATH_PART.finditer(p.path)]
        pointer = "".join("/" + str(x).replace("~", "~0").replace("/", "~1") for x in parts)
    return {"severity": severity, "message": p.message, "hint": p.hint, "node_id": p.node_id, "pointer": pointer,
            "path": p.path, "line": p.line}


def check_text(text: str, *, file: str) -> tuple[list[dict[str, Any]], bool]:
    """``(problems, parsed)``: what ``keel workflows validate`` says about ``text`` (warnings too)."""
    problems, parsed, _ = _check_and_read(text, file=file)
    return problems, parsed


CHECKS = CheckCache()
"""Checks remembered by text digest for 30 s: a reopened workflow is not checked again."""


def _check_and_read(text: str, *, file: str) -> tuple[list[dict[str, Any]], bool, Any]:
    """:func:`check_text` plus the document's plain data (a :class:`SpecError` when the text is
    not a YAML mapping), reading the text once: a canvas document needs both. Shared answers
    (:data:`CHECKS`): not to be changed."""
    return CHECKS.get(text, file, lambda: _check_and_read_now(text, file=file))


def _check_and_read_now(text: str, *, file: str) -> tuple[list[dict[str, Any]], bool, Any]:
    from keel.workflows.validate import compile_workflow

    try:
        data, where = read_document(text, file=file)
    except SpecError as e:
        return [problem_json(p) for p in e.problems], False, e
    plain = to_json(data)  # before pydantic sees ``data``
    try:
        loaded = spec_from_document(data, where, text)
    except SpecError as e:
        return [problem_json(p) for p in e.problems], False, plain
    try:
        compiled = compile_workflow(loaded)
    except SpecError as e:
        return [problem_json(p) for p in e.problems], True, plain
    return [problem_json(p, severity="warning") for p in compiled.warnings], True, plain


def _undrawable(data: Any, problems: list[dict[str, Any]]) -> str | None:
    """Why the canvas cannot draw ``data`` (None: it can, problems or not)."""
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
        return "`nodes` is not a list of nodes, so there is nothing to draw: fix the YAML"
    unknown = [n for n in nodes if n.get("type") not in NODE_TYPES]
    if unknown:
        n = unknown[0]
        return (f"node {n.get('id')!r} has type {n.get('type')!r}, which this version of Keel does not know "
                f"(written by a newer Keel?): the canvas shows it read-only; edit the YAML, or upgrade Keel")
    ids = [n.get("id") for n in nodes]
    if not all(isinstance(i, str) for i in ids) or len(set(ids)) != len(ids):
        return "every node needs its own string `id` before the canvas can draw the graph: fix the YAML"
    edges = data.get("edges", [])
    if not isinstance(edges, list) or not all(isinstance(e, dict) for e in edges):
        return "`edges` is not a list of edges: fix the YAML"
    broken = [p for p in problems if (p["path"] or "").startswith("layout") and p["severity"] == "error"
              and "names node" not in p["message"]]
    if broken:
        return f"the layout section is broken ({broken[0]['message']}): fix or delete `layout:` in the YAML"
    return None


def router(get_store: Callable[[], SQLiteStore], caller_dep: Any) -> APIRouter:
    """The canvas routes (prefix ``/canvas``), to include in the UI's ``/ui/api`` router."""
    api = APIRouter(prefix="/canvas", tags=["canvas"])

    def editor(caller: Any, name: str) -> None:
        """403 unless the caller has the admin role for ``name`` (open mode and the UI alone: yes)."""
        if hasattr(caller, "has_role") and not caller.has_role("admin", name):
            from keel.operate.server.errors import ApiError

            key = caller.key
            raise ApiError(403, f"API key {key.id} ({key.name}) may not edit workflow {name!r}: the canvas needs "
                                "the admin role for it", type="permission_error", code="not_an_admin",
                           hint=f"use a key with the admin role: keel keys create NAME --workflow {name} --admin")

    def who(caller: Any) -> str:
        return caller.identity("web UI") if hasattr(caller, "identity") else "web UI"

    def latest(s: SQLiteStore, name: str) -> WorkflowVersion | None:
        rows = s.query("SELECT id FROM workflow_versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
        return Versions(s).by_id(rows[0]["id"]) if rows else None

    def document(s: SQLiteStore, name: str, draft: Draft | None = None) -> dict[str, Any] | None:
        draft = draft if draft is not None else Drafts(s).get(name)
        version = latest(s, name)
        if draft is None and version is None:
            return None
        text = draft.source if draft is not None else version.source  # type: ignore[union-attr]
        file = f"draft:{name}@r{draft.revision}" if draft is not None else f"{name}@v{version.version}"  # type: ignore[union-attr]
        problems, _, data = _check_and_read(text, file=file)
        if isinstance(data, SpecError):
            data, message = None, f"the text is not a workflow spec: {data.problems[0].message}"
        else:
            message = _undrawable(data, problems)
        layout = data.get("layout") if isinstance(data, dict) and isinstance(data.get("layout"), dict) else None
        changed = None
        if draft is not None and draft.digest is not None:
            changed = version is None or draft.digest != version.digest
        return {"name": name, "origin": "draft" if draft is not None else "version",
                "revision": draft.revision if draft is not None else 0,
                "version": version.version if version is not None else None, "yaml": text, "spec": data,
                "layout": layout if message is None else None, "read_only": message is not None, "message": message,
                "problems": problems, "updated_at": draft.updated_at if draft is not None else version.published_at,  # type: ignore[union-attr]
                "updated_by": draft.updated_by if draft is not None else None, "draft_changed": changed}

    def conflict(s: SQLiteStore, name: str, e: DraftConflict, rejected: dict[str, Any]) -> JSONResponse:
        return _error(409, e.message, hint=e.hint, code="draft_conflict", field="body.base_revision",
                      current=document(s, name, e.current), rejected=rejected)

    @api.get("/workflows")
    def workflows(caller: Any = caller_dep) -> dict[str, Any]:
        s = get_store()
        versions = {w["name"]: w for w in Versions(s).list()}
        drafts = {d.name: d for d in Drafts(s).list()}
        out = []
        for name in sorted(versions.keys() | drafts.keys()):
            if hasattr(caller, "has_role") and not caller.has_role("admin", name):
                continue
            v, d = versions.get(name), drafts.get(name)
            changed = None
            if d is not None and d.digest is not None:
                changed = v is None or d.digest != latest(s, name).digest  # type: ignore[union-attr]
            out.append({"name": name, "description": v["description"] if v else "", "version": v["latest"] if v else None,
                        "has_draft": d is not None, "revision": d.revision if d else 0, "draft_changed": changed,
                        "updated_at": d.updated_at if d else v["published_at"]})  # type: ignore[index]
        return {"workflows": out}

    @api.get("/workflows/{name}")
    def get_workflow(name: str, caller: Any = caller_dep) -> Any:
        editor(caller, name)
        doc = document(get_store(), name)
        if doc is None:
            return _error(404, f"no workflow named {name!r} (no draft, no published version)", type="not_found_error",
                          hint="create it by saving a draft with base_revision 0")
        return doc

    @api.put("/workflows/{name}/draft")
    def save_draft(name: str, body: CanvasSave, caller: Any = caller_dep) -> Any:
        editor(caller, name)
        s = get_store()
        rejected = {"spec": body.spec} if body.spec is not None else {"yaml": body.yaml}
        if not re.match(_NAME, name):
            return _error(400, f"{name!r} is not a workflow name", field="path.name", rejected=rejected,
                          hint="lowercase letters, digits, `_`, `-` and `.`, starting with a letter or digit")
        drafts = Drafts(s)
        current = drafts.get(name)
        changed, kept = True, True
        if body.spec is not None:
            if body.spec.get("name") != name:
                return _error(400, f"the spec names the workflow {body.spec.get('name')!r}, not {name!r}",
                              field="body.spec.name", rejected=rejected,
                              hint=f"set name to {name!r} (to copy a workflow, save a draft under the new name)")
            if current is None:
                version = latest(s, name)
                base = version.source if version is not None else None
            else:
                base = current.source
            if base is None:
                text, kept = fresh_yaml(body.spec), False
            else:
                try:
                    result = apply_data(base, body.spec)
                    text, changed, kept = result.text, result.changed, result.comments_kept
                except SpecError:  # the old text was not a spec at all: nothing to keep
                    text, kept = fresh_yaml(body.spec), False
        else:
            text = body.yaml or ""
            try:
                data, _ = read_document(text)
            except SpecError:
                data = None
            if isinstance(data, dict) and data.get("name") != name:
                return _error(400, f"the YAML names the workflow {data.get('name')!r}, not {name!r}",
                              field="body.yaml", rejected=rejected,
                              hint=f"set `name: {name}` (to copy a workflow, save a draft under the new name)")
            changed = current is None or text != current.source
        try:
            draft = drafts.save(name, text, base_revision=body.base_revision, by=who(caller))
        except DraftConflict as e:
            return conflict(s, name, e, rejected)
        except WorkflowError as e:
            return _error(400, e.message, hint=e.hint, rejected=rejected)
        return {**document(s, name, draft), "changed": changed, "comments_kept": kept}  # type: ignore[dict-item]

    @api.delete("/workflows/{name}/draft")
    def delete_draft(name: str, revision: int = Query(ge=1, le=2**31 - 1), caller: Any = caller_dep) -> Any:
        editor(caller, name)
        s = get_store()
        draft = Drafts(s).get(name)
        if draft is None or draft.revision != revision:
            return conflict(s, name, DraftConflict(name, revision, draft), {})
        Drafts(s).delete(name)
        return {"deleted": True, "name": name, "revision": revision}

    @api.post("/validate")
    def validate(body: CanvasValidate, caller: Any = caller_dep) -> Any:
        text = body.yaml if body.yaml is not None else fresh_yaml(body.spec or {})
        try:
            data, _ = read_document(text)
            name = data.get("name")
        except SpecError:
            name = None
        # Checking a spec resolves its tools (imports code): only for the workflow's editors. A
        # spec without a valid name stops at parsing, before anything is resolved.
        if isinstance(name, str):
            editor(caller, name)
        problems, _ = check_text(text, file="<canvas>")
        return {"valid": not any(p["severity"] == "error" for p in problems), "problems": problems}

    @api.post("/workflows/{name}/publish")
    def publish(name: str, body: CanvasPublish, request: Request, caller: Any = caller_dep) -> Any:
        editor(caller, name)
        s = get_store()
        request.state.workflow = name
        try:
            version, created = Drafts(s).publish(name, revision=body.revision)
        except DraftConflict as e:
            return conflict(s, name, e, {"revision": body.revision})
        except SpecError as e:
            return _error(400, f"the draft of {name!r} at revision {body.revision} is not valid: {e.message}",
                          hint="fix the problems (they are placed on their nodes and fields) and publish again",
                          code="invalid_spec", problems=[problem_json(p) for p in e.problems])
        except WorkflowError as e:
            status = 404 if "NotFound" in type(e).__name__ else 400
            return _error(status, e.message, hint=e.hint, type="not_found_error" if status == 404 else
                          "invalid_request_error")
        message = (f"published {name} version {version.version}" if created else
                   f"version {version.version} already means the same (a change of layout alone is not a new "
                   "version): nothing published; the draft keeps its layout")
        return {"version": version.version, "created": created, "digest": version.digest, "message": message}

    @api.get("/workflows/{name}/versions")
    def versions(name: str, caller: Any = caller_dep) -> Any:
        editor(caller, name)
        rows = get_store().query("SELECT version, published_at, digest, source_file FROM workflow_versions "
                                 "WHERE name = ? ORDER BY version DESC", (name,))
        return {"name": name, "versions": rows}

    def side(s: SQLiteStore, name: str, which: str) -> Any:
        if which == "draft":
            draft = Drafts(s).get(name)
            if draft is None:
                raise WorkflowError(f"workflow {name!r} has no draft", hint="compare two versions instead")
            return Drafts(s).loaded(draft).spec
        version = Versions(s).get(name, int(which))
        try:  # from its text, which keeps the layout (the stored spec is the canonical one, without it)
            return version.loaded().spec
        except SpecError:
            return version.spec

    @api.get("/workflows/{name}/diff")
    def diff(name: str, a: str = Query(pattern=r"^(draft|[1-9]\d{0,8})$"),
             b: str = Query(pattern=r"^(draft|[1-9]\d{0,8})$"), caller: Any = caller_dep) -> Any:
        from keel.workflows.spec_diff import diff_specs

        editor(caller, name)
        s = get_store()
        try:
            spec_a, spec_b = side(s, name, a), side(s, name, b)
        except SpecError as e:
            return _error(400, f"the draft of {name!r} does not parse: {e.message}", hint="fix it first",
                          problems=[problem_json(p) for p in e.problems])
        except WorkflowError as e:
            status = 404 if "NotFound" in type(e).__name__ or "has no" in e.message else 400
            return _error(status, e.message, hint=e.hint, type="not_found_error" if status == 404 else
                          "invalid_request_error")
        return {"name": name, "a": a, "b": b, **diff_specs(spec_a, spec_b)}

    @api.get("/schema")
    def schema() -> Any:
        from keel.workflows.schema import spec_json_schema

        return spec_json_schema()

    @api.get("/models")
    def models(caller: Any = caller_dep) -> Any:
        from keel.config import get_settings
        from keel.models.registry import PREFIXES

        settings = get_settings()
        return {"default": settings.default_model,
                "aliases": [{"name": k, "model": v} for k, v in sorted(settings.models.items())],
                "providers": list(PREFIXES)}

    @api.get("/workflows/{name}/names")
    def names(name: str, node: str = Query(min_length=1, max_length=64), caller: Any = caller_dep) -> Any:
        from keel.workflows.scope import names_in_scope

        editor(caller, name)
        s = get_store()
        # The text alone (the draft, else the latest version): names need no check of the whole spec.
        draft = Drafts(s).get(name)
        version = latest(s, name) if draft is None else None
        if draft is None and version is None:
            return _error(404, f"no workflow named {name!r}", type="not_found_error", hint="save a draft first")
        doc = {"yaml": draft.source if draft is not None else version.source,  # type: ignore[union-attr]
               "origin": "draft" if draft is not None else "version"}
        try:
            spec = parse_spec(doc["yaml"]).spec
            return {"node": node, "names": names_in_scope(spec, node)}
        except SpecError as e:
            return _error(400, f"the {doc['origin']} of {name!r} does not parse: {e.message}", hint=e.hint,
                          problems=[problem_json(p) for p in e.problems])
        except KeyError:
            return _error(404, f"workflow {name!r} has no node {node!r}", field="query.node", type="not_found_error",
                          hint="pass the id of one of its nodes")

    @api.post("/workflows/{name}/preview")
    async def preview(name: str, body: CanvasPreview, request: Request, caller: Any = caller_dep) -> Any:
        editor(caller, name)
        s = get_store()
        request.state.workflow = name
        draft = await asyncio.to_thread(Drafts(s).get, name)
        if body.revision == 0 and draft is None:
            version = await asyncio.to_thread(latest, s, name)
            if version is None:
                return _error(404, f"no workflow named {name!r}", type="not_found_error", hint="save a draft first")
            source = version.source
        elif draft is None or draft.revision != body.revision:
            return conflict(s, name, DraftConflict(name, body.revision, draft), {"revision": body.revision})
        else:
            source = draft.source
        try:
            snapshot = await asyncio.to_thread(Drafts(s).preview, name, source, revision=body.revision)
        except SpecError as e:
            return _error(400, f"the draft of {name!r} is not valid: {e.message}", code="invalid_spec",
                          hint="fix the problems (they are placed on their nodes and fields) and run it again",
                          problems=[problem_json(p) for p in e.problems])
        except WorkflowError as e:
            return _error(400, e.message, hint=e.hint)
        from keel.operate.ui.api import _accountant
        from keel.operate.ui.chat import sse, stream_run
        from keel.workflows.engine import Engine

        account = _accountant(request, caller, s, fresh=True)

        async def start(on_event: Callable) -> Any:
            engine = Engine(s, on_event=on_event, stream_text=True)
            try:
                result = await engine.start(snapshot, body.input, key_id=getattr(getattr(caller, "key", None), "id", None),
                                            end_user=getattr(caller, "end_user", None))
            finally:
                await engine.aclose()
            account(result, name)
            return result

        async def events() -> AsyncIterator[str]:
            yield sse("preview", {"version_id": snapshot.id, "revision": body.revision})
            async for chunk in stream_run(s, start):
                yield chunk

        return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)

    return api
