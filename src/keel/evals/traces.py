"""A workflow run's trace as graders see it: the steps in order, and totals over them.

Built from the workflows' public records (``Runs`` for the run and its steps,
``Spans`` for the trace) by :func:`load_trace`. Each node, model-call and tool-call
span becomes a :class:`TraceStep`, in the order they started; a re-executed step
(after a crash) appears once, because its span id is stable.

Model responses are not in the spans (no prompt or completion content is
recorded there); the response text a per-step judge reads comes from the
engine's memo of that call (``Engine.memo_get``), the same record a resumed run
replays.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from keel.store import SQLiteStore

__all__ = ["RunTrace", "TraceCache", "TraceStep", "load_trace"]


@dataclass(frozen=True)
class TraceStep:
    """One node step, model call or tool call of a run."""

    kind: Literal["node", "model", "tool"]
    name: str
    """The span's name: ``node triage``, ``chat scripted:bot``, ``execute_tool refund``."""
    node_id: str | None
    """The node the step belongs to (model and tool calls: their Agent node)."""
    node_type: str | None
    status: str
    """``ok``, ``error`` or ``unset`` (still running)."""
    error: str | None = None
    port: str | None = None
    """Node steps: the port the node left by (``next``, a branch name, ``pass``/``fail``...)."""
    model: str | None = None
    """Model calls: the model string asked."""
    turn: int | None = None
    """Model calls: 0 for the first call of its Agent node, 1 after the first tool round..."""
    tool: str | None = None
    """Tool calls: the tool's name."""
    arguments: Any = None
    """Tool calls: the arguments the model passed."""
    input: Any = None
    """Node steps: the node's input (the previous step's output); tool calls: the arguments."""
    output_text: str | None = None
    """Node steps: the node's text output; model calls: the response text; tool calls: the result."""
    output_json: Any = None
    """Node steps: the node's parsed output; model calls: the parsed response or tool calls."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    """Model calls: the price, ``None`` when Keel knows no price for the model."""
    duration_ms: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    """The span's attributes (OpenTelemetry GenAI names, ``keel.*``)."""

    @property
    def label(self) -> str:
        """A short name for reports: ``triage``, ``triage/model#1``, ``triage/refund``."""
        if self.kind == "node":
            return self.node_id or self.name
        suffix = f"model#{self.turn}" if self.kind == "model" else str(self.tool)
        return f"{self.node_id}/{suffix}" if self.node_id else suffix

    def view(self) -> dict[str, Any]:
        """The ``{{step.*}}`` namespace a per-step judge's templates see."""
        return {
            "kind": self.kind, "name": self.name, "label": self.label, "node_id": self.node_id,
            "node_type": self.node_type, "status": self.status, "error": self.error, "port": self.port,
            "model": self.model, "turn": self.turn, "tool": self.tool, "arguments": self.arguments,
            "input": self.input, "output_text": self.output_text, "output_json": self.output_json,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens, "cost_usd": self.cost_usd,
            "attributes": self.attributes,
        }


@dataclass(frozen=True)
class RunTrace:
    """A run and its steps, with the totals trajectory checks compare."""

    run_id: str
    workflow: str
    version: int
    status: str
    input: Any
    output: Any
    error: str | None
    steps: tuple[TraceStep, ...]
    duration_ms: float | None = None

    def of_kind(self, kind: str) -> list[TraceStep]:
        return [s for s in self.steps if s.kind == kind]

    @property
    def tools(self) -> list[str]:
        """Tool names in call order."""
        return [str(s.tool) for s in self.of_kind("tool")]

    @property
    def nodes(self) -> list[str]:
        """Node ids in execution order (a node in a loop appears once per step)."""
        return [str(s.node_id) for s in self.of_kind("node")]

    @property
    def turns(self) -> int:
        """The most model calls any one Agent node step made."""
        per_node: dict[str, int] = {}
        for s in self.of_kind("model"):
            key = str(s.attributes.get("_node_span"))
            per_node[key] = per_node.get(key, 0) + 1
        return max(per_node.values(), default=0)

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.of_kind("model"))

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.of_kind("model"))

    @property
    def cost_usd(self) -> float | None:
        """Total price of the model calls; ``None`` if any call's price is unknown."""
        costs = [s.cost_usd for s in self.of_kind("model")]
        return None if any(c is None for c in costs) else float(sum(c for c in costs if c is not None))

    def guardrails(self) -> dict[str, str]:
        """Each Guardrails node's outcome by node id: ``pass``, ``fail`` or ``error`` (the last step wins)."""
        out: dict[str, str] = {}
        for s in self.of_kind("node"):
            if s.node_type == "guardrails":
                out[str(s.node_id)] = s.port if s.port in ("pass", "fail") else "error"
        return out


