"""Graders with OpenAI's semantics: define them as OpenAI does, grade with any model.

>>> from keel.evals.graders import Graders, parse_grader
>>> g = parse_grader({"type": "string_check", "name": "exact", "operation": "eq",
...                   "input": "{{sample.output_text}}", "reference": "{{item.answer}}"})
>>> result = await Graders().grade(g, item={"answer": "4"}, sample={"output_text": "4"})
>>> result.score, result.passed
(1.0, True)

A grade never raises: whatever goes wrong for one item (a template naming a
missing field, a judge timing out, a python grader crashing) comes back as a
:class:`GradeResult` with ``error`` set.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from keel.errors import KeelError
from keel.evals.errors import EvalSpecError, GraderFailure, GraderRaised
from keel.evals.graders import similarity
from keel.evals.graders.formula import FormulaError, check_formula, evaluate
from keel.evals.graders.judges import run_judge
from keel.evals.graders.python_grader import PythonGraderPool
from keel.evals.graders.specs import (
    Grader,
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
from keel.evals.graders.trace_graders import TraceLoader, check_trace, judge_trace, load, run_id_for
from keel.evals.templates import render

__all__ = [
    "GradeResult",
    "Grader",
    "Graders",
    "LabelModelGrader",
    "MultiGrader",
    "PythonGrader",
    "ScoreModelGrader",
    "StringCheckGrader",
    "TextSimilarityGrader",
    "TraceCheckGrader",
    "TraceJudgeGrader",
    "parse_grader",
    "string_check",
]

_ADAPTER: TypeAdapter[Grader] = TypeAdapter(Grader)
GRADER_TYPES = ("string_check", "text_similarity", "score_model", "label_model", "python", "multi",
                "trace_check", "trace_judge", "promptfoo")


class GradeResult(BaseModel):
    """One grader's verdict on one item."""

    model_config = ConfigDict(frozen=True)

    name: str
    """The grader's name."""
    score: float | None = None
    """The grade (``None`` when ``error`` is set)."""
    passed: bool | None = None
    """Whether the item passes this grader; ``None`` for an error or a grader without a threshold."""
    error: str | None = None
    """Why the item could not be graded."""
    label: str | None = None
    """``label_model``: the label the judge chose."""
    reasoning: str | None = None
    """Judges: the judge's explanation."""
    parts: dict[str, float | None] | None = None
    """``multi``: each sub-grader's score."""
    invalid: str | None = None
    """Why the grade is OpenAI's forced 0 (a python grader that raised, a ``score_model`` grade
    that was not a number); the item is graded, not an error."""


def _describe(e: ValidationError, where: str) -> str:
    err = e.errors()[0]
    # Drop the discriminator tags pydantic puts in the path ("string_check", ...).
    loc = ".".join(str(p) for p in err["loc"] if str(p) not in GRADER_TYPES and not str(p).startswith("function-"))
    if err["type"] == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        return f"{where}: unknown grader type {tag!r} (known: {', '.join(GRADER_TYPES)})"
    if err["type"] == "union_tag_not_found":
        return f"{where}: no grader type (add \"type\": one of {', '.join(GRADER_TYPES)})"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown field {loc!r}"
    return f"{where}.{loc}: {err['msg']}" if loc else f"{where}: {err['msg']}"


def _without_ids(data: Any) -> Any:
    """A grader as OpenAI returns it carries an ``id`` (``"Exact-6c1d..."``), sub-graders too:
    it identifies the criterion on OpenAI's side and means nothing here."""
    if not isinstance(data, dict):
        return data
    out = {k: v for k, v in data.items() if not (k == "id" and isinstance(v, str))}
    if isinstance(out.get("graders"), dict):
        out["graders"] = {k: _without_ids(v) for k, v in out["graders"].items()}
    return out


def parse_grader(data: Any, *, where: str = "grader") -> Grader:
    """Validate one grader definition; problems raise :class:`EvalSpecError` naming the field."""
    from keel.evals.openai_inputs import refuse_unsupported_parts

    refuse_unsupported_parts(data, where)
    try:
        grader = _ADAPTER.validate_python(_without_ids(data))
    except ValidationError as e:
        raise EvalSpecError(_describe(e, where), hint="see docs/evals.md for each grader's fields") from None
    _check(grader, where)
    return grader


