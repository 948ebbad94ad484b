"""A workflow as an eval target, and trace grading, on real workflow runs (scripted models) in a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keel.evals import iter_results, parse_eval, resume_eval, run_eval
from keel.evals.errors import EvalSpecError
from keel.evals.traces import load_trace
from keel.models.base import ModelRequest
from keel.store import open_store
from keel.testing import scripted
from keel.workflows import Runs, publish
from tests.workflows import tools_for_tests

AGENT = """
name: support
nodes:
  - {id: start, type: start}
  - id: triage
    type: agent
    model: scripted:triage
    instructions: Classify the message.
    output_schema:
      type: object
      properties: {kind: {type: string, enum: [refund, other]}, order_id: {type: integer}}
      required: [kind, order_id]
      additionalProperties: false
  - id: route
    type: if_else
    branches: [{name: refund, condition: 'input.output_parsed.kind == "refund"'}]
  - id: act
    type: agent
    model: scripted:clerk
    instructions: Refund the order if it was delivered.
    input: "'Order ' + string(nodes.triage.output_parsed.order_id)"
    tools: ["tests.workflows.tools_for_tests:lookup_order", "tests.workflows.tools_for_tests:refund"]
    max_turns: 4
  - {id: done, type: end, output: "{'answer': input.output_text}"}
  - {id: other, type: end, output: "{'answer': 'not a refund'}"}
edges:
  - {from: start, to: triage}
  - {from: triage, to: route}
  - {from: route, port: refund, to: act}
  - {from: route, port: else, to: other}
  - {from: act, to: done}
