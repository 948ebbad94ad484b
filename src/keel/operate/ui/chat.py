"""Chat for the web UI: run a workflow (or answer its approval) and stream what happens as SSE.

Events, in order (``event:`` name, JSON ``data:``):

``run``       ``{"run_id"}`` — as soon as the run exists (retry by reading the run);
``node``      a :class:`~keel.workflows.NodeEvent` (node started/finished/failed, waiting);
``tool``      a tool call of the run: name, arguments, result, error;
``citation``  a retrieved passage (File search nodes): index, source, anchor, title, text;
``token``     ``{"text", "node_id", "provisional"}`` — a piece of an Agent node's answer as the
              model writes it (Agent nodes without an output schema); ``provisional`` is true
              when a later node (a Guardrails check, a Transform, an End expression) may still
              withdraw or change that text (:mod:`keel.workflows.answer`): the page shows it
              as a draft, "checking…", never as the answer; ``token_reset``: drop that node's
              pieces so far (a rejected attempt, a new one follows);
``delta``     ``{"text"}`` — the run's answer (its End output), once it is known; a client that
              showed ``token`` pieces replaces them with it;
``widget``    ``{"node_id", "widget", "data"}`` — an Agent node's answer as a ChatKit widget (its
              ``widget``, docs/widgets.md), in ChatKit's JSON form; ``delta`` is then left out when
              the answer is that same data;
``approval``  ``{"id", "message", "node_id"}`` — the run waits for a person;
``done``      ``{"run_id", "status", "output", "error"}`` — always the last event;
``error``     ``{"message", "hint"}`` — the run could not start or continue (then ``done``
              is not sent).

Comments (``: ping``) keep the connection alive while a node runs, so a client can tell a
slow model from a dead connection. A client that goes away does not stop the run: it
finishes in the server and can be read with ``GET /ui/api/runs/{id}``.

Node events and model tokens stream live; the final ``delta`` is the authoritative answer
(an End node may reshape what the agents wrote, a Guardrails check may withdraw it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

from keel.errors import KeelError
from keel.store import SQLiteStore
from keel.workflows import NodeEvent, RunResult, Runs, Spans
from keel.workflows.answer import answer_nodes

__all__ = ["answer_text", "stream_run"]

_PING_S = 5.0


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, ensure_ascii=False)}\n\n"


def answer_text(output: Any) -> str:
    """The text to show for a run's output: a string as is, ``{"answer": ...}`` or a one-field
    object by its value, anything else as JSON."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, dict):
        for key in ("answer", "output_text", "text", "content"):
            if isinstance(output.get(key), str):
                return output[key]
        if len(output) == 1 and isinstance(next(iter(output.values())), str):
            return next(iter(output.values()))
    return json.dumps(output, indent=2, ensure_ascii=False)


def _tools_and_citations(store: SQLiteStore, run_id: str) -> tuple[list[dict], list[dict]]:
    runs = Runs(store)
    run = runs.get(run_id)
    tools = []
    for span in Spans(store).for_trace(run.trace_id):
        if span.kind != "tool":
            continue
        a = span.attributes
        tools.append({"span_id": span.span_id, "name": a.get("gen_ai.tool.name"),
                      "arguments": a.get("keel.tool.arguments"), "result": a.get("keel.tool.result"),
                      "error": span.error, "duration_ms": span.duration_ms})
    citations = []
    for step in runs.steps(run_id):
        if step.node_type == "file_search" and isinstance(step.output, dict):
            for r in (step.output.get("output_parsed") or {}).get("results", []):
                citations.append({k: r.get(k) for k in ("index", "source", "anchor", "title", "text")})
    return tools, citations


def _widgets(store: SQLiteStore, run_id: str) -> list[dict]:
    """The widget outputs of ``run_id``'s steps (:func:`keel.workflows.widgets.run_widgets`), each with
    its node's whole ``output`` (an End node may pass that on as the answer)."""
    from keel.workflows.versions import Versions
    from keel.workflows.widgets import run_widgets

    runs = Runs(store)
    try:
        run = runs.get(run_id, prefix=False)
        key = (run.workflow, run.version)
        known = _WIDGET_SPECS.setdefault(store, {})
        if key not in known:  # published versions never change: read each once per store
            spec = Versions(store).get(run.workflow, run.version).spec
            if len(known) >= _FINAL_CACHE_MAX:
                known.pop(next(iter(known)))
            known[key] = spec if any(getattr(n, "widget", None) is not None for n in spec.nodes) else None
        spec = known[key]
    except Exception:  # a version that cannot be read: the answer's text still shows
        return []
    if spec is None:
        return []
    steps = runs.steps(run_id)
    found = run_widgets(spec, steps)
    for w in found:
        w["output"] = next((s.output for s in steps if s.node_id == w["node_id"]), None)
    return found