def _check(grader: Grader, where: str) -> None:
    if isinstance(grader, MultiGrader):
        try:
            check_formula(grader.calculate_output, frozenset(grader.graders))
        except FormulaError as e:
            raise EvalSpecError(f"{where}.calculate_output: {e}") from None
        for key, sub in grader.graders.items():
            if isinstance(sub, MultiGrader):
                raise EvalSpecError(
                    f"{where}.graders.{key}: a multi grader cannot contain another multi grader "
                    "(OpenAI refuses it too)",
                    hint=f"flatten it: put the sub-graders of {key!r} in {where} and fold its "
                         "calculate_output into this one's")
            _check(sub, f"{where}.graders.{key}")
    if isinstance(grader, PythonGrader):
        try:
            compile(grader.source, f"<{grader.name}>", "exec")
        except SyntaxError as e:
            raise EvalSpecError(f"{where}.source: line {e.lineno}: {e.msg}",
                                hint="the source must define def grade(sample, item) -> float") from None


def string_check(operation: str, text: str, reference: str) -> float:
    """OpenAI's string check: 1.0 when it holds, else 0.0."""
    if operation == "eq":
        return float(text == reference)
    if operation == "ne":
        return float(text != reference)
    if operation == "like":
        return float(reference in text)
    if operation == "ilike":
        return float(reference.casefold() in text.casefold())
    raise ValueError(f"unknown operation {operation!r}")


def _score_model_grade(result: Any, bounds: tuple[float, float]) -> tuple[float, str | None]:
    """OpenAI's outcomes for a ``score_model`` grade: outside ``range`` it is clamped to it; a grade
    that is not a number (text, NaN, missing) is 0, marked invalid."""
    if isinstance(result, bool) or not isinstance(result, int | float) or math.isnan(result):
        return 0.0, f"the judge's grade {result!r} is not a number: graded 0"
    return min(max(float(result), bounds[0]), bounds[1]), None


@asynccontextmanager
async def _no_limit(provider: str) -> AsyncIterator[None]:
    yield


def _passed(score: float, threshold: float | None) -> bool | None:
    return None if threshold is None else score >= threshold


