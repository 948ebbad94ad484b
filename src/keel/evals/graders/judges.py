"""``score_model`` and ``label_model``: a model grades, under a strict output schema.

The judge answers a JSON object whose grade is constrained by the schema itself:
an ``enum`` of the labels, or a number (OpenAI's outcomes follow: a score outside the
range is clamped to it, one that is still not a number after the model layer's one
retry grades 0 and is marked invalid). Providers with strict structured output (or
Keel's grammar-constrained local models) cannot produce anything else. Anything else
that goes wrong (a timeout, a provider error) is that item's error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from keel.errors import KeelError, StructuredOutputError
from keel.evals.errors import GraderFailure
from keel.evals.graders.specs import LabelModelGrader, ScoreModelGrader
from keel.evals.templates import render

__all__ = ["judge_schema", "model_string", "run_judge"]

_REASONING = {"type": "string", "maxLength": 500}


def model_string(name: str) -> str:
    """Keel's model string for a judge's ``model``: bare OpenAI names get ``openai:``."""
    from keel.config import get_settings

    if ":" in name or name in get_settings().models:
        return name
    return f"openai:{name}"


def judge_schema(grader: ScoreModelGrader | LabelModelGrader) -> dict[str, Any]:
    """The strict JSON schema the judge's answer must follow."""
    if isinstance(grader, LabelModelGrader):
        key, grade = "label", {"type": "string", "enum": list(dict.fromkeys(grader.labels))}
    else:
        # No minimum/maximum: OpenAI's outcome for a grade outside the range is to clamp it
        # (keel.evals.graders), not to ask again; the instructions state the range.
        key, grade = "result", {"type": "number"}
    properties = {"reasoning": _REASONING, key: grade} if grader.reasoning else {key: grade}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _instructions(grader: ScoreModelGrader | LabelModelGrader) -> str:
    first = "a short explanation in `reasoning`, then " if grader.reasoning else ""
    if isinstance(grader, LabelModelGrader):
        return (f"You are a grader. Reply with a JSON object: {first}the label in `label`, "
                f"exactly one of: {', '.join(json.dumps(x) for x in grader.labels)}.")
    low, high = grader.range
    return (f"You are a grader. Reply with a JSON object: {first}the score in `result`, "
            f"a number from {low:g} to {high:g}.")


async def run_judge(
    grader: ScoreModelGrader | LabelModelGrader,
    namespaces: Mapping[str, Any],
    *,
    limit: Callable[[str], AbstractAsyncContextManager[Any]],
    models: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Ask the judge; return its parsed answer (valid under :func:`judge_schema`).

    ``limit(provider)`` wraps the call, so judges share the run's per-provider
    rate limits; ``models(name)``, if given, supplies the model (a run reuses one per string).
    Failures raise :class:`GraderFailure` with the reason.
    """
    from keel.models import Message, ModelSettings, get_model

    messages = [Message(role="system", content=_instructions(grader))]
    for m in grader.input:
        messages.append(Message(role=m.role, content=render(m.text, namespaces)))
    p = grader.sampling_params
    settings = ModelSettings(
        temperature=p.temperature if p else None,
        top_p=p.top_p if p else None,
        seed=p.seed if p else None,
        # The schema bounds the answer (reasoning <= 500 characters, so <= 500 tokens);
        # a provider's smaller default limit must not cut a valid answer short.
        max_tokens=(p.max_completions_tokens if p and p.max_completions_tokens else 800),
        timeout=grader.timeout,
    )
    name = model_string(grader.model)
    try:
        model = (models or get_model)(name)
        async with limit(model.provider):
            response = await asyncio.wait_for(
                model.generate(messages, output_schema=judge_schema(grader), settings=settings).response(),
                grader.timeout,
            )
    except TimeoutError:
        raise GraderFailure(f"judge {name} timed out after {grader.timeout:g} s") from None
    except StructuredOutputError as e:
        if isinstance(grader, ScoreModelGrader):
            # OpenAI grades a non-numeric score 0: hand back what the judge said, if it said anything
            return _raw_answer(e.output)
        raise GraderFailure(f"judge {name} failed: {e.message}") from None
    except KeelError as e:
        raise GraderFailure(f"judge {name} failed: {e.message}") from None
    return dict(response.parsed)


def _raw_answer(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "")
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}
