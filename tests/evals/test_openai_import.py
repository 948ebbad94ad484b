"""An OpenAI Evals definition (string_check + text_similarity + label_model) run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keel.evals import iter_results, load_eval, run_eval
from keel.store import open_store
from keel.testing import scripted

OPENAI_EVAL = {
    "object": "eval",
    "id": "eval_67abd54d9b0081909a86353f6fb9317a",
    "name": "Capitals",
    "data_source_config": {
        "type": "custom",
        "item_schema": {
            "type": "object",
            "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
            "required": ["question", "answer"],
        },
        "include_sample_schema": True,
    },
    "testing_criteria": [
        {"type": "string_check", "name": "Exact", "input": "{{ sample.output_text }}",
         "reference": "{{ item.answer }}", "operation": "eq"},
        {"type": "text_similarity", "name": "Close", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.8},
        {"type": "label_model", "name": "Judge", "model": "gpt-4o-2024-08-06",
         "input": [{"role": "developer", "content": "Is the answer correct? Label it."},
                   {"role": "user", "content": "Q: {{item.question}}\nA: {{sample.output_text}}\nReference: {{item.answer}}"}],
         "labels": ["correct", "incorrect"], "passing_labels": ["correct"]},
    ],
    "data_source": {
        "type": "completions", "model": "gpt-4.1",
        "input_messages": {"type": "template", "template": [
            {"role": "developer", "content": "Answer with the city name only."},
            {"role": "user", "content": "{{item.question}}"},
        ]},
    },
}

ITEMS = [
    {"item": {"question": "Capital of France?", "answer": "Paris"}},
    {"item": {"question": "Capital of Italy?", "answer": "Rome"}},
    {"item": {"question": "Capital of Spain?", "answer": "Madrid"}},
    {"item": {"question": "Capital of Japan?"}},  # breaks the item_schema
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    definition = tmp_path / "eval.json"
    definition.write_text(json.dumps(OPENAI_EVAL))
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in ITEMS))
    return definition, data


async def test_openai_eval_runs_locally_with_any_models(files, keel_home) -> None:
    definition, data = files
    spec = load_eval(definition, data_file=str(data), model="scripted:target", judge_model="scripted:judge")
    assert [g.type for g in spec.graders] == ["string_check", "text_similarity", "label_model"]
    store = open_store(keel_home)
    with scripted("target") as target, scripted("judge") as judge:
        target.reply("Paris").reply("Rom").reply("Barcelona")
        judge.reply(parsed={"reasoning": "same city", "label": "correct"})
        judge.reply(parsed={"reasoning": "misspelt", "label": "incorrect"})
        judge.reply(parsed={"reasoning": "wrong city", "label": "incorrect"})
        summary = await run_eval(store, spec, concurrency=1)
    assert target.calls[0].messages[0].content == "Answer with the city name only."
    (t,) = summary.targets
    assert (t.items, t.passed, t.errored) == (4, 1, 1)
    by = {g.name: g for g in t.graders}
    assert by["Exact"].pass_rate == pytest.approx(1 / 3)
    assert by["Close"].pass_rate == pytest.approx(2 / 3)  # "Rom" is close to "Rome"
    assert by["Judge"].pass_rate == pytest.approx(1 / 3)
    errors = [r.error for r in iter_results(store, summary.run_id) if r.error]
    assert errors == ["item 3 (line 4) does not match item_schema at (root): 'answer' is a required property"]


async def test_precomputed_samples_in_the_jsonl_need_no_model(files, keel_home, tmp_path) -> None:
    definition, _ = files
    data = tmp_path / "samples.jsonl"
    rows = [{"item": {"question": "Capital of France?", "answer": "Paris"}, "sample": {"output_text": "Paris"}},
            {"item": {"question": "Capital of Peru?", "answer": "Lima"}, "sample": {"output_text": "Lima."}}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    no_run = {k: v for k, v in OPENAI_EVAL.items() if k != "data_source"}
    definition.write_text(json.dumps(no_run))
    spec = load_eval(definition, data_file=str(data), judge_model="scripted:judge")
    with scripted("judge") as judge:
        judge.reply(parsed={"reasoning": "", "label": "correct"}).reply(parsed={"reasoning": "", "label": "correct"})
        summary = await run_eval(open_store(keel_home), spec, concurrency=1)
    (t,) = summary.targets
    assert t.target == "precomputed" and t.passed == 1 and t.errored == 0


@pytest.mark.local
async def test_label_model_on_the_tiny_local_model_yields_only_valid_labels(files, keel_home, tmp_path) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llguidance")
    from keel.testing import write_tiny_gguf

    gguf = write_tiny_gguf(tmp_path / "judge.gguf", seed=3)
    definition, _ = files
    data = tmp_path / "samples.jsonl"
    rows = [{"item": {"question": f"Q{i}?", "answer": "yes"}, "sample": {"output_text": f"answer {i}"}}
            for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    no_run = {k: v for k, v in OPENAI_EVAL.items() if k != "data_source"}
    definition.write_text(json.dumps(no_run))
    spec = load_eval(definition, data_file=str(data), judge_model=f"local:{gguf}")
    summary = await run_eval(open_store(keel_home), spec, concurrency=2)
    (t,) = summary.targets
    assert t.errored == 0
    labels = [g["label"] for r in iter_results(open_store(keel_home), summary.run_id)
              for g in r.grades if g["name"] == "Judge"]
    assert len(labels) == 6 and set(labels) <= {"correct", "incorrect"}
