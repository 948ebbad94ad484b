"""Feedback text for a grade: what failed and why, in words a reflection model can act on.

Graders return a score; prompt optimization (:mod:`keel.optimize`) needs to know *why* an
item scored what it did. :func:`feedback` turns any grader's :class:`GradeResult` (every
grader type) into one or two sentences built from the grader's definition, the rendered
input and reference, and what the grader reported (a judge's label and reasoning, a multi
grader's parts, a trace check's failed checks).

>>> feedback(string_grader, GradeResult(name="exact", score=0.0, passed=False),
...          item={"answer": "Paris"}, sample={"output_text": "paris"})
"exact (string_check eq): failed: expected the output to equal 'Paris', got 'paris'"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keel.errors import KeelError
from keel.evals.graders.specs import (
    LabelModelGrader,
    MultiGrader,
    PromptfooGrader,
    PythonGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
    TraceCheckGrader,
    TraceJudgeGrader,
)

__all__ = ["feedback", "verdict"]

_OPS = {"eq": "equal", "ne": "differ from", "like": "contain", "ilike": "contain (ignoring case)"}
_CLIP = 300


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else text[:_CLIP] + f"... ({len(text)} chars)"


def _render(template: str, ns: Mapping[str, Any]) -> str | None:
    from keel.evals.templates import render

    try:
        return render(template, ns)
    except KeelError:
        return None


def verdict(result: Any) -> str:
    """``passed``, ``failed``, ``error`` or ``scored`` (a grade without a threshold)."""
    if result.error is not None:
        return "error"
    if result.passed is None:
        return "scored"
    return "passed" if result.passed else "failed"


def feedback(grader: Any, result: Any, *, item: Mapping[str, Any], sample: Mapping[str, Any]) -> str:
    """One grader's verdict on one item as text: the grader, the outcome, and why."""
    ns = {"item": item, "sample": sample}
    head = f"{grader.name} ({grader.type}"
    if isinstance(grader, StringCheckGrader):
        head += f" {grader.operation}"
    elif isinstance(grader, TextSimilarityGrader):
        head += f" {grader.evaluation_metric}"
    head += ")"
    if result.error is not None:
        return f"{head}: could not grade: {result.error}"
    outcome = verdict(result)
    score = f"score {result.score:g}" if result.score is not None else "no score"
    why = _why(grader, result, ns)
    if outcome == "passed":
        return f"{head}: passed ({score})" + (f": {why}" if why and result.reasoning else "")
    return f"{head}: {outcome} ({score})" + (f": {why}" if why else "")


def _why(grader: Any, result: Any, ns: Mapping[str, Any]) -> str:
    if isinstance(grader, StringCheckGrader):
        text, ref = _render(grader.input, ns), _render(grader.reference, ns)
        return f"expected the output to {_OPS[grader.operation]} {_clip(repr(ref))}, got {_clip(repr(text))}"
    if isinstance(grader, TextSimilarityGrader):
        text, ref = _render(grader.input, ns), _render(grader.reference, ns)
        bar = f" (passes at {grader.pass_threshold:g})" if grader.pass_threshold is not None else ""
        return (f"{grader.evaluation_metric} similarity to the reference {_clip(repr(ref))} is "
                f"{(result.score or 0):.2f}{bar}; the output was {_clip(repr(text))}")
    if isinstance(grader, LabelModelGrader):
        why = f"the judge labelled it {result.label!r} (passing labels: {', '.join(grader.passing_labels)})"
        return why + (f"; its reasoning: {_clip(result.reasoning)}" if result.reasoning else "")
    if isinstance(grader, ScoreModelGrader):
        bar = f", passes at {grader.pass_threshold:g}" if grader.pass_threshold is not None else ""
        why = f"the judge gave {result.score:g} on {grader.range[0]:g}..{grader.range[1]:g}{bar}"
        if result.invalid:
            why += f" ({result.invalid})"
        return why + (f"; its reasoning: {_clip(result.reasoning)}" if result.reasoning else "")
    if isinstance(grader, PythonGrader):
        bar = f" (passes at {grader.pass_threshold:g})" if grader.pass_threshold is not None else ""
        return f"grade(sample, item) returned {result.score:g}{bar}" + (
            f"; it raised: {_clip(result.invalid)}" if result.invalid else "")
    if isinstance(grader, MultiGrader):
        parts = ", ".join(f"{k}={'error' if v is None else f'{v:g}'}" for k, v in (result.parts or {}).items())
        bar = f"; passes at {grader.pass_threshold:g}" if grader.pass_threshold is not None else ""
        return f"{grader.calculate_output} over {parts}{bar}"
    if isinstance(grader, TraceCheckGrader | TraceJudgeGrader | PromptfooGrader):
        return _clip(result.reasoning or "")
    return _clip(result.reasoning or "")  # pragma: no cover - every grader type is above