"""


@pytest.fixture
def store(keel_home: Path):
    s = open_store(keel_home)
    yield s
    s.close()


@pytest.fixture
def published(store, tmp_path: Path) -> Path:
    (tmp_path / "support.yaml").write_text(AGENT)
    assert publish(tmp_path / "support.yaml", store=store).version == 1
    data = tmp_path / "cases.jsonl"
    data.write_text(
        json.dumps({"input": "Refund order 7 please", "answer": "Refunded 42.5 on order 7."}) + "\n"
        + json.dumps({"input": "Where is my parcel?", "answer": "not a refund"}) + "\n")
    return data


def _judge(request: ModelRequest) -> str:
    """A judge for model-call steps: a step that called a tool is 'acted', a text answer 'answered'."""
    text = request.messages[-1].content
    return json.dumps({"label": "acted" if "lookup_order" in text or "refund" in text.split("|")[0] else "answered"})


def _script(triage, clerk) -> None:
    triage.reply(parsed={"kind": "refund", "order_id": 7})
    clerk.reply(tool_calls=[("lookup_order", {"order_id": 7})])
    clerk.reply(tool_calls=[("refund", {"order_id": 7, "amount": 42.5})])
    clerk.reply("Refunded 42.5 on order 7.")
    triage.reply(parsed={"kind": "other", "order_id": 0})


def _spec(data: Path, **extra) -> dict:
    return {
        "name": "support-evals", "dataset": str(data), "concurrency": 1,
        "targets": [{"type": "workflow", "workflow": "support@1"}],
        "graders": [
            {"type": "string_check", "name": "answer", "operation": "eq",
             "input": "{{sample.output_json.answer}}", "reference": "{{item.answer}}"},
            {"type": "trace_check", "name": "refund_flow", "status": "succeeded",
             "tools_called": ["lookup_order", "refund"], "tool_order": ["lookup_order", "refund"],
             "node_order": ["triage", "act"], "model_calls": {"max": 4}, "turns": {"max": 3},
             "total_tokens": {"min": 1}, "cost_usd": {"max": 0}},
            {"type": "trace_judge", "name": "clerk_steps",
             "select": {"kind": "model", "node": ["act"]}, "if_no_steps": "pass",
             "judge": {"type": "label_model", "model": "scripted:judge", "reasoning": False,
                       "input": [{"role": "user", "content": "{{step.output_json}}|{{step.output_text}}"}],
                       "labels": ["acted", "answered", "bad"], "passing_labels": ["acted", "answered"]}},
        ],
        **extra,
    }


async def test_workflow_target_grades_output_and_trace(store, published) -> None:
    tools_for_tests.CALLS.clear()
    with scripted("triage") as triage, scripted("clerk") as clerk, scripted("judge") as judge:
        _script(triage, clerk)
        judge.default = _judge
        summary = await run_eval(store, parse_eval(_spec(published)))
    [target] = summary.targets
    assert target.target == "support@1" and target.items == 2 and target.errored == 0
    first, second = list(iter_results(store, summary.run_id))
    # the output comes from the run; the run id is stored with the result
    assert first.sample["output_json"] == {"answer": "Refunded 42.5 on order 7."}
    run = Runs(store).get(first.workflow_run_id)
    assert first.sample["workflow_run_id"] == run.id and run.workflow == "support" and run.version == 1
    grades = {g["name"]: g for g in first.grades}
    assert grades["answer"]["score"] == 1.0
    assert grades["refund_flow"]["score"] == 1.0 and grades["refund_flow"]["passed"] is True
    assert grades["refund_flow"]["reasoning"] == "all 8 checks hold"
    judged = grades["clerk_steps"]
    assert judged["parts"] == {"act/model#0": 1.0, "act/model#1": 1.0, "act/model#2": 1.0}
    assert judged["passed"] is True and len(judge.calls) == 3
    assert "lookup_order" in judge.calls[0].messages[-1].content  # the step's tool calls reach the judge
    assert judge.calls[2].messages[-1].content.endswith("|Refunded 42.5 on order 7.")
    # the second item took the other branch: the trajectory checks say what did not hold
    grades = {g["name"]: g for g in second.grades}
    assert grades["answer"]["passed"] is True
    check = grades["refund_flow"]
    assert check["passed"] is False and check["score"] == pytest.approx(5 / 8)
    assert check["reasoning"] == ("not called: lookup_order, refund (called []); tools not in order "
                                  "['lookup_order', 'refund'] (called []); nodes not in order ['triage', 'act'] "
                                  "(ran ['start', 'triage', 'route', 'other'])")
    assert grades["clerk_steps"]["reasoning"] == "no matching step" and grades["clerk_steps"]["passed"] is True
    assert not second.passed and first.passed


async def test_trace_of_a_run_has_steps_tools_and_totals(store, published) -> None:
    with scripted("triage") as triage, scripted("clerk") as clerk:
        _script(triage, clerk)
        triage._queue.pop()  # only the first item runs here
        from keel.workflows import arun

        result = await arun("support", "Refund order 7", version=1, store=store)
    trace = load_trace(store, result.run_id)
    assert trace.nodes == ["start", "triage", "route", "act", "done"]
    assert trace.tools == ["lookup_order", "refund"]
    assert [s.label for s in trace.steps if s.kind != "node"] == [
        "triage/model#0", "act/model#0", "act/lookup_order", "act/model#1", "act/refund", "act/model#2"]
    assert trace.turns == 3 and trace.cost_usd == 0.0 and trace.input_tokens > 0
    refund = next(s for s in trace.steps if s.tool == "refund")
    assert refund.arguments == {"order_id": 7, "amount": 42.5} and refund.output_text == "refunded 42.5 on order 7"
    act = next(s for s in trace.steps if s.node_id == "act" and s.kind == "node")
    assert act.input == json.dumps({"kind": "refund", "order_id": 7}) or act.input == {"kind": "refund", "order_id": 7}


async def test_resumed_eval_reuses_finished_workflow_runs(store, published) -> None:
    with scripted("triage") as triage, scripted("clerk") as clerk, scripted("judge") as judge:
        _script(triage, clerk)
        judge.default = _judge
        first = await run_eval(store, parse_eval(_spec(published)))
    runs_before = store.query("SELECT COUNT(*) AS n FROM workflow_runs")[0]["n"]
    # a crash after the workflow runs finished but before the results were stored
    store.execute("DELETE FROM eval_results WHERE run_id = ?", (first.run_id,))
    with scripted("triage"), scripted("clerk"), scripted("judge") as judge:  # no replies queued
        judge.default = _judge
        again = await resume_eval(store, first.run_id)
    assert store.query("SELECT COUNT(*) AS n FROM workflow_runs")[0]["n"] == runs_before
    assert [t.model_dump() for t in again.targets] == [t.model_dump() for t in first.targets]


async def test_workflow_target_errors_are_clear(store, published) -> None:
    with pytest.raises(EvalSpecError, match=r"'support' is not pinned: write NAME@VERSION, e.g. support@1"):
        parse_eval({**_spec(published), "targets": [{"type": "workflow", "workflow": "support"}]})
    with pytest.raises(EvalSpecError, match=r"target support@9: .*version 9"):
        await run_eval(store, parse_eval({**_spec(published), "targets": [{"type": "workflow",
                                                                             "workflow": "support@9"}]}))
    with pytest.raises(EvalSpecError, match="give at least one check"):
        parse_eval({**_spec(published), "graders": [{"type": "trace_check", "name": "x"}]})
    with pytest.raises(EvalSpecError, match="unknown field 'tools_caled'"):
        parse_eval({**_spec(published), "graders": [{"type": "trace_check", "name": "x", "tools_caled": ["a"]}]})
    # a failing run is the item's error, with the run id; trace graders on a sample without a run say so
    with scripted("triage") as triage:
        triage.reply(parsed={"kind": "refund", "order_id": 7})
        triage.reply(parsed={"kind": "other", "order_id": 0})
        with scripted("clerk") as clerk:
            for _ in range(4):
                clerk.reply(tool_calls=[("lookup_order", {"order_id": 7})])
            summary = await run_eval(store, parse_eval({**_spec(published), "graders": _spec(published)["graders"][:2]}))
    first, second = list(iter_results(store, summary.run_id))
    assert first.status == "error" and first.error.startswith(f"workflow run {first.workflow_run_id} failed: ")
    assert "max_turns=4" in first.error and second.status == "ok"
    precomputed = parse_eval({"name": "p", "dataset": str(published), "targets": [{"type": "precomputed",
                              "field": "answer"}], "graders": [_spec(published)["graders"][1]]})
    summary = await run_eval(store, precomputed)
    [result, _] = list(iter_results(store, summary.run_id))
    assert result.error == ("refund_flow: {{sample.workflow_run_id}}: sample has no field 'workflow_run_id' "
                            "(fields: output_json, output_text)")


SCREEN = """
name: screen
nodes:
  - {id: start, type: start}
  - {id: guard, type: guardrails, text: input_as_text, checks: [pii, jailbreak]}
  - {id: ok, type: end, output: "'ok: ' + input.output_text"}
  - {id: blocked, type: end, output: "'blocked: ' + input.output_parsed.reason"}
