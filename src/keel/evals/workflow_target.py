"""A workflow as an eval target: run a pinned version per item, through the workflows API.

Each item's workflow run gets an id derived from (eval run, target, item), so an
eval resumed after a stop finds the run it had started: a finished run is reused
(no model or tool is called again) and an orphaned one is resumed from its last
checkpoint by the workflows engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from keel.errors import KeelError
from keel.evals.errors import EvalSpecError
from keel.evals.spec import WorkflowTarget
from keel.evals.templates import render, resolve
from keel.store import SQLiteStore

__all__ = ["WorkflowSampler", "render_input", "workflow_run_id"]

_WHOLE = re.compile(r"\s*\{\{\s*([^{}]*?)\s*\}\}\s*")


def render_input(template: Any, ns: Mapping[str, Any]) -> Any:
    """A target's ``input`` for one item: a whole ``{{ref}}`` keeps its value's type."""
    if isinstance(template, str):
        whole = _WHOLE.fullmatch(template)
        return resolve(whole.group(1), ns) if whole else render(template, ns)
    if isinstance(template, dict):
        return {k: render_input(v, ns) for k, v in template.items()}
    if isinstance(template, list):
        return [render_input(v, ns) for v in template]
    return template


def workflow_run_id(eval_run_id: str, target: str, idx: int) -> str:
    """The workflow run id for one item of one target of an eval run (stable across resumes)."""
    return hashlib.sha256(f"eval/{eval_run_id}/{target}/{idx}".encode()).hexdigest()[:32]


class WorkflowSampler:
    """Runs workflow targets for an eval run; one engine for the whole eval run."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self._engine: Any = None
        self._versions: dict[str, Any] = {}

    def check(self, target: WorkflowTarget) -> None:
        """Fail before the first item when the pinned version does not exist."""
        self.version(target)

    def version(self, target: WorkflowTarget) -> Any:
        from keel.workflows import Versions, WorkflowNotFoundError

        v = self._versions.get(target.workflow)
        if v is None:
            try:
                v = self._versions[target.workflow] = Versions(self.store).get(target.workflow_name, target.version)
            except WorkflowNotFoundError as e:
                raise EvalSpecError(f"target {target.label}: {e.message}", hint=e.hint) from None
        return v

    async def sample(self, target: WorkflowTarget, item: Mapping[str, Any], run_id: str) -> dict[str, Any]:
        """Run (or find, or resume) the item's workflow run; its output as a sample.

        A failed or waiting run raises :class:`EvalSpecError` naming the run (the item's error);
        with ``grade_failed`` a failed run is graded, its error as ``output_text``.
        """
        from keel.workflows import Engine, RunNotFoundError, RunResult, Runs

        if self._engine is None:
            self._engine = Engine(self.store)
        engine = self._engine
        try:
            record = Runs(self.store).get(run_id)
        except RunNotFoundError:
            record = None
        try:
            if record is None:
                value = render_input(target.input, {"item": item})
                result = await asyncio.wait_for(engine.start(self.version(target), value, run_id=run_id),
                                                target.timeout)
            elif record.status == "running":
                result = await asyncio.wait_for(engine.resume(run_id), target.timeout)
            else:
                result = RunResult(record.id, record.status, record.output, record.error,
                                   trace_id=record.trace_id)
        except TimeoutError:
            raise EvalSpecError(f"workflow {target.workflow} timed out after {target.timeout:g} s "
                                f"(run {run_id})") from None
        except KeelError as e:
            raise EvalSpecError(f"workflow {target.workflow}: {e.message} (run {run_id})") from None
        if result.status == "waiting":
            approval = f" for approval {result.approval.id}" if result.approval else ""
            raise EvalSpecError(f"workflow run {run_id} is waiting{approval}",
                                hint="answer it (`keel approvals`) and `keel eval resume`, or evaluate a "
                                     "version without a Human approval node")
        if result.status == "failed" and not target.grade_failed:
            raise EvalSpecError(f"workflow run {run_id} failed: {result.error}")
        output = result.error if result.status == "failed" else result.output
        if isinstance(output, str):
            text, parsed = output, None
            if text[:1] in "{[":
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
        elif output is None:
            text, parsed = "", None
        else:
            text, parsed = json.dumps(output, ensure_ascii=False, separators=(",", ":")), output
        return {"output_text": text, "output_json": parsed, "workflow_run_id": result.run_id,
                "workflow": target.workflow, "status": result.status}

    async def aclose(self) -> None:
        if self._engine is not None:
            await self._engine.aclose()
            self._engine = None
