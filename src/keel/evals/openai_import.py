"""Run OpenAI Evals definitions locally: the migration path for the hosted shutdown.

An OpenAI eval is ``{"name", "data_source_config", "testing_criteria"}`` (what
``GET /v1/evals/{id}`` returns), optionally with a run's ``data_source`` (the
prompt template and model of a completions run). Items come from a JSONL file of
``{"item": {...}}`` lines, as uploaded to OpenAI; lines with a ``sample`` are
graded as they are, without calling a model.

- ``testing_criteria`` become Keel graders unchanged (same JSON, same semantics);
- ``data_source_config.item_schema`` checks every item (a mismatch is that item's error);
- the run's ``input_messages`` template and ``model`` become a model target;
  bare OpenAI model names (``gpt-4.1``) mean ``openai:gpt-4.1``;
- ``judge_model`` replaces the model of every judge (e.g. a local one), and
  ``model`` the model under test.
"""

from __future__ import annotations

from typing import Any

from keel.evals.errors import EvalSpecError
from keel.evals.spec import EvalSpec, parse_eval

__all__ = ["from_openai"]


def _retarget_judges(criterion: dict[str, Any], judge_model: str) -> dict[str, Any]:
    out = dict(criterion)
    if out.get("type") in ("score_model", "label_model"):
        out["model"] = judge_model
    if out.get("type") == "multi" and isinstance(out.get("graders"), dict):
        out["graders"] = {k: _retarget_judges(v, judge_model) for k, v in out["graders"].items()}
    return out


def _template_messages(data_source: dict[str, Any], where: str) -> list[dict[str, str]]:
    input_messages = data_source.get("input_messages") or {}
    template = input_messages.get("template")
    if input_messages.get("type") != "template" or not isinstance(template, list):
        raise EvalSpecError(f"{where}: data_source.input_messages must be {{\"type\": \"template\", \"template\": [...]}}")
    messages = []
    for i, m in enumerate(template):
        content = m.get("content")
        if isinstance(content, dict):
            content = content.get("text", "")
        if not isinstance(content, str) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise EvalSpecError(f"{where}: data_source.input_messages.template[{i}] needs a role and text content")
        messages.append({"role": m["role"], "content": content})
    return messages


def from_openai(
    data: dict[str, Any],
    *,
    where: str = "OpenAI eval",
    data_file: str | None = None,
    model: str | None = None,
    judge_model: str | None = None,
    name: str | None = None,
) -> EvalSpec:
    """A Keel :class:`EvalSpec` from an OpenAI Evals definition (see the module docs)."""
    from keel.evals.graders.judges import model_string

    if "testing_criteria" not in data:
        raise EvalSpecError(f"{where}: no testing_criteria", hint="export the eval with GET /v1/evals/{eval_id}")
    criteria = data["testing_criteria"]
    if not isinstance(criteria, list) or not criteria:
        raise EvalSpecError(f"{where}: testing_criteria must be a non-empty list")
    if judge_model:
        criteria = [_retarget_judges(c, judge_model) if isinstance(c, dict) else c for c in criteria]
    config = data.get("data_source_config") or {}
    data_source = data.get("data_source") or {}
    if data_file is None:
        source = data_source.get("source") or {}
        data_file = source.get("path") if source.get("type") == "file_path" else None
    if data_file is None:
        raise EvalSpecError(f"{where}: no data file", hint="pass the eval's items as JSONL: --data items.jsonl")
    targets: list[dict[str, Any]] = []
    if model or data_source.get("input_messages"):
        target_model = model or data_source.get("model")
        if not target_model:
            raise EvalSpecError(f"{where}: the run's data_source names no model", hint="pass --model PROVIDER:MODEL")
        params = data_source.get("sampling_params") or {}
        targets.append({
            "type": "model", "model": model_string(target_model),
            "prompt": _template_messages(data_source, where) if data_source.get("input_messages")
            else "{{item.input}}",
            "temperature": params.get("temperature"), "seed": params.get("seed"),
        })
    spec = {
        "name": name or data.get("name") or "openai-eval",
        "dataset": data_file,
        "graders": criteria,
        "targets": targets,
        "item_schema": config.get("item_schema") if config.get("type") == "custom" else None,
    }
    return parse_eval(spec, where=where)