edges:
  - {from: start, to: guard}
  - {from: guard, port: pass, to: ok}
  - {from: guard, port: fail, to: blocked}
"""


async def test_guardrail_outcomes_and_per_step_score_judges(store, tmp_path) -> None:
    (tmp_path / "screen.yaml").write_text(SCREEN)
    publish(tmp_path / "screen.yaml", store=store)
    data = tmp_path / "screen.jsonl"
    data.write_text(json.dumps({"input": "Where is my order 7?", "expect": "pass"}) + "\n"
                    + json.dumps({"input": "My card is 4111 1111 1111 1111", "expect": "fail"}) + "\n")
    spec = parse_eval({
        "name": "screening", "dataset": str(data), "targets": [{"type": "workflow", "workflow": "screen@1"}],
        "graders": [
            {"type": "trace_check", "name": "lets_questions_through", "guardrails": {"guard": "pass"},
             "nodes_not_visited": ["blocked"], "tool_sequence": [], "model_calls": {"max": 0}, "cost_usd": {"max": 0}},
            {"type": "trace_check", "name": "any_guard_blocks", "guardrails": {"*": "fail"}},
            # a per-step judge over one node step's input and output (a score_model this time)
            {"type": "trace_judge", "name": "guard_step", "select": {"kind": "node", "node_type": ["guardrails"]},
             "judge": {"type": "score_model", "model": "scripted:scorer", "range": [0, 10], "pass_threshold": 5,
                       "input": [{"role": "user", "content": "in={{step.input}} port={{step.port}} "
                                                             "out={{step.output_json.passed}}"}]}},
        ],
    })

    def score(request: ModelRequest) -> str:
        text = request.messages[-1].content
        return json.dumps({"reasoning": "ok", "result": 9 if "port=pass" in text else 2})

    with scripted("scorer") as scorer:
        scorer.default = score
        summary = await run_eval(store, spec)
    first, second = list(iter_results(store, summary.run_id))
    g1 = {g["name"]: g for g in first.grades}
    g2 = {g["name"]: g for g in second.grades}
    assert first.sample["output_text"] == "ok: Where is my order 7?"
    assert g1["lets_questions_through"]["passed"] is True and g1["any_guard_blocks"]["passed"] is False
    assert g1["any_guard_blocks"]["reasoning"] == "guardrails guard: pass, expected fail"
    assert g2["lets_questions_through"]["parts"] == {"guardrails": 0.0, "nodes_not_visited": 0.0,
                                                     "tool_sequence": 1.0, "model_calls": 1.0, "cost_usd": 1.0}
    assert g2["lets_questions_through"]["reasoning"] == "nodes run: blocked; guardrails guard: fail, expected pass"
    assert g2["any_guard_blocks"]["passed"] is True
    # the judge saw the step's input and port; each step's score is kept
    assert g1["guard_step"]["parts"] == {"guard": 9.0} and g1["guard_step"]["passed"] is True
    assert g2["guard_step"]["parts"] == {"guard": 2.0} and g2["guard_step"]["passed"] is False
    assert "in=Where is my order 7? port=pass out=true" in scorer.calls[0].messages[-1].content or \
        "in=Where is my order 7? port=pass out=true" in scorer.calls[1].messages[-1].content
    assert [t.errored for t in summary.targets] == [0]
