"""Trace grading: ``trace_check`` (the whole trajectory) and ``trace_judge`` (each step).

Both read the trace of the workflow run their ``run`` template names, through a
loader (:class:`keel.evals.traces.TraceCache` in an eval run). A check's verdict
lists what did not hold, so a failing item says why without opening the trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from keel.errors import KeelError
from keel.evals.errors import GraderFailure
from keel.evals.graders.specs import (
    LabelModelGrader,
    Range,
    StepSelector,
    TraceCheckGrader,
    TraceJudgeGrader,
)
from keel.evals.templates import render
from keel.evals.traces import RunTrace, TraceStep

__all__ = ["check_trace", "judge_trace", "run_id_for", "select_steps"]

TraceLoader = Callable[[str], RunTrace]


def run_id_for(template: str, ns: Mapping[str, Any]) -> str:
    run_id = render(template, ns).strip()
    if not run_id or run_id == "null":
        raise GraderFailure(f"{template} is empty: this sample has no workflow run",
                            hint="grade a workflow target, or a dataset built with `keel datasets from-runs`")
    return run_id


def load(loader: TraceLoader | None, run_id: str) -> RunTrace:
    if loader is None:
        raise GraderFailure("trace graders need a store to read traces from",
                            hint="run them through run_eval / `keel eval run`")
    try:
        return loader(run_id)
    except KeelError as e:
        raise GraderFailure(f"trace of run {run_id}: {e.message}") from None


def _in_order(seen: Sequence[str], wanted: Sequence[str]) -> bool:
    it = iter(seen)
    return all(any(x == w for x in it) for w in wanted)


def _range(name: str, value: float, bound: Range) -> str | None:
    if bound.min is not None and value < bound.min:
        return f"{name} {value:g} < min {bound.min:g}"
    if bound.max is not None and value > bound.max:
        return f"{name} {value:g} > max {bound.max:g}"
    return None


def check_trace(grader: TraceCheckGrader, trace: RunTrace) -> tuple[dict[str, float], list[str]]:
    """Each check's verdict (1 or 0) and the reasons of those that failed."""
    tools, nodes = trace.tools, trace.nodes
    verdicts: dict[str, float] = {}
    reasons: list[str] = []

    def verdict(check: str, problem: str | None) -> None:
        verdicts[check] = 0.0 if problem else 1.0
        if problem:
            reasons.append(problem)

    shown = f"[{', '.join(tools)}]"
    for check in grader.checks():
        value = getattr(grader, check)
        if check == "status":
            verdict(check, None if trace.status == value else f"status {trace.status}, expected {value}")
        elif check == "tools_called":
            missing = [t for t in value if t not in tools]
            verdict(check, f"not called: {', '.join(missing)} (called {shown})" if missing else None)
        elif check == "tools_not_called":
            bad = [t for t in value if t in tools]
            verdict(check, f"called: {', '.join(bad)}" if bad else None)
        elif check == "tool_order":
            verdict(check, None if _in_order(tools, value) else f"tools not in order {value} (called {shown})")
        elif check == "tool_sequence":
            verdict(check, None if tools == value else f"tool calls {shown}, expected {value}")
        elif check == "nodes_visited":
            missing = [n for n in value if n not in nodes]
            verdict(check, f"nodes not run: {', '.join(missing)}" if missing else None)
        elif check == "nodes_not_visited":
            bad = [n for n in value if n in nodes]
            verdict(check, f"nodes run: {', '.join(bad)}" if bad else None)
        elif check == "node_order":
            verdict(check, None if _in_order(nodes, value) else f"nodes not in order {value} (ran {nodes})")
        elif check == "guardrails":
            outcomes = trace.guardrails()
            problems = []
            for node, want in value.items():
                targets = outcomes if node == "*" else {node: outcomes.get(node, "not run")}
                if not targets:
                    problems.append("no Guardrails node ran")
                problems += [f"guardrails {n}: {got}, expected {want}" for n, got in targets.items() if got != want]
            verdict(check, "; ".join(problems) or None)
        else:
            verdict(check, _range(check, _total(check, trace), value))
    return verdicts, reasons


