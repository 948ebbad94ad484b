"""Datasets and eval runs on a real SQLite store: bad rows, per-item errors, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keel.evals import Datasets, compare_runs, iter_results, parse_eval, resume_eval, run_eval
from keel.evals.errors import DatasetError, EvalSpecError
from keel.store import open_store
from keel.testing import scripted


@pytest.fixture
def store(keel_home: Path):
    s = open_store(keel_home)
    yield s
    s.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_jsonl_import_reports_bad_lines_and_versions(store, tmp_path) -> None:
    f = write(tmp_path / "qa.jsonl", '{"q": "a", "answer": "1"}\n{"q": broken\n[1, 2]\n\n{"item": {"q": "c"}, "sample": {"output_text": "x"}}\n')
    report = Datasets(store).import_file(f)
    assert report.dataset.ref == "qa@1" and report.dataset.item_count == 2
    assert [str(p) for p in report.problems] == [
        "line 2: not valid JSON: Expecting value (column 7)",
        "line 3: expected a JSON object, got list",
    ]
    rows = list(Datasets(store).rows(report.dataset.id))
    assert rows[1].item == {"q": "c"} and rows[1].sample == {"output_text": "x"} and rows[1].line == 5
    again = Datasets(store).import_file(f)
    assert again.unchanged and again.dataset.version == 1
    write(f, '{"q": "z"}\n')
    assert Datasets(store).import_file(f).dataset.ref == "qa@2"
    assert Datasets(store).get("qa").version == 2 and Datasets(store).get("qa@1").item_count == 2
    with pytest.raises(DatasetError, match="no dataset 'nope'"):
        Datasets(store).get("nope")


def test_csv_import_reports_rows_with_wrong_field_counts(store, tmp_path) -> None:
    f = write(tmp_path / "d.csv", 'question,answer\n"What, exactly?",yes\nonly-one-field\n"multi\nline",no\n')
    report = Datasets(store).import_file(f, name="d")
    assert report.dataset.item_count == 2
    assert [str(p) for p in report.problems] == ["line 3: 1 fields, but the header has 2"]
    rows = list(Datasets(store).rows(report.dataset.id))
    assert rows[0].item == {"question": "What, exactly?", "answer": "yes"}
    assert rows[1].item["question"] == "multi\nline"


GRADERS = [
    {"type": "string_check", "name": "exact", "operation": "eq",
     "input": "{{sample.output_text}}", "reference": "{{item.answer}}"},
    {"type": "text_similarity", "name": "fuzzy", "evaluation_metric": "fuzzy_match",
     "input": "{{sample.output_text}}", "reference": "{{item.answer}}", "pass_threshold": 0.8},
]


def items_file(tmp_path: Path, n: int = 6) -> Path:
    lines = [json.dumps({"question": f"q{i}", "answer": f"a{i}", "output": f"a{i}" if i % 3 else "wrong"})
             for i in range(n)]
    lines.append(json.dumps({"question": "no answer", "output": "x"}))  # template names a missing field
    return write(tmp_path / "items.jsonl", "\n".join(lines) + "\n")


async def test_precomputed_run_records_per_item_errors(store, tmp_path) -> None:
    spec = parse_eval({"name": "t", "dataset": str(items_file(tmp_path)), "graders": GRADERS,
                       "targets": [{"type": "precomputed", "field": "output"}]})
    summary = await run_eval(store, spec)
    (t,) = summary.targets
    assert (t.items, t.passed, t.errored) == (7, 4, 1)
    assert t.pass_rate == pytest.approx(4 / 7)
    errored = [r for r in iter_results(store, summary.run_id) if r.status == "error"]
    assert "item has no field 'answer'" in errored[0].error and errored[0].idx == 6
    exact = next(g for g in t.graders if g.name == "exact")
    assert exact.count == 6 and exact.errors == 1 and exact.pass_rate == pytest.approx(4 / 6)


class Interrupted(BaseException):
    """Stands in for Ctrl-C / a crash (asyncio treats a real KeyboardInterrupt specially)."""


def model_spec(tmp_path: Path, **extra) -> dict:
    return {"name": "m", "dataset": str(items_file(tmp_path, 5)), "graders": GRADERS[:1],
            "targets": [{"type": "model", "model": "scripted:target", "prompt": "Answer {{item.question}}"}],
            "concurrency": 1, **extra}


async def test_an_interrupted_run_resumes_without_recalling_the_model(store, tmp_path) -> None:
    spec = parse_eval(model_spec(tmp_path))
    with scripted("target") as model:
        for i in range(3):
            model.reply(f"a{i}")
        model.reply(error=Interrupted())  # the run is stopped on the 4th item
        with pytest.raises(Interrupted):
            await run_eval(store, spec, run_id="run-1")
    assert len(model.calls) == 4
    run = store.query("SELECT status FROM eval_runs WHERE id = 'run-1'")[0]
    assert run["status"] == "interrupted"
    assert len(list(iter_results(store, "run-1"))) == 3

    with scripted("target") as model:
        for i in (3, 4):
            model.reply(f"a{i}")
        model.reply("x")  # the item without an answer
        summary = await resume_eval(store, "run-1")
    prompts = [c.messages[-1].content for c in model.calls]
    assert prompts == ["Answer q3", "Answer q4", "Answer no answer"]
    (t,) = summary.targets
    assert (t.items, t.passed, t.errored) == (6, 5, 1)


async def test_matrix_compares_models_and_prompts_side_by_side(store, tmp_path) -> None:
    spec = parse_eval(model_spec(tmp_path, targets=[], matrix={
        "models": ["scripted:echo", "scripted:target"],
        "prompts": {"plain": "{{item.answer}}", "shout": "{{item.question}}"},
    }))
    assert [t.label for t in spec.all_targets()] == [
        "scripted:echo · plain", "scripted:echo · shout", "scripted:target · plain", "scripted:target · shout"]
    with scripted("target") as model:
        for _ in range(11):  # 2 prompts x 6 items, less one whose prompt names a missing field
            model.reply("a1")
        summary = await run_eval(store, spec.model_copy(update={"targets": []}), concurrency=4)
    by = {t.target: t for t in summary.targets}
    assert by["scripted:echo · plain"].passed == 5 and by["scripted:echo · shout"].passed == 0
    assert by["scripted:target · plain"].passed == 1


async def test_a_model_error_is_an_item_error_and_the_run_finishes(store, tmp_path) -> None:
    from keel.errors import ProviderAuthError

    spec = parse_eval(model_spec(tmp_path))
    with scripted("target") as model:
        model.reply("a0").fail(ProviderAuthError("401 from scripted")).reply("a2").reply("a3").reply("a4").reply("x")
        summary = await run_eval(store, spec)
    (t,) = summary.targets
    assert t.errored == 2 and t.passed == 4
    errors = sorted(r.error for r in iter_results(store, summary.run_id) if r.error)
    assert errors[0].startswith("exact: ") and "401 from scripted" in errors[1]


async def test_compare_lists_regressions_item_by_item(store, tmp_path) -> None:
    f = items_file(tmp_path)
    a = await run_eval(store, parse_eval({"name": "t", "dataset": str(f), "graders": GRADERS[:1],
                                          "targets": [{"type": "precomputed", "field": "answer", "name": "out"}]}))
    b = await run_eval(store, parse_eval({"name": "t", "dataset": str(f), "graders": GRADERS[:1],
                                          "targets": [{"type": "precomputed", "field": "output", "name": "out"}]}))
    cmp = compare_runs(store, a.run_id, b.run_id)
    (t,) = cmp.targets
    assert t.regressions == 2 and [r.idx for r in t.regressed_items] == [0, 3]
    assert t.regressed_items[0].failed_graders == ["exact"]
    assert t.delta == pytest.approx(4 / 7 - 6 / 7)


def test_spec_errors_name_the_field() -> None:
    with pytest.raises(EvalSpecError, match=r"graders\[1\]: unknown grader type 'regex'"):
        parse_eval({"name": "x", "dataset": "d", "graders": [GRADERS[0], {"type": "regex", "name": "r"}]})
    with pytest.raises(EvalSpecError, match="grader names must be unique"):
        parse_eval({"name": "x", "dataset": "d", "graders": [GRADERS[0], GRADERS[0]]})
    with pytest.raises(EvalSpecError, match=r"unknown field 'targets\[0\].modle'"):
        parse_eval({"name": "x", "dataset": "d", "graders": GRADERS, "targets": [{"type": "model", "modle": "m", "prompt": "p"}]})
