"""Grading one promptfoo test: its assertions, in order, with promptfoo's semantics.

Deterministic assertions are decided by :mod:`keel.evals.graders.promptfoo_asserts`;
``similar`` embeds with Keel's embedder, ``llm-rubric`` asks the judge model with
promptfoo's rubric prompt, ``python`` runs in a grader worker (the same limits as
python graders). One assertion that cannot be decided (no judge, a python error) makes
the item an error naming it, as promptfoo marks the test as an error.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.evals.errors import GraderFailure
from keel.evals.graders.promptfoo_asserts import DETERMINISTIC, check, render_vars, split_type
from keel.evals.graders.specs import JudgeMessage, LabelModelGrader, PromptfooGrader

if TYPE_CHECKING:
    from keel.evals.graders import GradeResult, Graders

__all__ = ["grade_assertions", "python_source"]

_RUBRIC_SYSTEM = (
    "You are grading output according to a user-specified rubric. If the statement in the rubric is "
    "true, then the output passes the test. Answer with the label pass or fail."
)

_PY_FOOTER = '''

def _keel_value(result):
    if isinstance(result, bool):
        return 1.0 if result else 0.0
    if isinstance(result, (int, float)):
        return float(result)
    if isinstance(result, dict):
        if "pass" in result or "pass_" in result:
            return 1.0 if result.get("pass", result.get("pass_")) else 0.0
        return float(result.get("score", 0.0))
    raise TypeError(f"the assertion returned {type(result).__name__}, not a bool, number or GradingResult")


def grade(sample, item):
    context = {"vars": item.get("vars", {}), "test": item, "prompt": sample.get("prompt")}
    return _keel_value(__FN__(sample["output_text"], context))
'''


def python_source(value: str, base_dir: str) -> str:
    """A ``grade(sample, item)`` for a promptfoo ``python`` assertion: an inline expression, an inline
    function body (several lines, ending in ``return``), or ``file://path.py[:function]``
    (default function ``get_assert(output, context)``)."""
    if value.startswith("file://"):
        path, _, fn = value[len("file://"):].partition(":")
        p = Path(path) if Path(path).is_absolute() else Path(base_dir) / path
        try:
            code = p.read_text(encoding="utf-8")
        except OSError as e:
            raise GraderFailure(f"python assertion {value}: cannot read {p}: {e.strerror or e}") from None
        return code + _PY_FOOTER.replace("__FN__", fn or "get_assert")
    body = value.strip("\n") if "\n" in value.strip() else f"return {value.strip()}"
    code = "def _keel_assert(output, context):\n" + textwrap.indent(textwrap.dedent(body), "    ") + "\n"
    return code + _PY_FOOTER.replace("__FN__", "_keel_assert")


async def _similar(graders: Graders, grader: PromptfooGrader, output: str, value: Any,
                   threshold: float | None, inverse: bool) -> tuple[bool, float, str]:
    from keel.evals.graders import similarity

    references = value if isinstance(value, list) else [value]
    best = 0.0
    for ref in references:
        best = max(best, await asyncio.to_thread(similarity.cosine_similarity, output, str(ref),
                                                 embedder=grader.embedding_model))
    limit = 0.75 if threshold is None else threshold
    passed = (best >= limit) != inverse
    return passed, (1 - best if inverse else best), f"similarity {best:.2f}, threshold {limit:g}"


async def _rubric(graders: Graders, grader: PromptfooGrader, output: str, rubric: Any,
                  inverse: bool) -> tuple[bool, float, str]:
    from keel.evals.graders.judges import run_judge

    if not grader.judge_model:
        raise GraderFailure("llm-rubric needs a judge model",
                            hint="pass --judge-model PROVIDER:MODEL, or set defaultTest.options.provider")
    judge = LabelModelGrader(
        name="llm-rubric", model=grader.judge_model, labels=["pass", "fail"], passing_labels=["pass"],
        timeout=grader.timeout_seconds,
        input=[JudgeMessage(role="system", content=_RUBRIC_SYSTEM),
               JudgeMessage(role="user", content="<Output>\n{{sample.output_text}}\n</Output>\n"
                                                 "<Rubric>\n{{item.rubric}}\n</Rubric>")],
    )
    answer = await run_judge(judge, {"sample": {"output_text": output}, "item": {"rubric": str(rubric)}},
                             limit=graders._limit, models=graders.model)
    holds = answer["label"] == "pass"
    passed = holds != inverse
    return passed, float(passed), answer.get("reasoning") or f"the judge said {answer['label']}"


async def _python(graders: Graders, grader: PromptfooGrader, value: Any, threshold: float | None,
                  inverse: bool, ns: Mapping[str, Any]) -> tuple[bool, float, str]:
    source = python_source(str(value), grader.base_dir)
    score = await graders.python_score(source, name="python assertion", timeout=grader.timeout_seconds,
                                       sample=ns["sample"], item=ns["item"])
    holds = score >= threshold if threshold is not None else score > 0
    passed = holds != inverse
    return passed, (1 - score if inverse else score), f"python returned {score:g}"


async def grade_assertions(graders: Graders, grader: PromptfooGrader, ns: Mapping[str, Any]) -> GradeResult:
    """The test's verdict: passed when every assertion passes; score = their weighted mean."""
    from keel.evals.graders import GradeResult

    item, sample = ns["item"], ns["sample"]
    variables = item.get("vars") or {}
    output = str(sample.get("output_text", ""))
    parts: dict[str, float | None] = {}
    failed: list[str] = []
    total = weights = 0.0
    for i, a in enumerate(item.get("assert") or []):
        kind = str(a.get("type"))
        base, inverse = split_type(kind)
        value = render_vars(a.get("value"), variables)
        threshold = a.get("threshold")
        key = f"{i}:{a.get('metric') or kind}"
        try:
            if base in DETERMINISTIC:
                passed, score, reason = check(kind, output, value, threshold)
            elif base == "similar":
                passed, score, reason = await _similar(graders, grader, output, value, threshold, inverse)
            elif base == "llm-rubric":
                passed, score, reason = await _rubric(graders, grader, output, value, inverse)
            elif base == "python":
                passed, score, reason = await _python(graders, grader, value, threshold, inverse, ns)
            else:
                raise GraderFailure(f"unsupported assertion {kind!r}")
        except GraderFailure as e:
            raise GraderFailure(f"assertion {i} ({kind}): {e.message}", hint=e.hint) from None
        weight = float(a.get("weight", 1))
        total += weight * score
        weights += weight
        parts[key] = 1.0 if passed else 0.0
        if not passed:
            failed.append(f"{key}: {reason}")
    score = total / weights if weights else 1.0
    return GradeResult(name=grader.name, score=score, passed=not failed, parts=parts,
                       reasoning="; ".join(failed) or f"all {len(parts)} assertions passed")
