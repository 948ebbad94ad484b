"""The issue's bad input, in one eval run: a malformed dataset row, a template naming a missing
field and a judge that times out are recorded (the row with its line number, the items with a
reason); the run finishes and says how many items errored. An unknown grader type or field
stops the eval before it starts, naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.evals import iter_results, parse_eval, run_eval
from keel.evals.errors import EvalSpecError
from keel.models.base import ModelRequest
from keel.store import open_store
from keel.testing import scripted

LINES = [
    json.dumps({"question": "capital of France?", "answer": "Paris", "output": "Paris"}),
    '{"question": "capital of Italy?", "answer": "Rome", "output": "Rome"',  # line 2: cut short
    json.dumps({"question": "capital of Spain?", "output": "Madrid"}),  # line 3: no answer field
    json.dumps({"question": "slow one", "answer": "Oslo", "output": "Oslo"}),  # line 4: the judge hangs
    json.dumps({"question": "capital of Peru?", "answer": "Lima", "output": "Lima"}),
]


def _spec(data: Path) -> dict:
    return {
        "name": "bad-input", "dataset": str(data), "targets": [{"type": "precomputed", "field": "output"}],
        "graders": [
            {"type": "string_check", "name": "exact", "operation": "eq", "input": "{{sample.output_text}}",
             "reference": "{{item.answer}}"},
            {"type": "label_model", "name": "judge", "model": "scripted:slowjudge", "timeout": 0.3,
             "input": [{"role": "user", "content": "{{item.question}} -> {{sample.output_text}}"}],
             "labels": ["right", "wrong"], "passing_labels": ["right"]},
        ],
    }


def _judge(request: ModelRequest) -> str:
    return json.dumps({"reasoning": "fine", "label": "right"})


async def test_one_run_records_every_kind_of_bad_input(keel_home: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "cases.jsonl"
    data.write_text("\n".join(LINES) + "\n")
    store = open_store(keel_home)
    with scripted("slowjudge") as judge:
        judge.default = _judge
        for _ in range(2):
            judge.reply(parsed={"reasoning": "fine", "label": "right"})
        judge.reply(parsed={"reasoning": "", "label": "right"}, delay=5)  # the slow item's call
        summary = await run_eval(store, parse_eval({**_spec(data), "concurrency": 1}))
    # the malformed row: reported with its line number, recorded with the run, not an item
    assert "cases.jsonl: skipped line 2: not valid JSON" in capsys.readouterr().err
    assert summary.skipped_rows == 1 and summary.skipped[0].startswith("line 2: not valid JSON")
    [target] = summary.targets
    assert (target.items, target.passed, target.errored) == (4, 2, 2)
    errors = {r.idx: r.error for r in iter_results(store, summary.run_id) if r.status == "error"}
    assert errors == {  # items are numbered without the skipped row
        1: "exact: {{item.answer}}: item has no field 'answer' (fields: output, question)",
        2: "judge: judge scripted:slowjudge timed out after 0.3 s",
    }
    store.close()


def test_the_cli_says_how_many_items_errored_and_which_rows_were_skipped(tmp_path: Path) -> None:
    data = tmp_path / "cases.jsonl"
    data.write_text("\n".join(LINES[:3]) + "\n")
    spec = _spec(data)
    spec["graders"] = spec["graders"][:1]
    (tmp_path / "eval.json").write_text(json.dumps(spec))
    r = CliRunner().invoke(app, ["eval", "run", str(tmp_path / "eval.json")])
    assert r.exit_code == 0, r.output
    assert "finished: 1 of 2 items errored" in r.output
    assert "1 dataset row skipped (malformed, not graded): line 2: not valid JSON" in r.output


@pytest.mark.parametrize(("grader", "message"), [
    ({"type": "regex_check", "name": "x"}, "graders[0]: unknown grader type 'regex_check'"),
    ({"type": "string_check", "name": "x", "operation": "eq", "input": "a", "reference": "b", "opration": "eq"},
     "graders[0]: unknown field 'opration'"),
    ({"type": "trace_check", "name": "x", "tools_caled": ["a"]}, "graders[0]: unknown field 'tools_caled'"),
])
def test_unknown_grader_type_or_field_is_a_spec_error(grader: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(EvalSpecError) as e:
        parse_eval({"name": "x", "dataset": "d", "graders": [grader]})
    assert message in e.value.message
    (tmp_path / "eval.json").write_text(json.dumps({"name": "x", "dataset": "d", "graders": [grader]}))
    r = subprocess.run([sys.executable, "-m", "keel", "eval", "run", "eval.json"], cwd=tmp_path, capture_output=True,
                       text=True, env={**os.environ}, timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
