"""Grader definitions: OpenAI's grader JSON, field for field, plus a few Keel options.

An OpenAI ``testing_criteria`` entry validates as one of these unchanged. Unknown
fields are rejected (a typo is an error, not a silently ignored option). Keel's
own additions all have defaults, so OpenAI definitions never need them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "SIMILARITY_METRICS",
    "Grader",
    "InputText",
    "JudgeMessage",
    "LabelModelGrader",
    "MultiGrader",
    "PythonGrader",
    "SamplingParams",
    "ScoreModelGrader",
    "StringCheckGrader",
    "TextSimilarityGrader",
]

SIMILARITY_METRICS = (
    "fuzzy_match", "bleu", "gleu", "meteor", "cosine",
    "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l",
)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StringCheckGrader(_Spec):
    """Compare two strings; score 1 when the check holds, else 0."""

    type: Literal["string_check"] = "string_check"
    name: str
    """Shown in reports; unique within an eval."""
    input: str
    """Text to check, usually ``{{sample.output_text}}``."""
    reference: str
    """Text to check against, usually ``{{item.answer}}``."""
    operation: Literal["eq", "ne", "like", "ilike"]
    """``eq``: equal; ``ne``: not equal; ``like``: ``input`` contains ``reference``;
    ``ilike``: the same, ignoring case. All comparisons are exact (no trimming)."""


class TextSimilarityGrader(_Spec):
    """Score how similar ``input`` is to ``reference`` with a standard metric."""

    type: Literal["text_similarity"] = "text_similarity"
    name: str
    input: str
    reference: str
    evaluation_metric: Literal[
        "fuzzy_match", "bleu", "gleu", "meteor", "cosine",
        "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l",
    ]
    """See :mod:`keel.evals.graders.similarity` for the implementation behind each."""
    pass_threshold: float | None = None
    """The item passes when the score is at least this; without it the grader only scores."""
    embedding_model: str = "minilm"
    """Keel: the embedder for ``cosine`` (OpenAI used ``text-embedding-3-large``;
    write ``openai:text-embedding-3-large`` to match it exactly)."""


class InputText(_Spec):
    """OpenAI's typed content part; only text is supported."""

    type: Literal["input_text", "output_text", "text"] = "input_text"
    text: str


class JudgeMessage(_Spec):
    """One message of a judge's prompt; ``content`` may hold templates."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | InputText | list[InputText]
    type: Literal["message"] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if isinstance(self.content, InputText):
            return self.content.text
        return "".join(part.text for part in self.content)


class SamplingParams(_Spec):
    """Sampling for a judge; unset values leave the provider's default."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # e.g. reasoning_effort: not portable
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    max_completions_tokens: int | None = None


class _Judge(_Spec):
    model: str
    """A Keel model string (``openai:gpt-4.1``, ``local:judge.gguf``, ``scripted:judge``).
    A bare OpenAI name such as ``gpt-4o-2024-08-06`` means ``openai:`` that name."""
    input: list[JudgeMessage] = Field(min_length=1)
    """The judge's prompt (the rubric), with ``{{item...}}`` and ``{{sample...}}`` templates."""
    sampling_params: SamplingParams | None = None
    timeout: float = Field(default=120.0, gt=0)
    """Keel: seconds the judge may take for one item before it is recorded as an error."""
    reasoning: bool = True
    """Keel: ask for a short explanation before the grade (kept with the result);
    ``false`` asks for the grade alone (faster, e.g. for small local judges)."""


class ScoreModelGrader(_Judge):
    """A model gives a number in ``range``; strict output makes anything else impossible."""

    type: Literal["score_model"] = "score_model"
    name: str
    range: tuple[float, float] = (0.0, 1.0)
    """Lowest and highest score the judge may give."""
    pass_threshold: float | None = None
    """The item passes when the score is at least this."""

    @model_validator(mode="after")
    def _check_range(self) -> ScoreModelGrader:
        if self.range[0] >= self.range[1]:
            raise ValueError(f"range {list(self.range)} must be [low, high] with low < high")
        return self


class LabelModelGrader(_Judge):
    """A model picks one of ``labels``; the item passes when it is one of ``passing_labels``."""

    type: Literal["label_model"] = "label_model"
    name: str
    labels: list[str] = Field(min_length=1)
    passing_labels: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_labels(self) -> LabelModelGrader:
        unknown = [p for p in self.passing_labels if p not in self.labels]
        if unknown:
            raise ValueError(f"passing_labels {unknown} are not among labels {self.labels}")
        return self


class PythonGrader(_Spec):
    """``source`` defines ``grade(sample, item) -> float``, run in a subprocess with limits."""

    type: Literal["python"] = "python"
    name: str
    source: str
    """Python code defining ``def grade(sample: dict, item: dict) -> float``."""
    image_tag: str | None = None
    """OpenAI's sandbox image; ignored (Keel runs the local Python)."""
    pass_threshold: float | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    """Keel: wall-clock limit for one item; past it the worker is killed and the item errors."""
    memory_mb: int = Field(default=1024, ge=32)
    """Keel: address-space limit of the worker process (``RLIMIT_AS``)."""


class MultiGrader(_Spec):
    """Combine other graders' scores with a formula over their names."""

    type: Literal["multi"] = "multi"
    name: str
    graders: dict[str, Grader]
    """Sub-graders by the name the formula uses."""
    calculate_output: str
    """Arithmetic over the sub-grader names: ``+ - * / ^``, parentheses, numbers and
    ``min max abs floor ceil exp sqrt log``; e.g. ``0.5 * exact + 0.5 * fuzzy``."""
    pass_threshold: float | None = None


Grader = Annotated[
    StringCheckGrader | TextSimilarityGrader | ScoreModelGrader | LabelModelGrader | PythonGrader | MultiGrader,
    Field(discriminator="type"),
]
"""Any grader, chosen by its ``type``."""

MultiGrader.model_rebuild()
