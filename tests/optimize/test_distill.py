"""keel distill export / check end to end: a real eval run of scripted models in a real SQLite store,
then the real CLI in a subprocess; every line checked against OpenAI's formats; bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.optimize.finetune_format import check_chat_line, check_preference_line
from tests.optimize.graded_task import run_eval_file, write_eval

ROOT = Path(__file__).resolve().parents[2]


def keel(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}, cwd=cwd)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_export_writes_valid_chat_and_preference_sets_split_by_input(tmp_path, keel_home):
    run_id = run_eval_file(write_eval(tmp_path))
    out = keel("distill", "export", "--out", str(tmp_path / "set"), "--val-fraction", "0.25")
    assert out.returncode == 0, out.stderr
    chat = lines(tmp_path / "set/chat.train.jsonl") + lines(tmp_path / "set/chat.validation.jsonl")
    pref = lines(tmp_path / "set/preference.train.jsonl") + lines(tmp_path / "set/preference.validation.jsonl")
    # 16 items: the strong model passes all 16, the weak one the 8 easy ones with the same answer (deduplicated)
    assert len(chat) == 16
    assert all(check_chat_line(x) is None for x in chat)
    assert chat[0]["messages"][0] == {"role": "system", "content": "Answer with the number only."}
    # a pair for each hard item: the strong model's right sum against the weak one's wrong sum
    assert len(pref) == 8
    assert all(check_preference_line(x) is None for x in pref)
    for x in pref:
        a, b = (int(n) for n in x["input"]["messages"][-1]["content"][8:-1].split(" + "))
        assert x["preferred_output"][0]["content"] == str(a + b)
        assert x["non_preferred_output"][0]["content"] == str(a + b + 1)
    # one input never on both sides of the split
    train = {json.dumps(x["messages"][:-1]) for x in lines(tmp_path / "set/chat.train.jsonl")}
    val = {json.dumps(x["messages"][:-1]) for x in lines(tmp_path / "set/chat.validation.jsonl")}
    assert train and val and not train & val
    manifest = json.loads((tmp_path / "set/manifest.json").read_text())
    assert manifest["calls"] == 32 and manifest["preference"]["train"] + manifest["preference"]["validation"] == 8
    for f in ("chat.train.jsonl", "preference.train.jsonl"):
        check = keel("distill", "check", str(tmp_path / "set" / f))
        assert check.returncode == 0 and "valid" in check.stdout, check.stderr
    # filters: one model, a grade threshold on a named grader, a run
    out = keel("distill", "export", "--out", str(tmp_path / "weak"), "--model", "scripted:g-weak",
               "--grader", "exact", "--min-score", "1", "--run", run_id[:12])
    assert out.returncode == 0, out.stderr
    weak = lines(tmp_path / "weak/chat.train.jsonl") + (
        lines(tmp_path / "weak/chat.validation.jsonl") if (tmp_path / "weak/chat.validation.jsonl").exists() else [])
    assert len(weak) == 8 and not (tmp_path / "weak/preference.train.jsonl").exists()


def test_scrub_pii_replaces_what_the_guardrail_detectors_find(tmp_path, keel_home):
    run_eval_file(write_eval(tmp_path, pii=True))
    out = keel("distill", "export", "--out", str(tmp_path / "set"), "--scrub-pii", "--val-fraction", "0")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "set/chat.train.jsonl").read_text()
    assert "jane.doe@example.com" not in text and "[EMAIL]" in text
    assert "PII replaced: " in out.stdout
    raw = keel("distill", "export", "--out", str(tmp_path / "raw"), "--val-fraction", "0")
    assert "jane.doe@example.com" in (tmp_path / "raw/chat.train.jsonl").read_text(), raw.stderr


def test_a_filter_that_matches_nothing_is_one_clear_error_and_writes_nothing(tmp_path, keel_home):
    out = keel("distill", "export", "--out", str(tmp_path / "set"))
    assert out.returncode == 2 and "no eval runs" in out.stderr and "Traceback" not in out.stderr
    run_eval_file(write_eval(tmp_path))
    out = keel("distill", "export", "--out", str(tmp_path / "set"), "--model", "openai:gpt-5")
    assert out.returncode == 2, out.stderr
    assert "no graded model calls match the filters" in out.stderr and "fix:" in out.stderr
    assert "Traceback" not in out.stderr
    out = keel("distill", "export", "--out", str(tmp_path / "set"), "--min-score", "2")
    assert out.returncode == 2 and "none graded >= 2" in out.stderr, out.stderr
    out = keel("distill", "export", "--out", str(tmp_path / "set"), "--since", "yesterday-ish")
    assert out.returncode == 2 and "--since 'yesterday-ish' is not a time" in out.stderr, out.stderr
    assert not (tmp_path / "set").exists() or not any((tmp_path / "set").iterdir())


def test_an_export_that_would_break_the_format_writes_nothing(tmp_path, keel_home, monkeypatch):
    from keel.optimize import distill
    from keel.optimize.distill import DistillError, ExportFilter, export
    from keel.store import open_store

    run_eval_file(write_eval(tmp_path))
    out = tmp_path / "set"
    export(open_store(), out, filt=ExportFilter())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # an answer that is empty text breaks the chat format: the whole export stops, old files stay as they were
    real = distill.chat_line

    def broken(messages, output, tools):
        line = real(messages, output, tools)
        if "What is 4 + 4?" in json.dumps(line):
            line["messages"][-1]["content"] = ""
        return line

    monkeypatch.setattr(distill, "chat_line", broken)
    with pytest.raises(DistillError) as e:
        export(open_store(), out, filt=ExportFilter())
    assert "breaks OpenAI's chat fine-tuning format" in e.value.message and "nothing was written" in e.value.message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(("content", "problem"), [
    ('{"messages": [{"role": "user", "content": "hi"}]}', "the last message must be the assistant's"),
    ('{"messages": [{"role": "robot", "content": "hi"}]}', "role must be one of"),
    ('{"messages": "hi"}', "must be a non-empty list of messages"),
    ('not json', "not valid JSON"),
    ('{"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": '
     '[{"role": "assistant", "content": "a"}], "non_preferred_output": [{"role": "assistant", "content": "a"}]}',
     "are the same text"),
])
def test_check_names_the_line_that_breaks_the_format(tmp_path, keel_home, content, problem):
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'
    f = tmp_path / "set.jsonl"
    if content.startswith('{"input"'):
        good = ('{"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": [{"role": '
                '"assistant", "content": "a"}], "non_preferred_output": [{"role": "assistant", "content": "b"}]}')
    f.write_text(good + "\n" + content + "\n")
    out = keel("distill", "check", str(f))
    assert out.returncode == 2, out.stdout
    assert f"{f}:2:" in out.stderr and problem in out.stderr and "Traceback" not in out.stderr


def test_tool_calls_are_exported_in_chat_completions_shape():
    from keel.models import Message, Tool, ToolCall
    from keel.optimize.finetune_format import chat_line

    tool = Tool(name="add", parameters={"type": "object", "properties": {"a": {"type": "integer"}}})
    out = Message.assistant("", (ToolCall(id="c1", name="add", arguments={"a": 1}),))
    line = chat_line([Message.user("add one")], out, (tool,))
    assert check_chat_line(line) is None
    assert line["tools"][0]["function"]["name"] == "add" and line["parallel_tool_calls"] is False
    assert line["messages"][-1]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    line["messages"][-1]["tool_calls"][0]["function"]["name"] = "subtract"
    assert "not in tools" in check_chat_line(line)


ADDER = """name: adder
nodes:
  - {{id: start, type: start}}
  - {{id: add, type: agent, model: '{model}', instructions: 'Answer with the number only.'}}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: add}}
  - {{from: add, to: done}}