def _total(check: str, trace: RunTrace) -> float:
    if check == "steps":
        return len(trace.nodes)
    if check == "model_calls":
        return len(trace.of_kind("model"))
    if check == "turns":
        return trace.turns
    if check == "tool_calls":
        return len(trace.tools)
    if check == "tool_errors":
        return sum(1 for s in trace.of_kind("tool") if s.status == "error")
    if check == "input_tokens":
        return trace.input_tokens
    if check == "output_tokens":
        return trace.output_tokens
    if check == "total_tokens":
        return trace.input_tokens + trace.output_tokens
    if check == "cost_usd":
        if trace.cost_usd is None:
            unknown = sorted({str(s.model) for s in trace.of_kind("model") if s.cost_usd is None})
            raise GraderFailure(f"cost unknown: no price for {', '.join(unknown)}",
                                hint="set prices in keel.toml [prices], or check tokens instead")
        return trace.cost_usd
    raise GraderFailure(f"unknown trace check {check!r}")  # pragma: no cover


def _matches(step: TraceStep, sel: StepSelector) -> bool:
    return (step.kind == sel.kind
            and (sel.node is None or step.node_id in sel.node)
            and (sel.node_type is None or step.node_type in sel.node_type)
            and (sel.tool is None or step.tool in sel.tool)
            and (sel.status is None or step.status == sel.status))


def select_steps(trace: RunTrace, sel: StepSelector) -> list[TraceStep]:
    return [s for s in trace.steps if _matches(s, sel)]


StepGrade = Callable[[Mapping[str, Any]], Awaitable[Any]]
"""Grades one step's namespaces with the judge; returns a ``GradeResult``."""


async def judge_trace(grader: TraceJudgeGrader, trace: RunTrace, ns: Mapping[str, Any],
                      grade_step: StepGrade) -> tuple[float | None, bool | None, dict[str, float | None], str]:
    """Judge each selected step: (score, passed, per-step scores, a one-line account)."""
    steps = select_steps(trace, grader.select)
    if not steps:
        if grader.if_no_steps == "error":
            raise GraderFailure(f"no {grader.select.kind} step of run {trace.run_id} matches select",
                                hint="check select (node ids, node_type, tool), or set if_no_steps: pass")
        ok = grader.if_no_steps == "pass"
        return float(ok), ok, {}, "no matching step"
    if len(steps) > grader.max_steps:
        raise GraderFailure(f"{len(steps)} steps match select, more than max_steps={grader.max_steps}")
    results = await asyncio.gather(*(grade_step({**ns, "step": s.view()}) for s in steps))
    labels: list[str] = []
    for s in steps:
        label = s.label
        n = sum(1 for x in labels if x == label or x.startswith(label + "#"))
        labels.append(label if n == 0 else f"{label}#{n + 1}")
    parts: dict[str, float | None] = {}
    failing: list[str] = []
    for label, r in zip(labels, results, strict=True):
        if r.error:
            raise GraderFailure(f"step {label}: {r.error}")
        parts[label] = r.score
        if r.passed is False:
            failing.append(f"{label}" + (f" ({r.label})" if isinstance(grader.judge, LabelModelGrader) else ""))
    scores = [p for p in parts.values() if p is not None]
    score = (min(scores) if grader.aggregate == "min" else sum(scores) / len(scores)) if scores else None
    if grader.pass_threshold is not None:
        passed = None if score is None else score >= grader.pass_threshold
    else:
        passed = None if all(r.passed is None for r in results) else not failing
    account = f"{len(steps)} steps judged" + (f"; not passing: {', '.join(failing)}" if failing else "")
    return score, passed, parts, account
