"""An eval definition: a dataset, graders, and the targets whose outputs are graded.

.. code-block:: yaml

    name: capitals
    dataset: capitals            # a dataset in the store (NAME or NAME@VERSION) or a file
    graders:                     # OpenAI grader JSON (``testing_criteria`` is accepted too)
      - {type: string_check, name: exact, operation: eq,
         input: "{{sample.output_text}}", reference: "{{item.answer}}"}
    targets:
      - {type: precomputed, field: output}      # outputs already in the items
      - {type: workflow, workflow: refunds@3, input: "{{item.input}}"}   # a pinned workflow
    matrix:                                     # or: every model x every prompt
      models: [openai:gpt-4.1-mini, ollama:llama3.2]
      prompts:
        terse: "Answer in one word: {{item.question}}"
    rate_limits: {openai: 500}                  # requests per minute, per provider
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from keel.evals.errors import EvalSpecError
from keel.evals.graders import Grader, parse_grader
from keel.safeload import load_json, load_yaml

__all__ = ["EvalSpec", "Matrix", "ModelTarget", "PrecomputedTarget", "PromptMessage", "Target", "WorkflowTarget",
           "load_eval"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptMessage(_Spec):
    """One message of a target's prompt; ``content`` may use ``{{item.field}}``."""

    role: Literal["system", "developer", "user", "assistant"] = "user"
    content: str


Prompt = str | list[PromptMessage]
"""A prompt: one user message as a string, or a list of messages."""


class PrecomputedTarget(_Spec):
    """Grade outputs that already exist: a field of each item, or the dataset's samples."""

    type: Literal["precomputed"] = "precomputed"
    name: str = "precomputed"
    """Shown in reports; unique within the eval."""
    field: str | None = None
    """The item field holding the output; ``None`` uses the ``sample`` of OpenAI-style JSONL lines."""


