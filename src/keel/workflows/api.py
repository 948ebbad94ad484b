"""The Python API: validate, publish and run workflows, answer approvals.

>>> from keel import workflows
>>> workflows.validate("support.yaml")                 # raises SpecError listing every problem
>>> v = workflows.publish("support.yaml")              # immutable version 1, 2, ...
>>> result = workflows.run("support", "I want a refund")
>>> result.status, result.output
('waiting', None)
>>> workflows.approve(result.approval.id)              # later, in any process
RunResult(run_id=..., status='succeeded', output=...)

Every function takes an optional ``store`` (default: the store under ``KEEL_HOME``);
the async versions (``arun``, ``aapprove``...) are for code already in an event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keel.store import SQLiteStore, open_store
from keel.workflows.clock import Clock
from keel.workflows.engine import Engine, NodeEvent
from keel.workflows.loader import LoadedSpec, load_spec, parse_spec
from keel.workflows.runs import ApprovalRecord, RunResult, Runs
from keel.workflows.spec import WorkflowSpec
from keel.workflows.validate import CompiledWorkflow, compile_workflow
from keel.workflows.versions import Versions, WorkflowVersion

__all__ = [
    "aapprove", "approvals", "approve", "arecover", "areject", "arun", "diff", "list_workflows", "load",
    "publish", "recover", "reject", "run", "validate",
]

ToolMap = dict[str, Callable[..., Any]]


def _store(store: SQLiteStore | None) -> SQLiteStore:
    return store if store is not None else open_store()


def load(spec: str | Path | LoadedSpec | WorkflowSpec) -> LoadedSpec:
    """A spec from a file path, from YAML/JSON text (anything containing a newline), from a
    :class:`WorkflowSpec` built in Python, or as given."""
    if isinstance(spec, LoadedSpec):
        return spec
    if isinstance(spec, WorkflowSpec):
        import yaml

        from keel.workflows.spec import compact

        return parse_spec(yaml.safe_dump(compact(spec), sort_keys=False, allow_unicode=True), file=f"<python:{spec.name}>")
    if isinstance(spec, str) and "\n" in spec:
        return parse_spec(spec)
    return load_spec(spec)


def validate(spec: str | Path | LoadedSpec | WorkflowSpec, *, tools: ToolMap | None = None) -> CompiledWorkflow:
    """Check a spec completely; raise :class:`SpecError` listing every problem."""
    return compile_workflow(load(spec), tools=tools)


def publish(spec: str | Path | LoadedSpec | WorkflowSpec, *, tools: ToolMap | None = None,
            store: SQLiteStore | None = None) -> WorkflowVersion:
    """Validate and publish; an unchanged spec returns the latest version instead of a new one."""
    loaded = load(spec)
    compile_workflow(loaded, tools=tools)
    return Versions(_store(store)).publish(loaded)[0]


def list_workflows(*, store: SQLiteStore | None = None) -> list[dict[str, Any]]:
    return Versions(_store(store)).list()


def diff(name: str, a: int, b: int, *, store: SQLiteStore | None = None) -> str:
    return Versions(_store(store)).diff(name, a, b)


def _version(workflow: str | Path | LoadedSpec | WorkflowSpec, version: int | None, tools: ToolMap | None,
             store: SQLiteStore) -> WorkflowVersion:
    """A published version by name, or (for a spec file or object) the spec published first."""
    if isinstance(workflow, LoadedSpec | WorkflowSpec):
        return publish(workflow, tools=tools, store=store)
    p = Path(workflow)
    if version is None and (p.suffix in (".yaml", ".yml", ".json") or p.is_file()):
        return publish(p, tools=tools, store=store)
    return Versions(store).get(str(workflow), version)


async def arun(workflow: str | Path | LoadedSpec | WorkflowSpec, input: Any = "", *, version: int | None = None, tools: ToolMap | None = None,
               store: SQLiteStore | None = None, clock: Clock | None = None,
               on_event: Callable[[NodeEvent], None] | None = None, stream_text: bool = False,
               key_id: str | None = None, end_user: str | None = None) -> RunResult:
    """Run ``workflow`` (a published name, a spec file, or a spec object, published first)
    until it finishes or waits. With ``stream_text``, Agent nodes' answers also reach
    ``on_event`` piece by piece as ``text_delta`` events. ``key_id`` / ``end_user``: the
    ``keel serve`` API key and end user the run is for (who may read it, see docs/security.md)."""
    store = _store(store)
    engine = Engine(store, tools=tools, clock=clock, on_event=on_event, stream_text=stream_text)
    try:
        return await engine.start(_version(workflow, version, tools, store), input, key_id=key_id,
                                  end_user=end_user)
    finally:
        await engine.aclose()


def run(workflow: str | Path | LoadedSpec | WorkflowSpec, input: Any = "", **kwargs: Any) -> RunResult:
    """Blocking :func:`arun`."""
    return asyncio.run(arun(workflow, input, **kwargs))


def approvals(*, status: str | None = "pending", store: SQLiteStore | None = None) -> list[ApprovalRecord]:
    return Runs(_store(store)).approvals(status=status)


async def aapprove(approval_id: str, *, by: str | None = None, comment: str | None = None,
                   approved: bool = True, tools: ToolMap | None = None, store: SQLiteStore | None = None,
                   clock: Clock | None = None, on_event: Callable[[NodeEvent], None] | None = None,
                   stream_text: bool = False) -> RunResult:
    """Approve (or with ``approved=False`` reject) and continue the run in this process
    (``stream_text``: as in :func:`arun`)."""
    engine = Engine(_store(store), tools=tools, clock=clock, on_event=on_event, stream_text=stream_text)
    try:
        return await engine.answer(approval_id, approved=approved, by=by, comment=comment)
    finally:
        await engine.aclose()


async def areject(approval_id: str, **kwargs: Any) -> RunResult:
    return await aapprove(approval_id, approved=False, **kwargs)


def approve(approval_id: str, **kwargs: Any) -> RunResult:
    return asyncio.run(aapprove(approval_id, **kwargs))


def reject(approval_id: str, **kwargs: Any) -> RunResult:
    return asyncio.run(areject(approval_id, **kwargs))


async def arecover(*, tools: ToolMap | None = None, store: SQLiteStore | None = None, clock: Clock | None = None,
                   on_event: Callable[[NodeEvent], None] | None = None, concurrency: int = 16) -> list[RunResult]:
    """Resume runs left behind by dead processes, and approvals that timed out."""
    engine = Engine(_store(store), tools=tools, clock=clock, on_event=on_event)
    try:
        return await engine.recover(concurrency=concurrency)
    finally:
        await engine.aclose()


def recover(**kwargs: Any) -> list[RunResult]:
    return asyncio.run(arecover(**kwargs))
