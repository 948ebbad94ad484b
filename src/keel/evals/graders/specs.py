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
    "PromptfooGrader",
    "PythonGrader",
    "Range",
    "SamplingParams",
    "ScoreModelGrader",
    "StepSelector",
    "StringCheckGrader",
    "TextSimilarityGrader",
    "TraceCheckGrader",
    "TraceJudgeGrader",
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


class Range(_Spec):
    """Bounds a trajectory total must lie within (both inclusive); give one or both."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _check(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


_RUN = "{{sample.workflow_run_id}}"


class TraceCheckGrader(_Spec):
    """Keel: checks over a whole workflow run's trajectory; score = the share of checks that hold.

    Give any of the checks; each one counts once. The trace is the run whose id the
    ``run`` template yields (a workflow target puts it in ``sample.workflow_run_id``;
    datasets built from runs put it there too).
    """

    type: Literal["trace_check"] = "trace_check"
    name: str
    run: str = _RUN
    """Template giving the workflow run id whose trace is checked."""
    status: Literal["succeeded", "failed", "waiting", "running"] | None = None
    """The run's status must be this."""
    tools_called: list[str] = Field(default_factory=list)
    """Each of these tools was called at least once."""
    tools_not_called: list[str] = Field(default_factory=list)
    """None of these tools was called."""
    tool_order: list[str] = Field(default_factory=list)
    """These tools were called in this order (other calls may come between)."""
    tool_sequence: list[str] | None = None
    """The tool calls were exactly this sequence (``[]``: no tool was called)."""
    nodes_visited: list[str] = Field(default_factory=list)
    """Each of these nodes ran at least once."""
    nodes_not_visited: list[str] = Field(default_factory=list)
    node_order: list[str] = Field(default_factory=list)
    """These nodes ran in this order (others may come between)."""
    guardrails: dict[str, Literal["pass", "fail"]] = Field(default_factory=dict)
    """Guardrails node id -> the outcome it must have had (``*``: every Guardrails node)."""
    steps: Range | None = None
    """Node steps executed."""
    model_calls: Range | None = None
    turns: Range | None = None
    """The most model calls any one Agent node step made (its turns)."""
    tool_calls: Range | None = None
    tool_errors: Range | None = None
    """Tool calls that raised."""
    input_tokens: Range | None = None
    output_tokens: Range | None = None
    total_tokens: Range | None = None
    cost_usd: Range | None = None
    """Total price of the model calls (an error when a model's price is unknown)."""
    pass_threshold: float = Field(default=1.0, ge=0, le=1)
    """The item passes when at least this share of the checks hold (default: all)."""

    @model_validator(mode="after")
    def _some_check(self) -> TraceCheckGrader:
        if not self.checks():
            raise ValueError("give at least one check (tools_called, tool_order, model_calls, cost_usd, ...)")
        return self

    def checks(self) -> list[str]:
        """The names of the checks given, in declaration order."""
        skip = {"type", "name", "run", "pass_threshold"}
        return [k for k in type(self).model_fields if (k not in skip and getattr(self, k) not in (None, [], {}))
                or (k == "tool_sequence" and self.tool_sequence == [])]


class StepSelector(_Spec):
    """Which steps of a trace a per-step judge grades; every field given must match."""

    kind: Literal["node", "model", "tool"] = "node"
    """Node steps, model calls or tool calls."""
    node: list[str] | None = None
    """Node ids (model and tool calls: of their Agent node)."""
    node_type: list[str] | None = None
    """Node types, e.g. ``[agent]``."""
    tool: list[str] | None = None
    """Tool calls: tool names."""
    status: Literal["ok", "error"] | None = None


class TraceJudgeGrader(_Spec):
    """Keel: a ``score_model`` or ``label_model`` judge applied to each selected step of a trace.

    The judge's templates see ``{{step.*}}`` (see :class:`keel.evals.traces.TraceStep`:
    ``step.input``, ``step.output_text``, ``step.tool``, ``step.arguments``...) besides
    ``{{item.*}}`` and ``{{sample.*}}``. Each step's grade is kept in ``parts``.
    """

    type: Literal["trace_judge"] = "trace_judge"
    name: str
    run: str = _RUN
    """Template giving the workflow run id whose trace is judged."""
    select: StepSelector = Field(default_factory=StepSelector)
    judge: Annotated[ScoreModelGrader | LabelModelGrader, Field(discriminator="type")]
    """The judge for one step; its ``name`` defaults to this grader's."""
    aggregate: Literal["mean", "min"] = "mean"
    """How step scores combine into the item's score."""
    pass_threshold: float | None = None
    """The item passes when the combined score is at least this; without it, when every step
    passes the judge (its ``pass_threshold`` or ``passing_labels``)."""
    if_no_steps: Literal["error", "pass", "fail"] = "error"
    """What a trace with no matching step gets."""
    max_steps: int = Field(default=50, ge=1)
    """At most this many steps are judged per run (the first ones); more is an error."""

    @model_validator(mode="before")
    @classmethod
    def _judge_name(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("judge"), dict) and "name" not in data["judge"]:
            data = {**data, "judge": {**data["judge"], "name": data.get("name", "judge")}}
        return data


class PromptfooGrader(_Spec):
    """Keel: a promptfoo test's assertions, read from the item (``item.assert``, with the test's
    ``item.vars``), graded with promptfoo's semantics (:mod:`keel.evals.graders.promptfoo_asserts`).
    The item passes when every assertion passes; its score is their weighted mean.
    ``keel eval run promptfooconfig.yaml`` builds it; ``parts`` holds each assertion's verdict."""

    type: Literal["promptfoo"] = "promptfoo"
    name: str = "assertions"
    judge_model: str | None = None
    """The model ``llm-rubric`` asks (promptfoo's ``defaultTest.options.provider``, or ``--judge-model``)."""
    embedding_model: str = "minilm"
    """The embedder ``similar`` uses."""
    base_dir: str = "."
    """Where ``file://`` paths of ``python`` assertions are read from (the config's folder)."""
    timeout_seconds: float = Field(default=30.0, gt=0)
    """Per ``python`` assertion and per judge call."""


Grader = Annotated[
    StringCheckGrader | TextSimilarityGrader | ScoreModelGrader | LabelModelGrader | PythonGrader | MultiGrader
    | TraceCheckGrader | TraceJudgeGrader | PromptfooGrader,
    Field(discriminator="type"),
]
"""Any grader, chosen by its ``type``."""

MultiGrader.model_rebuild()