"""


def test_agent_calls_of_graded_workflow_runs_export_with_their_messages(tmp_path, keel_home):
    """Two versions of a workflow (the strong model, then the weak one) run as eval targets: the
    Agent node's calls are stored with their messages as sent, and export by workflow, node, model,
    time and grade, as chat lines and as preference pairs."""
    from keel.store import open_store
    from keel.workflows import publish

    store = open_store()
    for version, model in ((1, "scripted:g-strong"), (2, "scripted:g-weak")):
        (tmp_path / "adder.yaml").write_text(ADDER.format(model=model))
        assert publish(tmp_path / "adder.yaml", store=store).version == version
    ev = write_eval(tmp_path)
    text = ev.read_text()
    ev.write_text(text[:text.index("matrix:")] + "targets:\n"
                  "  - {type: workflow, workflow: adder@1, input: '{{item.q}}'}\n"
                  "  - {type: workflow, workflow: adder@2, input: '{{item.q}}'}\n")
    run_id = run_eval_file(ev)
    stored = store.query("SELECT workflow, node_id, model, requested, messages FROM model_call_messages")
    assert len(stored) == 32 and {r["node_id"] for r in stored} == {"add"}
    assert {r["model"] for r in stored} == {"scripted:g-strong", "scripted:g-weak"}
    first = json.loads(stored[0]["messages"])
    assert first[0] == {"role": "system", "content": "Answer with the number only."} and first[-1]["role"] == "user"

    out = keel("distill", "export", "--out", str(tmp_path / "wf"), "--workflow", "adder", "--node", "add",
               "--val-fraction", "0")
    assert out.returncode == 0, out.stderr
    chat, pref = lines(tmp_path / "wf/chat.train.jsonl"), lines(tmp_path / "wf/preference.train.jsonl")
    assert len(chat) == 16 and all(check_chat_line(x) is None for x in chat)  # easy answers agree: one line each
    assert all(x["messages"][0]["content"] == "Answer with the number only." for x in chat)
    for x in chat:
        a, b = (int(n) for n in x["messages"][-2]["content"][8:-1].split(" + "))
        assert x["messages"][-1] == {"role": "assistant", "content": str(a + b)}
    assert len(pref) == 8 and all(check_preference_line(x) is None for x in pref)
    assert all(int(x["preferred_output"][0]["content"]) + 1 == int(x["non_preferred_output"][0]["content"])
               for x in pref)
    # the weak model's passing calls only; and the calls of one eval target (the strong version)
    out = keel("distill", "export", "--out", str(tmp_path / "weak"), "--workflow", "adder", "--model",
               "scripted:g-weak", "--val-fraction", "0")
    assert out.returncode == 0, out.stderr
    assert len(lines(tmp_path / "weak/chat.train.jsonl")) == 8
    out = keel("distill", "export", "--out", str(tmp_path / "v1"), "--workflow", "adder", "--target", "adder@1",
               "--run", run_id[:12], "--val-fraction", "0")
    assert out.returncode == 0, out.stderr
    assert len(lines(tmp_path / "v1/chat.train.jsonl")) == 16 and not (tmp_path / "v1/preference.train.jsonl").exists()
    # filters that match nothing: one clear error each, nothing written
    for args, message in ((["--node", "ghost"], "no graded model calls match the filters (nodes=('ghost',))"),
                          (["--since", "2099-01-01"], "no graded model calls match"),
                          (["--workflow", "adder", "--min-score", "2"], "none graded >= 2")):
        out = keel("distill", "export", "--out", str(tmp_path / "none"), *args)
        assert out.returncode != 0 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert not (tmp_path / "none").exists()


def test_keel_call_messages_off_stores_no_messages_and_the_call_still_records(tmp_path, keel_home, monkeypatch):
    import asyncio

    from keel.store import open_store
    from keel.workflows import arun
    from tests.optimize.graded_task import install

    install()
    (tmp_path / "adder.yaml").write_text(ADDER.format(model="scripted:g-strong"))
    store = open_store()
    on = asyncio.run(arun(tmp_path / "adder.yaml", "What is 2 + 2?", store=store))
    monkeypatch.setenv("KEEL_CALL_MESSAGES", "off")
    off = asyncio.run(arun(tmp_path / "adder.yaml", "What is 3 + 3?", store=store))
    assert on.status == off.status == "succeeded"
    assert [r["run_id"] for r in store.query("SELECT run_id FROM model_call_messages")] == [on.run_id]
    traces = {r["id"]: r["trace_id"] for r in store.query("SELECT id, trace_id FROM workflow_runs")}
    for run in (on, off):  # cost and timing are recorded either way
        assert store.query("SELECT COUNT(*) AS n FROM model_calls WHERE trace_id = ?", (traces[run.run_id],))[0]["n"] == 1


CHECKED = """name: checked
nodes:
  - {id: start, type: start}
  - {id: add, type: agent, model: 'scripted:g-strong', instructions: 'Answer with the number only.'}
  - {id: check, type: agent, model: 'scripted:g-broken', instructions: 'Check the sum.'}
  - {id: done, type: end}
