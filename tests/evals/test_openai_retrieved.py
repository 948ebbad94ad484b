"""OpenAI evals as GET /v1/evals/{id} and GET /v1/evals/{id}/runs/{run_id} return them (issue 15).

The fixtures under fixtures/openai/ are written by hand from the Evals API reference and
openai-python's types: criteria carry an ``id``, the item schema comes in the retrieved
``schema`` wrapper, the run's rows are inline (``file_content``), its template mixes a typed
content part and a list of parts, and its sampling params ask for a JSON schema.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from keel.evals import iter_results, load_eval, run_eval
from keel.evals.errors import EvalSpecError
from keel.store import open_store
from keel.testing import scripted
from tests.workflows.test_cli import keel

FIXTURES = Path(__file__).parent / "fixtures" / "openai"
EVAL = FIXTURES / "eval_retrieved.json"
RUN = FIXTURES / "run_completions.json"


def triage(category: str, reason: str) -> dict:
    return {"category": category, "reason": reason}


def test_a_grader_with_an_id_is_accepted() -> None:
    """The exact failure the issue reports: `graders[0]: unknown field 'id'`."""
    spec = load_eval(EVAL, data_file=str(FIXTURES / "samples.jsonl"))
    assert [g.name for g in spec.graders] == ["Category matches", "Judge", "Has a reason"]
    assert spec.item_schema["required"] == ["ticket", "expected"]  # the "item" of the retrieved wrapper


async def test_a_retrieved_eval_and_run_run_unchanged(keel_home) -> None:
    run = json.loads(RUN.read_text())
    spec = load_eval(EVAL, run=run, model="scripted:target", judge_model="scripted:judge")
    (target,) = spec.targets
    assert [m.content for m in target.messages()] == [
        "Classify the support ticket as billing, bug or account.", "Ticket: {{item.ticket}}"]
    assert (target.temperature, target.top_p, target.seed, target.max_tokens) == (0.2, 0.9, 42, 256)
    assert target.output_schema["required"] == ["category", "reason"]
    with scripted("target") as model, scripted("judge") as judge:
        model.reply(parsed=triage("billing", "Charged twice")).reply(parsed=triage("bug", "crash on export"))
        model.reply(parsed=triage("account", ""))
        judge.reply(parsed={"reasoning": "fits", "result": 12})           # outside [0, 10]: clamped to 10
        judge.reply(parsed={"reasoning": "", "result": "high"})           # not a number, twice: 0, invalid
        judge.reply(parsed={"reasoning": "", "result": "very high"})
        judge.reply(parsed={"reasoning": "ok", "result": 7})
        summary = await run_eval(open_store(keel_home), spec, concurrency=1)
    assert model.calls[0].messages[1].content == "Ticket: I was charged twice this month"
    assert model.calls[0].output_schema["required"] == ["category", "reason"]
    assert (model.calls[0].settings.top_p, model.calls[0].settings.seed) == (0.9, 42)
    (t,) = summary.targets
    assert (t.items, t.passed, t.errored) == (4, 1, 1)
    rows = {r.idx: r for r in iter_results(open_store(keel_home), summary.run_id)}
    grades = {i: {g["name"]: g for g in r.grades} for i, r in rows.items()}
    assert grades[0]["Judge"]["score"] == 10.0 and grades[0]["Judge"]["passed"]
    assert grades[1]["Judge"]["score"] == 0.0 and "not a number" in grades[1]["Judge"]["invalid"]
    assert grades[2]["Judge"]["score"] == 7.0
    assert grades[1]["Has a reason"]["score"] == 0.0 and "invalid" not in grades[1]["Has a reason"]
    # a python grader that raises grades 0 and is marked invalid; the item is graded, not an error
    assert grades[2]["Has a reason"]["score"] == 0.0 and "IndexError" in grades[2]["Has a reason"]["invalid"]
    assert rows[2].status == "ok"
    # the item that breaks the schema is an error naming its line; the rest ran
    assert rows[3].status == "error" and "item 3 (line 4) does not match item_schema at expected" in rows[3].error


async def test_responses_source_with_an_item_reference_text_format_and_tools(keel_home, tmp_path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"item": {"messages": [
        {"role": "system", "content": "You look up orders."},
        {"role": "user", "content": [{"type": "input_text", "text": "Where is order 42?"}]}]}}) + "\n")
    definition = json.loads(EVAL.read_text())
    definition["data_source_config"] = {"type": "custom", "item_schema": {
        "type": "object", "properties": {"messages": {"type": "array"}}, "required": ["messages"]}}
    definition["testing_criteria"] = [{
        "name": "Calls lookup", "id": "Calls lookup-1", "type": "string_check",
        "input": "{{sample.output_tools[0].function.name}}", "reference": "lookup_order", "operation": "eq"}]
    definition["data_source"] = {
        "type": "responses",
        "source": {"type": "file_id", "id": "file-9GYS6xbkWgWhmE7VoLUWFg"},
        "input_messages": {"type": "item_reference", "item_reference": "item.messages"},
        "model": "scripted:target",
        "sampling_params": {
            "temperature": 0, "max_completion_tokens": 100,
            "text": {"format": {"type": "text"}},
            "tools": [{"type": "function", "name": "lookup_order", "description": "Find an order",
                       "parameters": {"type": "object", "properties": {"id": {"type": "integer"}},
                                      "required": ["id"]}, "strict": True}]}}
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(definition))
    with pytest.raises(EvalSpecError) as e:
        load_eval(path)
    assert "--file file-9GYS6xbkWgWhmE7VoLUWFg=items.jsonl" in e.value.hint
    spec = load_eval(path, files={"file-9GYS6xbkWgWhmE7VoLUWFg": str(items)})
    with scripted("target") as model:
        model.reply(tool_calls=[("lookup_order", {"id": 42})])
        summary = await run_eval(open_store(keel_home), spec, concurrency=1)
    request = model.calls[0]
    assert [m.content for m in request.messages] == ["You look up orders.", "Where is order 42?"]
    assert [t.name for t in request.tools] == ["lookup_order"] and request.output_schema is None
    (t,) = summary.targets
    assert t.passed == 1, list(iter_results(open_store(keel_home), summary.run_id))


@pytest.mark.parametrize("change, says", [
    (lambda d: d.update(data_source_config={"type": "logs", "metadata": {"usecase": "chatbot"}}),
     "reads items from OpenAI's stored logs"),
    (lambda d: d.update(data_source_config={"type": "stored_completions", "metadata": {}}),
     "reads items from OpenAI's stored logs"),
    (lambda d: d.update(data_source={"type": "completions", "model": "gpt-4.1",
                                     "source": {"type": "stored_completions", "limit": 100}}),
     "data_source.source type 'stored_completions' reads OpenAI's stored logs"),
    (lambda d: d["testing_criteria"][1]["input"].append(
        {"type": "message", "role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}),
     "graders[1].input[2]: input_image inputs are not supported"),
    (lambda d: d.update(data_source={"type": "completions", "model": "gpt-4.1", "input_messages": {
        "type": "template", "template": [{"role": "user", "content": {"type": "input_image", "image_url": "u"}}]}}),
     "input_image inputs are not supported"),
    (lambda d: d["testing_criteria"].append({
        "type": "multi", "name": "outer", "calculate_output": "inner", "graders": {
            "inner": {"type": "multi", "name": "inner", "calculate_output": "a", "graders": {
                "a": {"type": "string_check", "name": "a", "input": "x", "reference": "x", "operation": "eq"}}}}}),
     "graders[3].graders.inner: a multi grader cannot contain another multi grader"),
])
def test_what_keel_cannot_do_gets_one_line(tmp_path, change, says) -> None:
    definition = json.loads(EVAL.read_text())
    change(definition)
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(definition))
    with pytest.raises(EvalSpecError) as e:
        # the run's own source is read only when no --data is given
        own_source = "source" in definition.get("data_source", {})
        load_eval(path, data_file=None if own_source else str(tmp_path / "items.jsonl"))
    assert says in e.value.message and "\n" not in e.value.message
    assert e.value.hint


def test_the_cli_runs_a_retrieved_eval_with_its_run_and_a_mapped_file(tmp_path, keel_home) -> None:
    samples = tmp_path / "samples.jsonl"
    shutil.copy(FIXTURES / "samples.jsonl", samples)
    run = json.loads(RUN.read_text())
    run["data_source"] = {"type": "jsonl", "source": {"type": "file_id", "id": "file-Abc123"}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    definition = json.loads(EVAL.read_text())
    definition["testing_criteria"] = definition["testing_criteria"][:1]  # no judge: no model needed
    (tmp_path / "eval.json").write_text(json.dumps(definition))
    r = keel("eval", "run", str(tmp_path / "eval.json"), "--run", str(tmp_path / "run.json"),
             "--file", f"file-Abc123={samples}", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    (t,) = summary["targets"]
    assert (t["items"], t["passed"], t["errored"]) == (3, 2, 0)
    r = keel("eval", "run", str(tmp_path / "eval.json"), "--run", str(tmp_path / "run.json"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not mapped to a local file" in r.stderr and "--file file-Abc123=items.jsonl" in r.stderr