class ToolSpec(_Spec):
    """A function tool offered to a model target."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ModelTarget(_Spec):
    """Ask a model, with a prompt rendered from each item, and grade its answer."""

    type: Literal["model"] = "model"
    model: str
    """A Keel model string, e.g. ``openai:gpt-4.1-mini`` or ``local:./model.gguf``."""
    prompt: Prompt = ""
    """The prompt, rendered from each item (give it or ``messages_from``)."""
    name: str | None = None
    """Shown in reports; defaults to the model string (plus the prompt name in a matrix)."""
    output_schema: dict[str, Any] | None = None
    """Ask for structured output; the parsed value becomes ``sample.output_json``."""
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    timeout: float = Field(default=120.0, gt=0)
    """Seconds one item may take before it is recorded as an error."""
    top_p: float | None = None
    messages_from: str | None = None
    """Instead of ``prompt``: the item field holding each item's messages, e.g. ``item.messages``
    (OpenAI's ``input_messages: {type: item_reference}``): a list of ``{role, content}``."""
    tools: list[ToolSpec] = Field(default_factory=list)
    """Function tools offered to the model (OpenAI's ``sampling_params.tools``); the model is not
    run in a loop: its calls are the sample's ``output_tools``."""

    @model_validator(mode="after")
    def _one_prompt(self) -> ModelTarget:
        if (self.prompt in ("", [])) == (self.messages_from is None):
            raise ValueError("give prompt or messages_from (one of them)")
        return self

    @property
    def label(self) -> str:
        return self.name or self.model

    def messages(self) -> list[PromptMessage]:
        return [PromptMessage(content=self.prompt)] if isinstance(self.prompt, str) else list(self.prompt)


class WorkflowTarget(_Spec):
    """Run a pinned workflow version on each item; grade the run's output (and, with trace
    graders, its trace). The run id is stored with the result as ``sample.workflow_run_id``."""

    type: Literal["workflow"] = "workflow"
    workflow: str
    """``NAME@VERSION``: a published version, pinned so the eval is reproducible."""
    input: str | dict[str, Any] | list[Any] = "{{item.input}}"
    """The run's input: a template (one whole reference such as ``{{item.input}}`` passes the
    value as it is, text or JSON), or a JSON object/list whose strings are templates."""
    name: str | None = None
    """Shown in reports; defaults to ``NAME@VERSION``."""
    timeout: float = Field(default=600.0, gt=0)
    """Seconds one run may take before the item is recorded as an error."""
    grade_failed: bool = False
    """Grade failed runs too (their error is ``sample.output_text``), e.g. to check with a
    trace grader that a bad input fails the way it should; by default a failed run is the
    item's error."""

    @field_validator("workflow")
    @classmethod
    def _pinned(cls, value: str) -> str:
        name, _, version = value.partition("@")
        if not name or not version.isdigit():
            raise ValueError(f"{value!r} is not pinned: write NAME@VERSION, e.g. {name or 'refunds'}@1 "
                             "(`keel workflows list` shows versions)")
        return value

    @property
    def label(self) -> str:
        return self.name or self.workflow

    @property
    def workflow_name(self) -> str:
        return self.workflow.partition("@")[0]

    @property
    def version(self) -> int:
        return int(self.workflow.partition("@")[2])


Target = Annotated[PrecomputedTarget | ModelTarget | WorkflowTarget, Field(discriminator="type")]


class Matrix(_Spec):
    """Side by side: every model with every prompt."""

    models: list[str] = Field(min_length=1)
    prompts: dict[str, Prompt] = Field(min_length=1)
    """Prompts by name (the name shows in reports)."""
    output_schema: dict[str, Any] | None = None
    temperature: float | None = None


class EvalSpec(_Spec):
    """A complete eval: what to grade, how, and against which data."""

    name: str
    dataset: str
    """A stored dataset (``NAME``, ``NAME@VERSION``) or a CSV/JSONL file to import first."""
    graders: list[Grader] = Field(min_length=1, validation_alias=AliasChoices("graders", "testing_criteria"))
    """Graders with OpenAI's semantics (see :mod:`keel.evals.graders`)."""
    targets: list[Target] = Field(default_factory=list)
    matrix: Matrix | None = None
    concurrency: int = Field(default=8, ge=1, le=1024)
    """Items in flight at once."""
    rate_limits: dict[str, float] = Field(default_factory=dict)
    """Requests per minute per provider prefix (``openai``, ``ollama``...), judges included."""
    item_schema: dict[str, Any] | None = None
    """A JSON schema each item must match (OpenAI's ``data_source_config.item_schema``);
    an item that does not is recorded as an error."""

    @field_validator("graders", mode="before")
    @classmethod
    def _parse_graders(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [parse_grader(g, where=f"graders[{i}]") for i, g in enumerate(value)]
        return value

    @model_validator(mode="after")
    def _check(self) -> EvalSpec:
        names = [g.name for g in self.graders]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"grader names must be unique: {', '.join(dupes)} repeats")
        labels = [t.name if isinstance(t, PrecomputedTarget) else t.label for t in self.all_targets()]
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise ValueError(f"target names must be unique: {', '.join(dupes)} repeats (set name: on each)")
        return self

    def all_targets(self) -> list[PrecomputedTarget | ModelTarget | WorkflowTarget]:
        """The targets, with the matrix expanded; precomputed samples when none are given."""
        targets: list[PrecomputedTarget | ModelTarget | WorkflowTarget] = list(self.targets)
        if self.matrix:
            many = len(self.matrix.prompts) > 1
            for model in self.matrix.models:
                for prompt_name, prompt in self.matrix.prompts.items():
                    targets.append(ModelTarget(
                        model=model, prompt=prompt, name=f"{model} · {prompt_name}" if many else model,
                        output_schema=self.matrix.output_schema, temperature=self.matrix.temperature,
                    ))
        return targets or [PrecomputedTarget()]


def _describe(e: ValidationError, where: str) -> str:
    errors = e.errors()
    err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    parts: list[str] = []
    for i, p in enumerate(err["loc"]):
        # pydantic puts the discriminator tag after a list index: targets.0.model.prompt
        if i and isinstance(err["loc"][i - 1], int) and p in ("model", "precomputed", "workflow"):
            continue
        parts.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    loc = "".join(parts).lstrip(".")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown field {loc!r}"
    return f"{where}: {loc}: {msg}" if loc else f"{where}: {msg}"


def parse_eval(data: Any, *, where: str = "eval") -> EvalSpec:
    """Validate an eval definition (a dict); problems raise :class:`EvalSpecError`."""
    try:
        return EvalSpec.model_validate(data)
    except ValidationError as e:
        raise EvalSpecError(_describe(e, where), hint="see docs/evals.md") from None


def load_eval(path: str | Path, **openai_options: Any) -> EvalSpec:
    """Read a Keel eval file (YAML or JSON), an OpenAI Evals definition (JSON with
    ``testing_criteria``), which :func:`keel.evals.openai_import.from_openai` converts, or a
    promptfoo config, which :func:`keel.evals.promptfoo_config.load_promptfoo` converts."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalSpecError(f"eval file {p} does not exist", hint="check the path") from None
    try:
        data = load_json(text, where=str(p)) if p.suffix == ".json" else load_yaml(text, where=str(p))
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise EvalSpecError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}") from None
    if not isinstance(data, dict):
        raise EvalSpecError(f"{p}: expected an object at the top level")
    from keel.evals.promptfoo_config import is_promptfoo_config, load_promptfoo

    if is_promptfoo_config(p, data):
        return load_promptfoo(p, data, **openai_options)
    if "data_source_config" in data or ("testing_criteria" in data and "dataset" not in data):
        from keel.evals.openai_import import from_openai

        return from_openai(data, where=str(p), **openai_options)
    if "dataset" in data and isinstance(data["dataset"], str):
        candidate = (p.parent / data["dataset"])
        if candidate.is_file():
            data = {**data, "dataset": str(candidate)}
    data.setdefault("name", p.stem)
    return parse_eval(data, where=str(p))