_FINAL_CACHE: dict[tuple[str, int], frozenset[str]] = {}
_FINAL_CACHE_MAX = 256
_WIDGET_SPECS: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], Any]] = weakref.WeakKeyDictionary()
"""store -> (workflow, version) -> its spec when a node has a widget, else None (bounded like _FINAL_CACHE)."""


def _final_nodes(store: SQLiteStore, run_id: str) -> frozenset[str]:
    """The Agent nodes of ``run_id``'s workflow version whose text is the run's answer on every
    path (nothing after them can withdraw it); empty when that cannot be told (all drafts then)."""
    try:
        run = Runs(store).get(run_id, prefix=False)
        key = (run.workflow, run.version)
        if key not in _FINAL_CACHE:
            from keel.workflows.validate import compile_workflow
            from keel.workflows.versions import Versions

            version = Versions(store).get(run.workflow, run.version)
            if len(_FINAL_CACHE) >= _FINAL_CACHE_MAX:
                _FINAL_CACHE.pop(next(iter(_FINAL_CACHE)))
            _FINAL_CACHE[key] = answer_nodes(compile_workflow(version.loaded(), models=version.models))
        return _FINAL_CACHE[key]
    except Exception:  # a draft is the safe reading
        return frozenset()


def _event(event: NodeEvent, final: frozenset[str] = frozenset()) -> str:
    """A node event as SSE: an Agent node's answer pieces are ``token`` / ``token_reset``."""
    if event.kind == "text_delta":
        return sse("token", {"text": event.text, "node_id": event.node_id, "provisional": event.node_id not in final})
    if event.kind == "text_restart":
        return sse("token_reset", {"node_id": event.node_id})
    return sse("node", asdict(event))


async def stream_run(store: SQLiteStore,
                     start: Callable[[Callable[[NodeEvent], None]], Awaitable[RunResult]],
                     *, run_id: str | None = None) -> AsyncIterator[str]:
    """SSE text for one run: ``start(on_event)`` runs (or continues) it in this process."""
    queue: asyncio.Queue[NodeEvent] = asyncio.Queue()
    task = asyncio.ensure_future(start(queue.put_nowait))
    announced = run_id
    final: frozenset[str] | None = None  # read on the run's first answer piece
    if run_id:
        yield sse("run", {"run_id": run_id})
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, task}, timeout=_PING_S, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                event = getter.result()
                if announced is None:
                    announced = event.run_id
                    yield sse("run", {"run_id": event.run_id})
                if final is None and event.kind == "text_delta":
                    final = await asyncio.to_thread(_final_nodes, store, event.run_id)
                yield _event(event, final or frozenset())
                continue
            getter.cancel()
            if task.done():
                break
            yield ": ping\n\n"
        while not queue.empty():
            event = queue.get_nowait()
            if final is None and event.kind == "text_delta":
                final = await asyncio.to_thread(_final_nodes, store, event.run_id)
            yield _event(event, final or frozenset())
        try:
            result = task.result()
        except KeelError as e:
            yield sse("error", {"message": e.message, "hint": e.hint})
            return
        except Exception as e:  # a bug, not the user's doing: say so without a traceback
            yield sse("error", {"message": f"the run stopped with an internal error ({type(e).__name__})",
                                "hint": "see the server's log; retry, or open the run's trace"})
            return
        if announced is None:
            yield sse("run", {"run_id": result.run_id})
        tools, citations = await asyncio.to_thread(_tools_and_citations, store, result.run_id)
        for t in tools:
            yield sse("tool", t)
        for c in citations:
            yield sse("citation", c)
        widgets = await asyncio.to_thread(_widgets, store, result.run_id) \
            if result.status in ("succeeded", "waiting") else []
        for w in widgets:
            yield sse("widget", {k: w[k] for k in ("node_id", "widget", "data")})
        text = answer_text(result.output)
        if text and not any(result.output in (w["data"], w["output"]) for w in widgets):
            yield sse("delta", {"text": text})
        if result.approval is not None:
            a = result.approval
            yield sse("approval", {"id": a.id, "message": a.message, "node_id": a.node_id})
        yield sse("done", {"run_id": result.run_id, "status": result.status, "output": result.output,
                           "error": result.error})
    finally:
        # The client went away (or we are done): the run goes on to its end in the server.
        if not task.done():
            task.add_done_callback(_swallow)


def _swallow(task: asyncio.Future) -> None:
    with contextlib.suppress(BaseException):
        task.result()
