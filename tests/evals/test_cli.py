"""``keel datasets`` and ``keel eval`` as a user runs them: real subprocesses and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

EVAL = """\
name: demo
dataset: {dataset}
graders:
  - {{type: string_check, name: exact, operation: eq, input: "{{{{sample.output_text}}}}", reference: "{{{{item.answer}}}}"}}
  - {{type: text_similarity, name: rouge, evaluation_metric: rouge_l, input: "{{{{sample.output_text}}}}",
     reference: "{{{{item.answer}}}}", pass_threshold: 0.5}}
targets:
  - {{type: precomputed, field: output}}
"""


def keel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keel", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ}, timeout=120)


def test_datasets_and_eval_gate_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("question,answer,output\nq1,Paris,Paris\nq2,Rome,Roma\nq3,Oslo\nq4,Bern,Bern\n")
    r = keel("datasets", "import", "d.csv", cwd=tmp_path)
    assert r.returncode == 0 and "imported d@1: 3 items, 1 rows skipped" in r.stdout
    assert "d.csv:4: skipped: 2 fields, but the header has 3" in r.stderr
    assert "d@1" in keel("datasets", "list", cwd=tmp_path).stdout
    (tmp_path / "ev.yaml").write_text(EVAL.format(dataset="d"))

    ok = keel("eval", "run", "ev.yaml", "--fail-under", "0.6", "--html", "report.html", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["score"] == 2 / 3 and summary["errored"] == 0
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "http" not in page.replace("http-equiv", "")  # self-contained
    (tmp_path / "baseline.json").write_text(ok.stdout)

    failed = keel("eval", "run", "ev.yaml", "--fail-under", "0.9", cwd=tmp_path)
    assert failed.returncode == 1
    assert "error: eval gate failed: precomputed: pass rate 66.7% is under --fail-under 90.0%" in failed.stderr
    assert "Traceback" not in failed.stderr

    # a regression against the baseline: the outputs got worse
    (tmp_path / "d2.csv").write_text("question,answer,output\nq1,Paris,Lyon\nq2,Rome,Roma\nq4,Bern,Bern\n")
    keel("datasets", "import", "d2.csv", "--name", "d", cwd=tmp_path)
    worse = keel("eval", "run", "ev.yaml", "--baseline", "baseline.json", "--max-regression", "0.1", cwd=tmp_path)
    assert worse.returncode == 1 and "pass rate fell 33.3 pts" in worse.stderr
    runs = [line.split()[0] for line in keel("eval", "list", cwd=tmp_path).stdout.splitlines()]
    cmp = keel("eval", "compare", runs[-1], runs[0], "--json", cwd=tmp_path)
    (target,) = json.loads(cmp.stdout)["targets"]
    assert target["regressions"] == 1 and target["regressed_items"][0]["idx"] == 0

    bad = keel("eval", "run", "missing.yaml", cwd=tmp_path)
    assert bad.returncode == 2 and "eval file missing.yaml does not exist" in bad.stderr


OPENAI_EVAL = {
    "object": "eval", "name": "Capitals",
    "data_source_config": {"type": "custom", "item_schema": {
        "type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}}}},
    "testing_criteria": [{"type": "string_check", "name": "Exact", "input": "{{ sample.output_text }}",
                          "reference": "{{ item.answer }}", "operation": "eq"}],
    "data_source": {"type": "completions", "model": "gpt-4.1", "input_messages": {"type": "template", "template": [
        {"role": "user", "content": "{{item.question}}"}]}},
}


def test_an_eval_whose_items_all_errored_fails_and_the_hints_name_the_run(tmp_path: Path) -> None:
    """Issue 14: an OpenAI eval whose every item errored exited 0; the gate's hint said `RUN`."""
    (tmp_path / "eval.json").write_text(json.dumps(OPENAI_EVAL))
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"item": {"question": q, "answer": a}}) + "\n"
                                                 for q, a in (("Capital of France?", "Paris"),
                                                              ("Capital of Italy?", "Rome"))))
    unreachable = "openai-compatible:http://127.0.0.1:9/v1#m"  # nothing listens on port 9: every item errors
    r = subprocess.run([sys.executable, "-m", "keel", "eval", "run", "eval.json", "--data", "items.jsonl",
                        "--model", unreachable], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "KEEL_MAX_RETRIES": "0"})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "all 2 items errored, so nothing was graded" in r.stderr
    run_id = keel("eval", "list", cwd=tmp_path).stdout.split()[0]
    assert f"keel eval show {run_id} --errors" in r.stderr and "RUN" not in r.stderr

    # The --fail-under gate's hint names the run too.
    (tmp_path / "d.csv").write_text("question,answer,output\nq1,Paris,Paris\nq2,Rome,Roma\n")
    keel("datasets", "import", "d.csv", cwd=tmp_path)
    (tmp_path / "ev.yaml").write_text(EVAL.format(dataset="d"))
    r = keel("eval", "run", "ev.yaml", "--fail-under", "0.9", cwd=tmp_path)
    assert r.returncode == 1 and "RUN" not in r.stderr
    run_id = keel("eval", "list", cwd=tmp_path).stdout.split()[0]
    assert f"keel eval show {run_id} --html report.html" in r.stderr
