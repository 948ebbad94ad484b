"""What prompt optimization changes: the instructions of one eval target.

- a **model target** (a prompt + model of the eval): its system (or developer) message; a
  prompt without one gets a system message, seeded empty;
- an **Agent node** of the eval's workflow target (``workflow: NAME@VERSION``): the node's
  ``instructions``. Each candidate runs as an unlisted preview of the workflow
  (:meth:`keel.workflows.Drafts.preview`) through the durable engine, with a run id derived
  from (optimization run, instructions, item), so a killed run resumes its workflow run.

:func:`resolve_target` raises :class:`UnknownTarget` naming what ``--target`` may be.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from typing import Any

from keel.errors import ModelBehaviorError
from keel.evals.datasets import DatasetRow
from keel.evals.errors import EvalSpecError
from keel.evals.spec import EvalSpec, ModelTarget, WorkflowTarget
from keel.evals.templates import render
from keel.evals.workflow_target import WorkflowSampler, render_input
from keel.optimize.errors import UnknownTarget
from keel.store import SQLiteStore

__all__ = ["ModelPrompt", "OptTarget", "WorkflowAgent", "resolve_target"]


MAX_TRACE_STEPS = 40
"""Steps of a workflow run shown to the reflection model."""


def _short(text: str | None, limit: int = 300) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + " [...]"


def _usage(u: Any) -> dict[str, int]:
    return {"input_tokens": int(u.input_tokens or 0), "output_tokens": int(u.output_tokens or 0)}


@dataclass
class ModelPrompt:
    """The system message of a prompt + model target."""

    target: ModelTarget
    kind: str = "model"
    _model: Any = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return self.target.label

    @property
    def model_string(self) -> str:
        return self.target.model

    def _index(self) -> int | None:
        msgs = self.target.messages() if self.target.messages_from is None else []
        return next((i for i, m in enumerate(msgs) if m.role in ("system", "developer")), None)

    @property
    def seed_instructions(self) -> str:
        i = self._index()
        return "" if i is None else self.target.messages()[i].content

    def messages(self, instructions: str, row: DatasetRow) -> list[Any]:
        from keel.evals.runner import _referenced_messages
        from keel.models import Message

        ns = {"item": row.item}
        system = Message(role="system", content=render(instructions, ns)) if instructions.strip() else None
        if self.target.messages_from is not None:
            rest = [m for m in _referenced_messages(self.target.messages_from, ns) if m.role not in ("system", "developer")]
            return ([system] if system else []) + rest
        msgs = self.target.messages()
        i = self._index()
        out = [Message(role=m.role, content=render(m.content, ns)) for j, m in enumerate(msgs) if j != i]
        return ([system] if system else []) + out

    def input_text(self, row: DatasetRow) -> str:
        return "\n".join(m.content for m in self.messages("", row))

    async def sample(self, instructions: str, row: DatasetRow, call_id: str) -> dict[str, Any]:
        from keel.models import ModelSettings, get_model

        if self._model is None:
            self._model = get_model(self.target.model)
        t = self.target
        settings = ModelSettings(temperature=t.temperature, top_p=t.top_p, max_tokens=t.max_tokens, seed=t.seed,
                                 timeout=t.timeout)
        try:
            response = await asyncio.wait_for(self._model.generate(
                self.messages(instructions, row), output_schema=t.output_schema, settings=settings).response(),
                t.timeout)
        except TimeoutError:
            return {"error": f"{t.model} timed out after {t.timeout:g} s", "usage": {}}
        except ModelBehaviorError as e:  # this row's answer broke its schema: graded 0, the run goes on
            return {"error": e.message, "usage": {}}
        parsed = response.parsed
        if parsed is None and response.text[:1] in "{[":
            try:
                parsed = json.loads(response.text)
            except ValueError:
                parsed = None
        return {"output_text": response.text, "output_json": parsed, "usage": _usage(response.usage)}

    def apply(self, spec_data: dict[str, Any], instructions: str) -> dict[str, Any]:
        """The eval file's data with this target's system message set to ``instructions``."""
        data = copy.deepcopy(spec_data)
        found = False
        for t in data.get("targets") or []:
            if t.get("type") == "model" and (t.get("name") or t.get("model")) == self.label:
                prompt = t.get("prompt") or []
                msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
                i = next((j for j, m in enumerate(msgs) if m.get("role") in ("system", "developer")), None)
                if i is None:
                    msgs.insert(0, {"role": "system", "content": instructions})
                else:
                    msgs[i] = {**msgs[i], "content": instructions}
                if t.get("messages_from"):
                    raise UnknownTarget(f"target {self.label!r} takes its messages from {t['messages_from']}: "
                                        "there is no prompt to write the instructions into",
                                        hint="copy the instructions from `keel optimize show` into the items")
                t["prompt"] = msgs
                found = True
        if not found:
            raise UnknownTarget(f"the eval file has no model target named {self.label!r} in its targets: list "
                                "(a matrix or an imported OpenAI/promptfoo definition)",
                                hint="copy the best instructions from `keel optimize show --json` into the eval "
                                     "by hand, or give the eval an explicit model target")
        return data

    async def aclose(self) -> None:
        if self._model is not None:
            await self._model.aclose()


class _PreviewSampler(WorkflowSampler):
    """Runs the workflow version set in ``current`` (a candidate's preview) whatever the target pins."""

    current: Any = None

    def version(self, target: WorkflowTarget) -> Any:
        return self.current


@dataclass
class WorkflowAgent:
    """The ``instructions`` of one Agent node of a pinned workflow version."""

    store: SQLiteStore
    target: WorkflowTarget
    node_id: str
    version: Any
    kind: str = "workflow"
    _sampler: _PreviewSampler | None = field(default=None, repr=False)
    _previews: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"{self.target.workflow}:{self.node_id}"

    @property
    def model_string(self) -> str:
        node = next(n for n in self.version.spec.nodes if n.id == self.node_id)
        return self.version.model_for(node.model)

    @property
    def seed_instructions(self) -> str:
        return next(n for n in self.version.spec.nodes if n.id == self.node_id).instructions

    def source_for(self, instructions: str) -> str:
        """The version's YAML with the node's instructions replaced (comments kept where possible)."""
        from keel.workflows.loader import read_document
        from keel.workflows.roundtrip import apply_data

        data, _ = read_document(self.version.source)
        data = copy.deepcopy(data)
        for node in data.get("nodes") or []:
            if isinstance(node, dict) and node.get("id") == self.node_id:
                node["instructions"] = instructions
        return apply_data(self.version.source, data).text

    def input_text(self, row: DatasetRow) -> str:
        value = render_input(self.target.input, {"item": row.item})
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    async def sample(self, instructions: str, row: DatasetRow, call_id: str) -> dict[str, Any]:
        from keel.workflows.drafts import Drafts

        if self._sampler is None:
            self._sampler = _PreviewSampler(self.store)
        preview = self._previews.get(instructions)
        if preview is None:
            preview = self._previews[instructions] = Drafts(self.store).preview(
                self.version.name, self.source_for(instructions), revision=0, aliases=dict(self.version.models))
        self._sampler.current = preview
        try:
            sample = await self._sampler.sample(self.target, row.item, call_id[:32])
        except EvalSpecError as e:
            return {"error": e.message, "usage": {}}
        return {**sample, "usage": self._usage(sample.get("workflow_run_id")),
                "trace_text": self._trace_text(sample.get("workflow_run_id"))}

    def _trace_text(self, run_id: str | None) -> str:
        """The run's steps, one line each, for the reflection model (the optimized node's tool calls
        and results included)."""
        from keel.errors import KeelError
        from keel.evals.traces import load_trace

        if not run_id:
            return ""
        try:
            trace = load_trace(self.store, run_id)
        except KeelError:
            return ""
        lines = []
        for step in trace.steps[:MAX_TRACE_STEPS]:
            if step.kind == "node" and step.node_id != self.node_id:
                lines.append(f"- node {step.label}: {_short(step.output_text)}" + (f" (error: {step.error})" if step.error else ""))
            elif step.kind == "tool":
                lines.append(f"- tool {step.tool}({_short(json.dumps(step.arguments, ensure_ascii=False))}) -> "
                             f"{_short(step.output_text)}" + (f" (error: {step.error})" if step.error else ""))
            elif step.kind == "model":
                lines.append(f"- {step.label}: {_short(step.output_text or json.dumps(step.output_json))}")
        return "\n".join(lines)

    def _usage(self, run_id: str | None) -> dict[str, int]:
        """Tokens the workflow run's model calls used (through its trace)."""
        from keel.workflows import RunNotFoundError, Runs

        try:
            trace_id = Runs(self.store).get(run_id).trace_id if run_id else None
        except RunNotFoundError:
            trace_id = None
        if not trace_id:
            return {}
        row = self.store.query(
            "SELECT COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(output_tokens), 0) AS o FROM model_calls "
            "WHERE trace_id = ?", (trace_id,))[0]
        return {"input_tokens": int(row["i"]), "output_tokens": int(row["o"])}

    async def aclose(self) -> None:
        if self._sampler is not None:
            await self._sampler.aclose()


OptTarget = ModelPrompt | WorkflowAgent


def resolve_target(store: SQLiteStore, spec: EvalSpec, name: str) -> OptTarget:
    """The eval target ``name`` names: a model target's name, or an Agent node id of its workflow
    target (``NODE``, or ``NAME@VERSION:NODE`` when the eval has several workflow targets)."""
    from keel.workflows import Versions, WorkflowNotFoundError

    choices: list[str] = []
    for t in spec.all_targets():
        if isinstance(t, ModelTarget):
            choices.append(t.label)
            if t.label == name:
                return ModelPrompt(t)
        elif isinstance(t, WorkflowTarget):
            try:
                version = Versions(store).get(t.workflow_name, t.version)
            except WorkflowNotFoundError as e:
                raise UnknownTarget(f"eval target {t.label}: {e.message}", hint=e.hint) from None
            agents = [n.id for n in version.spec.nodes if getattr(n, "type", None) == "agent"]
            choices += [f"{a} (Agent node of {t.workflow})" for a in agents]
            node = name.removeprefix(f"{t.workflow}:")
            if node in agents:
                return WorkflowAgent(store, t, node, version)
            others = [n.id for n in version.spec.nodes]
            if node in others:
                raise UnknownTarget(f"node {node!r} of {t.workflow} is not an Agent node: it has no instructions",
                                    hint="name an Agent node: " + (", ".join(agents) or "(this workflow has none)"))
    raise UnknownTarget(
        f"--target {name!r} is neither a model target nor an Agent node of the eval's workflow"
        + (f" (the eval {spec.name!r} has: {', '.join(choices)})" if choices else ""),
        hint="name one of those" if choices else
        "add a model target (type: model, prompt, model) or a workflow target with an Agent node to the eval")