edges:
  - {from: start, to: add}
  - {from: add, to: check}
  - {from: check, to: done}
"""


def test_ungraded_workflow_runs_export_by_status_workflow_and_time(tmp_path, keel_home):
    """Runs no eval graded (production traffic): --ungraded exports every Agent-node call of the
    runs that succeeded (or --status), one chat line per distinct input and answer, no pairs."""
    import asyncio

    from keel.models.scripted import get_script
    from keel.store import open_store
    from keel.workflows import arun
    from tests.optimize.graded_task import install

    install()

    def broken(request):
        from keel.errors import ProviderHTTPError

        raise ProviderHTTPError("the checker refused the request", status_code=400)

    get_script("g-broken").default = broken
    (tmp_path / "adder.yaml").write_text(ADDER.format(model="scripted:g-strong"))
    (tmp_path / "checked.yaml").write_text(CHECKED)
    store = open_store()
    ok = [asyncio.run(arun(tmp_path / "adder.yaml", f"What is {a} + {b}?", store=store))
          for a, b in ((1, 2), (3, 4), (1, 2))]
    bad = asyncio.run(arun(tmp_path / "checked.yaml", "What is 5 + 5?", store=store))
    assert [r.status for r in ok] == ["succeeded"] * 3 and bad.status == "failed"

    graded = keel("distill", "export", "--out", str(tmp_path / "g"), "--workflow", "adder")
    assert graded.returncode != 0 and "no eval runs" in graded.stderr  # nothing graded them

    out = keel("distill", "export", "--out", str(tmp_path / "u"), "--ungraded", "--val-fraction", "0")
    assert out.returncode == 0, out.stderr
    assert "3 workflow-run calls read" in out.stdout
    chat = lines(tmp_path / "u/chat.train.jsonl")
    assert all(check_chat_line(x) is None for x in chat)
    assert [(x["messages"][-2]["content"], x["messages"][-1]["content"]) for x in chat] == [
        ("What is 1 + 2?", "3"), ("What is 3 + 4?", "7")]  # the repeated question once; not the failed run
    assert not (tmp_path / "u/preference.train.jsonl").exists()
    assert json.loads((tmp_path / "u/manifest.json").read_text())["filters"]["ungraded"] is True

    out = keel("distill", "export", "--out", str(tmp_path / "f"), "--ungraded", "--status", "failed",
               "--workflow", "checked", "--node", "add", "--val-fraction", "0")
    assert out.returncode == 0, out.stderr
    assert [x["messages"][-1]["content"] for x in lines(tmp_path / "f/chat.train.jsonl")] == ["10"]

    out = keel("distill", "export", "--out", str(tmp_path / "none"), "--ungraded", "--workflow", "checked")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "no Agent-node calls of workflow runs match the filters (workflows=('checked',), ungraded=True)" in out.stderr
    from keel.optimize.distill import DistillError, ExportFilter, export

    for filt, message in ((ExportFilter(ungraded=True, since=4e9), "no Agent-node calls of workflow runs match"),
                          (ExportFilter(ungraded=True, min_score=0.5),
                           "--ungraded takes calls whether an eval graded them or not, so --min-score"),
                          (ExportFilter(ungraded=True, statuses=("done",)), "--status 'done' is not a run status"),
                          (ExportFilter(statuses=("failed",)), "--status filters the workflow runs of an --ungraded")):
        with pytest.raises(DistillError, match=message):
            export(store, tmp_path / "none", filt=filt)
    assert not (tmp_path / "none").exists()