class Graders:
    """Runs graders; holds what lasts across items (python workers, shared limits).

    ``limit(provider)`` is an async context manager the judges enter around each
    model call (the eval runner passes its per-provider rate limiter). ``traces(run_id)``
    loads a workflow run's trace for the trace graders (the runner passes a
    :class:`keel.evals.traces.TraceCache` over its store).
    """

    def __init__(
        self,
        *,
        limit: Callable[[str], AbstractAsyncContextManager[Any]] | None = None,
        python_workers: int = 2,
        traces: TraceLoader | None = None,
    ) -> None:
        self._limit = limit or _no_limit
        self._traces = traces
        self._python_workers = python_workers
        self._pools: dict[int, PythonGraderPool] = {}
        self._models: dict[str, Any] = {}

    async def grade(self, grader: Grader, *, item: Mapping[str, Any], sample: Mapping[str, Any]) -> GradeResult:
        """Grade one item; never raises for a per-item problem."""
        namespaces = {"item": item, "sample": sample}
        try:
            return await self._grade(grader, namespaces)
        except KeelError as e:
            return GradeResult(name=grader.name, error=e.message)
        except FormulaError as e:
            return GradeResult(name=grader.name, error=str(e))

    def grade_sync_only(self, grader: Grader, *, item: Mapping[str, Any], sample: Mapping[str, Any]) -> GradeResult | None:
        """The grade without an event-loop hop for graders that need no I/O, else ``None``."""
        if isinstance(grader, StringCheckGrader) or (
            isinstance(grader, TextSimilarityGrader) and grader.evaluation_metric != "cosine"
        ):
            namespaces = {"item": item, "sample": sample}
            try:
                return self._grade_local(grader, namespaces)
            except KeelError as e:
                return GradeResult(name=grader.name, error=e.message)
        return None

    def _grade_local(self, grader: StringCheckGrader | TextSimilarityGrader, ns: Mapping[str, Any]) -> GradeResult:
        text, reference = render(grader.input, ns), render(grader.reference, ns)
        if isinstance(grader, StringCheckGrader):
            score = string_check(grader.operation, text, reference)
            return GradeResult(name=grader.name, score=score, passed=score == 1.0)
        score = similarity.score(grader.evaluation_metric, text, reference)
        return GradeResult(name=grader.name, score=score, passed=_passed(score, grader.pass_threshold))

    async def _grade(self, grader: Grader, ns: Mapping[str, Any]) -> GradeResult:
        if isinstance(grader, StringCheckGrader):
            return self._grade_local(grader, ns)
        if isinstance(grader, TextSimilarityGrader):
            if grader.evaluation_metric != "cosine":
                return self._grade_local(grader, ns)
            text, reference = render(grader.input, ns), render(grader.reference, ns)
            score = await asyncio.to_thread(
                similarity.cosine_similarity, text, reference, embedder=grader.embedding_model
            )
            return GradeResult(name=grader.name, score=score, passed=_passed(score, grader.pass_threshold))
        if isinstance(grader, LabelModelGrader):
            answer = await run_judge(grader, ns, limit=self._limit, models=self.model)
            label = answer["label"]
            passed = label in grader.passing_labels
            return GradeResult(name=grader.name, score=float(passed), passed=passed, label=label,
                               reasoning=answer.get("reasoning"))
        if isinstance(grader, ScoreModelGrader):
            answer = await run_judge(grader, ns, limit=self._limit, models=self.model)
            score, invalid = _score_model_grade(answer.get("result"), grader.range)
            return GradeResult(name=grader.name, score=score, passed=_passed(score, grader.pass_threshold),
                               reasoning=answer.get("reasoning"), invalid=invalid)
        if isinstance(grader, PythonGrader):
            pool = self._pools.get(id(grader))
            if pool is None:
                pool = self._pools[id(grader)] = PythonGraderPool(grader, size=self._python_workers)
            try:
                score = await pool.grade(dict(ns["sample"]), dict(ns["item"]))
            except GraderRaised as e:  # OpenAI: a grader that raises grades 0 and is marked invalid
                return GradeResult(name=grader.name, score=0.0, passed=_passed(0.0, grader.pass_threshold),
                                   invalid=e.message)
            return GradeResult(name=grader.name, score=score, passed=_passed(score, grader.pass_threshold))
        if isinstance(grader, TraceCheckGrader):
            trace = load(self._traces, run_id_for(grader.run, ns))
            verdicts, reasons = check_trace(grader, trace)
            score = sum(verdicts.values()) / len(verdicts)
            return GradeResult(name=grader.name, score=score, passed=score >= grader.pass_threshold,
                               parts=dict(verdicts),
                               reasoning="; ".join(reasons) or f"all {len(verdicts)} checks hold")
        if isinstance(grader, TraceJudgeGrader):
            trace = load(self._traces, run_id_for(grader.run, ns))
            judge = grader.judge

            async def grade_step(step_ns: Mapping[str, Any]) -> GradeResult:
                try:
                    return await self._grade(judge, step_ns)
                except KeelError as e:
                    return GradeResult(name=judge.name, error=e.message)

            score, passed, parts, account = await judge_trace(grader, trace, ns, grade_step)
            return GradeResult(name=grader.name, score=score, passed=passed, parts=parts, reasoning=account)
        if isinstance(grader, PromptfooGrader):
            from keel.evals.graders.promptfoo_grader import grade_assertions

            return await grade_assertions(self, grader, ns)
        if isinstance(grader, MultiGrader):
            subs = await asyncio.gather(*(self._grade(g, ns) for g in grader.graders.values()),
                                        return_exceptions=True)
            parts: dict[str, float | None] = {}
            for key, sub in zip(grader.graders, subs, strict=True):
                if isinstance(sub, BaseException):
                    if isinstance(sub, KeelError | FormulaError):
                        reason = sub.message if isinstance(sub, KeelError) else str(sub)
                        raise GraderFailure(f"sub-grader {key!r}: {reason}")
                    raise sub
                parts[key] = sub.score
            score = evaluate(grader.calculate_output, {k: v for k, v in parts.items() if v is not None})
            return GradeResult(name=grader.name, score=score, passed=_passed(score, grader.pass_threshold),
                               parts=parts)
        raise EvalSpecError(f"unknown grader {grader!r}")  # pragma: no cover

    async def python_score(self, source: str, *, name: str, timeout: float, sample: Mapping[str, Any],
                           item: Mapping[str, Any]) -> float:
        """Run ``grade(sample, item)`` defined by ``source`` in a worker (one pool per source)."""
        key = hash((source, name, timeout))
        pool = self._pools.get(key)
        if pool is None:
            spec = PythonGrader(name=name, source=source, timeout_seconds=timeout)
            pool = self._pools[key] = PythonGraderPool(spec, size=self._python_workers)
        return await pool.grade(dict(sample), dict(item))

    def model(self, name: str) -> Any:
        """The judge model for a model string, made once per ``Graders`` (building one reads
        the settings, which costs more than a scripted or cached call)."""
        from keel.models import get_model

        model = self._models.get(name)
        if model is None:
            model = self._models[name] = get_model(name)
        return model

    async def aclose(self) -> None:
        """Stop python grader workers; close judge models."""
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()
        models, self._models = list(self._models.values()), {}
        for m in models:
            await m.aclose()
