"""Run OpenAI Evals definitions locally: the migration path for the hosted shutdown.

An OpenAI eval is what ``GET /v1/evals/{id}`` returns (``object``, ``id``,
``created_at``, ``name``, ``data_source_config``, ``testing_criteria`` whose entries
carry an ``id``), optionally with a run's ``data_source`` (inline, or a run object
given apart). Items come from the run's source (``file_content`` rows inline, a
``file_id`` mapped to a local file) or a JSONL file of ``{"item": {...}}`` lines, as
uploaded to OpenAI; lines with a ``sample`` are graded as they are, without calling
a model. :mod:`keel.evals.openai_inputs` reads each piece.

- ``testing_criteria`` become Keel graders unchanged (same JSON, same semantics,
  OpenAI's outcomes included: see :mod:`keel.evals.graders`);
- the item schema (``item_schema``, or the retrieved ``schema`` wrapper) checks every
  item: a mismatch is that item's error, naming its line; the rest run;
- the run's ``input_messages`` (a template, or an ``item_reference``), ``model`` and
  ``sampling_params`` become a model target;
  bare OpenAI model names (``gpt-4.1``) mean ``openai:gpt-4.1``;
- ``judge_model`` replaces the model of every judge (e.g. a local one), and
  ``model`` the model under test.
"""

from __future__ import annotations

from typing import Any

from keel.evals.errors import EvalSpecError
from keel.evals.openai_inputs import (
    config_item_schema,
    input_messages,
    sampling_options,
    source_dataset,
)
from keel.evals.spec import EvalSpec, parse_eval

__all__ = ["from_openai"]


def _retarget_judges(criterion: dict[str, Any], judge_model: str) -> dict[str, Any]:
    out = dict(criterion)
    if out.get("type") in ("score_model", "label_model"):
        out["model"] = judge_model
    if out.get("type") == "multi" and isinstance(out.get("graders"), dict):
        out["graders"] = {k: _retarget_judges(v, judge_model) for k, v in out["graders"].items()}
    return out


def from_openai(
    data: dict[str, Any],
    *,
    where: str = "OpenAI eval",
    data_file: str | None = None,
    model: str | None = None,
    judge_model: str | None = None,
    name: str | None = None,
    files: dict[str, str] | None = None,
    run: dict[str, Any] | None = None,
) -> EvalSpec:
    """A Keel :class:`EvalSpec` from an OpenAI Evals definition (see the module docs).

    ``run`` is an eval run as ``GET /v1/evals/{id}/runs/{run_id}`` returns it (its
    ``data_source`` is used; one in ``data`` itself is too); ``files`` maps OpenAI file ids
    to local JSONL files.
    """
    from keel.config import get_settings
    from keel.evals.graders.judges import model_string

    if data.get("object") == "eval.run":
        raise EvalSpecError(f"{where} is an eval run, not an eval",
                            hint="pass the eval (GET /v1/evals/{eval_id}) as the file and this run with --run")
    if "testing_criteria" not in data:
        raise EvalSpecError(f"{where}: no testing_criteria", hint="export the eval with GET /v1/evals/{eval_id}")
    criteria = data["testing_criteria"]
    if not isinstance(criteria, list) or not criteria:
        raise EvalSpecError(f"{where}: testing_criteria must be a non-empty list")
    if judge_model:
        criteria = [_retarget_judges(c, judge_model) if isinstance(c, dict) else c for c in criteria]
    item_schema = config_item_schema(data.get("data_source_config"), where)
    data_source = (run or {}).get("data_source") or data.get("data_source") or {}
    if not isinstance(data_source, dict):
        raise EvalSpecError(f"{where}: data_source must be an object")
    kind = data_source.get("type")
    if kind not in (None, "jsonl", "completions", "responses"):
        raise EvalSpecError(f"{where}: unknown data_source type {kind!r}", hint="jsonl, completions or responses")
    if data_file is None:
        data_file = source_dataset(data_source.get("source"), where, files=files or {},
                                   cache=get_settings().home / "evals" / "sources")
    if data_file is None:
        raise EvalSpecError(f"{where}: no data file", hint="pass the eval's items as JSONL: --data items.jsonl")
    targets: list[dict[str, Any]] = []
    if model or data_source.get("input_messages"):
        target_model = model or data_source.get("model")
        if not target_model:
            raise EvalSpecError(f"{where}: the run's data_source names no model", hint="pass --model PROVIDER:MODEL")
        target: dict[str, Any] = {"type": "model", "model": model_string(target_model), "prompt": "{{item.input}}"}
        if data_source.get("input_messages"):
            template, reference = input_messages(data_source["input_messages"], where)
            target.update(prompt=template or "", messages_from=reference)
        target.update(sampling_options(data_source.get("sampling_params"), where))
        targets.append(target)
    spec = {
        "name": name or data.get("name") or "openai-eval",
        "dataset": data_file,
        "graders": criteria,
        "targets": targets,
        "item_schema": item_schema,
    }
    return parse_eval(spec, where=where)