def _response_text(memo: str | None) -> tuple[str | None, Any]:
    if memo is None:
        return None, None
    try:
        data = json.loads(memo)
    except ValueError:
        return memo, None
    calls = data.get("tool_calls") or None
    parsed = data.get("parsed")
    if calls and parsed is None:
        parsed = {"tool_calls": [{"name": c.get("name"), "arguments": c.get("arguments")} for c in calls]}
    return data.get("text"), parsed


def load_trace(store: SQLiteStore, run_id: str) -> RunTrace:
    """The trace of workflow run ``run_id`` (or a unique prefix); raises ``RunNotFoundError``."""
    from keel.workflows import Engine, Runs, Spans

    runs = Runs(store)
    record = runs.get(run_id)
    steps_by_seq = {s.seq: s for s in runs.steps(record.id)}
    spans = Spans(store).for_trace(record.trace_id)
    nodes = {s.span_id: s for s in spans if s.kind == "node"}
    by_id = {s.span_id: s for s in spans}
    engine = Engine(store)
    out: list[TraceStep] = []
    previous_output: Any = record.input
    root_ms: float | None = None
    for span in spans:
        a = span.attributes
        if span.kind == "workflow":
            root_ms = span.duration_ms
            continue
        if span.kind == "node":
            seq = a.get("keel.step")
            step = steps_by_seq.get(seq) if isinstance(seq, int) else None
            output = step.output if step else None
            text = output.get("output_text") if isinstance(output, dict) else None
            parsed = output.get("output_parsed") if isinstance(output, dict) else None
            out.append(TraceStep(
                "node", span.name, a.get("keel.node.id"), a.get("keel.node.type"), span.status, span.error,
                port=a.get("keel.node.port") or (step.port if step else None), input=previous_output,
                output_text=text, output_json=parsed,
                input_tokens=int(a.get("gen_ai.usage.input_tokens") or 0),
                output_tokens=int(a.get("gen_ai.usage.output_tokens") or 0),
                duration_ms=span.duration_ms, attributes=a))
            if step is not None:
                previous_output = text if text is not None else output
            continue
        parent = nodes.get(span.parent_id or "")
        up = by_id.get(span.parent_id or "")
        while parent is None and up is not None:  # an agent called as a tool or handed to: its node
            parent, up = nodes.get(up.parent_id or ""), by_id.get(up.parent_id or "")
        pa = parent.attributes if parent else {}
        node_id, node_type = pa.get("keel.node.id"), pa.get("keel.node.type")
        attrs = {**a, "_node_span": span.parent_id}
        if span.kind == "model":
            # The memo key: ``keel.memo`` on newer spans, else built as the Agent node builds it.
            key = a.get("keel.memo") or (f"{pa.get('keel.step')}:model:{a.get('keel.turn')}" if parent else None)
            turn = a.get("keel.turn")
            if turn is None and isinstance(key, str) and key.rsplit(":", 1)[-1].isdigit():
                turn = int(key.rsplit(":", 1)[-1])
            memo = engine.memo_get(record.id, key) if key else None
            text, parsed = _response_text(memo)
            out.append(TraceStep(
                "model", span.name, node_id, node_type, span.status, span.error,
                model=f"{a.get('gen_ai.provider.name')}:{a.get('gen_ai.request.model')}", turn=turn,
                output_text=text, output_json=parsed,
                input_tokens=int(a.get("gen_ai.usage.input_tokens") or 0),
                output_tokens=int(a.get("gen_ai.usage.output_tokens") or 0),
                cost_usd=a.get("keel.cost_usd"), duration_ms=span.duration_ms, attributes=attrs))
        elif span.kind == "tool":
            try:
                arguments = json.loads(a.get("keel.tool.arguments") or "null")
            except ValueError:
                arguments = a.get("keel.tool.arguments")
            out.append(TraceStep(
                "tool", span.name, node_id, node_type, span.status, span.error, tool=a.get("gen_ai.tool.name"),
                arguments=arguments, input=arguments, output_text=a.get("keel.tool.result"),
                duration_ms=span.duration_ms, attributes=attrs))
    return RunTrace(record.id, record.workflow, record.version, record.status, record.input, record.output,
                    record.error, tuple(out), duration_ms=root_ms)


class TraceCache:
    """Loads traces for graders, keeping the last few (several graders read the same run)."""

    def __init__(self, store: SQLiteStore, *, size: int = 64) -> None:
        self.store = store
        self.size = size
        self._cache: OrderedDict[str, RunTrace] = OrderedDict()

    def __call__(self, run_id: str) -> RunTrace:
        trace = self._cache.get(run_id)
        if trace is None:
            trace = load_trace(self.store, run_id)
            self._cache[run_id] = trace
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(run_id)
        return trace
