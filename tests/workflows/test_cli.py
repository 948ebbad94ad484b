"""The workflow commands as a user runs them: real subprocesses, real exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from keel.workflows.schema import spec_json_schema

REPO = Path(__file__).resolve().parents[2]

FLOW = """
name: refunds
nodes:
  - {id: start, type: start}
  - id: shape
    type: transform
    fields: {order: "input_as_text", priority: "size(input_as_text) > 3 ? 'high' : 'low'"}
  - {id: ask, type: human_approval, message: "Refund order {{ input.output_parsed.order }}?"}
  - {id: paid, type: end, output: "{'refunded': nodes.shape.output_parsed.order, 'by': input.output_parsed.by}"}
  - {id: denied, type: end, output: "'denied'"}
edges:
  - {from: start, to: shape}
  - {from: shape, to: ask}
  - {from: ask, port: approved, to: paid}
  - {from: ask, port: rejected, to: denied}
"""


def keel(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def clean_failure(r: subprocess.CompletedProcess[str], says: str, code: int = 2) -> None:
    assert r.returncode == code, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert says in r.stderr and "fix: " in r.stderr


def test_validate_publish_list_diff(spec_file) -> None:
    path = spec_file(FLOW)
    r = keel("workflows", "validate", str(path))
    assert r.returncode == 0 and "ok (refunds: 5 nodes, 4 edges)" in r.stdout
    assert keel("workflows", "publish", str(path)).stdout.strip() == "published refunds version 1"
    assert "unchanged: still version 1" in keel("workflows", "publish", str(path)).stdout
    path.write_text(FLOW.replace("'denied'", "'no refund'"))
    assert "version 2" in keel("workflows", "publish", str(path)).stdout
    assert keel("workflows", "list").stdout.split()[:2] == ["refunds", "v2"]
    d = keel("workflows", "diff", "refunds", "1", "2").stdout
    assert "~ node denied: output" in d and "+  - {id: denied, type: end, output: \"'no refund'\"}" in d


def test_validate_reports_every_problem_with_file_line_node_and_fix(spec_file) -> None:
    path = spec_file(FLOW.replace("size(input_as_text) > 3", "size(input_as_text) > '3'").replace(
        "to: denied}", "to: denid}"))
    r = keel("workflows", "validate", str(path))
    clean_failure(r, f"{path}:14: edge to unknown node 'denid' (dangling edge)")
    assert "did you mean 'denied'?" in r.stderr
    r = keel("workflows", "validate", str(spec_file(FLOW.replace("size(input_as_text) > 3",
                                                                 "size(input_as_text) > '3'"))))
    clean_failure(r, "wf.yaml:6 (node shape): CEL error in fields.priority")
    clean_failure(keel("workflows", "publish", str(spec_file("name: [\n"))), "malformed YAML/JSON")
    clean_failure(keel("run", "nope", "--input", "x"), "no published workflow named 'nope'")
    clean_failure(keel("run", str(spec_file(FLOW)), "--input-json", "{nope"), "not valid JSON")


def test_run_json_approvals_and_runs_show(spec_file) -> None:
    path = spec_file(FLOW)
    r = keel("run", str(path), "--input", "A-1234", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout is exactly one JSON document
    assert doc["status"] == "waiting" and doc["output"] is None
    assert "ok   shape (transform)" in r.stderr and "wait ask" in r.stderr
    listed = json.loads(keel("approvals", "list", "--json").stdout)
    assert [a["id"] for a in listed] == [doc["approval_id"]] and listed[0]["message"] == "Refund order A-1234?"
    r = keel("approvals", "approve", doc["approval_id"][:8], "--by", "lin", "--json")
    assert r.returncode == 0, r.stderr
    import getpass

    # The CLI is the local operator: the decision records the OS user, --by only as a note.
    assert json.loads(r.stdout) == {"run_id": doc["run_id"], "status": "succeeded",
                                    "output": {"refunded": "A-1234", "by": f"cli:{getpass.getuser()} as lin"}}
    clean_failure(keel("approvals", "approve", doc["approval_id"]), "already answered")
    assert keel("approvals", "list").stdout.strip() == "no pending approvals"
    runs = keel("runs", "list").stdout
    assert doc["run_id"] in runs and "succeeded" in runs
    show = keel("runs", "show", doc["run_id"][:10]).stdout
    assert "workflow refunds" in show and "├── node start" in show and "node ask" in show and "-> approved" in show
    clean_failure(keel("runs", "show", "zzz"), "no run with id 'zzz'")


def test_run_prints_the_output(spec_file) -> None:
    path = spec_file("""
    name: echo
    nodes:
      - {id: start, type: start}
      - {id: done, type: end}
    edges:
      - {from: start, to: done}
    """)
    r = keel("run", str(path), "--input", "hello there")
    assert r.returncode == 0 and r.stdout.strip().endswith("hello there")


def test_committed_schema_is_current() -> None:
    committed = json.loads((REPO / "docs" / "workflow.schema.json").read_text())
    assert committed == spec_json_schema(), "run `keel workflows schema > docs/workflow.schema.json`"


def test_runs_show_prints_model_calls_with_tokens(spec_file) -> None:
    path = spec_file("""
    name: echo-agent
    nodes:
      - {id: start, type: start}
      - {id: bot, type: agent, model: "scripted:echo", instructions: Repeat after me.}
      - {id: done, type: end}
    edges:
      - {from: start, to: bot}
      - {from: bot, to: done}
    """)
    doc = json.loads(keel("run", str(path), "--input", "three little words", "--json").stdout)
    assert doc["status"] == "succeeded" and doc["output"] == "three little words"
    show = keel("runs", "show", doc["run_id"]).stdout
    assert "node bot" in show and "chat scripted:echo" in show and "tokens in 6 out 3" in show
    spans = json.loads(keel("runs", "show", doc["run_id"], "--json").stdout)["spans"]
    [model] = [s for s in spans if s["kind"] == "model"]
    assert model["attributes"]["gen_ai.usage.output_tokens"] == 3


def test_approve_exits_non_zero_with_the_error_when_the_resumed_run_fails(spec_file) -> None:
    """Issue 14: `keel approvals approve` exited 0 although the run it continued failed."""
    path = spec_file("""
    name: fragile
    nodes:
      - {id: start, type: start}
      - {id: ask, type: human_approval, message: "Go?"}
      - {id: parse, type: transform, fields: {n: "int(input_as_text)"}}
      - {id: done, type: end}
      - {id: denied, type: end, output: "'no'"}
    edges:
      - {from: start, to: ask}
      - {from: ask, port: approved, to: parse}
      - {from: ask, port: rejected, to: denied}
      - {from: parse, to: done}
    """)
    doc = json.loads(keel("run", str(path), "--input", "not a number", "--json").stdout)
    r = keel("approvals", "approve", doc["approval_id"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert f"run {doc['run_id']}: failed" in r.stdout
    assert "error: " in r.stderr and "parse" in r.stdout + r.stderr
    assert f"keel runs show {doc['run_id']}" in r.stderr
    r = keel("approvals", "list", "--all", "--json")  # the decision itself was recorded
    assert json.loads(r.stdout)[0]["status"] == "approved"
