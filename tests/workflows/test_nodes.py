"""Each node type, driven through real runs on a real SQLite store; Agent nodes use ``scripted:NAME``."""

from __future__ import annotations

import pytest

from keel.errors import ProviderHTTPError
from keel.testing import scripted
from keel.workflows import ManualClock, Runs, Spans, aapprove, arecover, arun
from tests.workflows import tools_for_tests


async def test_start_transform_set_state_if_else_while_end_and_note(spec_file, store) -> None:
    path = spec_file("""
    name: loop
    nodes:
      - {id: start, type: start, state: {count: 0, seen: []}}
      - {id: note, type: note, text: "counts to three"}
      - {id: loop, type: while, condition: "state.count < 3"}
      - id: inc
        type: set_state
        assign: {count: "state.count + 1", seen: "state.seen + [state.count]"}
      - id: shape
        type: transform
        fields: {text: "input_as_text.upperAscii()", n: "state.count", seen: "state.seen",
                 first: "nodes.start.output_text"}
      - id: route
        type: if_else
        branches:
          - {name: small, condition: "input.output_parsed.n < 3"}
          - {name: three, condition: "input.output_parsed.n == 3 && size(state.seen) == 3"}
      - {id: end_small, type: end, output: "'small'"}
      - {id: end_three, type: end}
    edges:
      - {from: start, to: loop}
      - {from: loop, port: body, to: inc}
      - {from: inc, to: loop}
      - {from: loop, to: shape}
      - {from: shape, to: route}
      - {from: route, port: small, to: end_small}
      - {from: route, port: three, to: end_three}
      - {from: route, port: else, to: end_small}
    """)
    result = await arun(path, "hello", store=store)
    assert result.status == "succeeded", result.error
    assert result.output == {"text": "HELLO", "n": 3, "seen": [0, 1, 2], "first": "hello"}
    steps = Runs(store).steps(result.run_id)
    assert [s.node_id for s in steps] == ["start"] + ["loop", "inc"] * 3 + ["loop", "shape", "route", "end_three"]
    assert steps[-2].port == "three"


async def test_transform_expression_and_json_input(spec_file, store) -> None:
    path = spec_file("""
    name: t
    nodes:
      - id: start
        type: start
        input_schema: {type: object, properties: {items: {type: array}}, required: [items]}
      - {id: total, type: transform, expression: "workflow.input.items.map(i, i.price * i.qty)"}
      - {id: done, type: end, output: "{'lines': input.output_parsed, 'n': size(input.output_parsed)}"}
    edges:
      - {from: start, to: total}
      - {from: total, to: done}
    """)
    items = {"items": [{"price": 2, "qty": 3}, {"price": 5, "qty": 1}]}
    result = await arun(path, items, store=store)
    assert result.output == {"lines": [6, 5], "n": 2}
    from keel.workflows import WorkflowError

    with pytest.raises(WorkflowError, match="input_schema"):
        await arun(path, {"nope": 1}, store=store)


async def test_while_stops_at_max_iterations_and_error_stops_the_run_cleanly(spec_file, store) -> None:
    path = spec_file("""
    name: forever
    nodes:
      - {id: start, type: start}
      - {id: loop, type: while, condition: "true", max_iterations: 5}
      - {id: body, type: transform, expression: "1"}
      - {id: done, type: end}
    edges:
      - {from: start, to: loop}
      - {from: loop, port: body, to: body}
      - {from: body, to: loop}
      - {from: loop, to: done}
    """)
    result = await arun(path, "x", store=store)
    assert result.status == "failed" and "max_iterations=5" in result.error


async def test_cel_runtime_error_follows_the_error_edge(spec_file, store) -> None:
    path = spec_file("""
    name: errs
    nodes:
      - {id: start, type: start}
      - {id: pick, type: transform, expression: "workflow.input.missing"}
      - {id: oops, type: end, output: "'recovered: ' + input.output_parsed.type"}
      - {id: done, type: end}
    edges:
      - {from: start, to: pick}
      - {from: pick, to: done}
      - {from: pick, port: error, to: oops}
    """)
    result = await arun(path, {"a": 1}, store=store)
    assert result.status == "succeeded" and result.output == "recovered: cel"


AGENT = """
name: support
nodes:
  - {id: start, type: start, state: {customer: Ada}}
  - id: triage
    type: agent
    model: scripted:triage
    instructions: "You help {{ state.customer }}. Classify the message."
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
  - {id: done, type: end, output: "{'answer': input.output_text, 'kind': nodes.triage.output_parsed.kind}"}
  - {id: other, type: end}
edges:
  - {from: start, to: triage}
  - {from: triage, to: route}
  - {from: route, port: refund, to: act}
  - {from: route, port: else, to: other}
  - {from: act, to: done}
"""


async def test_agent_with_structured_output_tools_and_chat_history(spec_file, store) -> None:
    tools_for_tests.CALLS.clear()
    with scripted("triage") as triage, scripted("clerk") as clerk:
        triage.reply(parsed={"kind": "refund", "order_id": 7})
        clerk.reply(tool_calls=[("lookup_order", {"order_id": 7})])
        clerk.reply(tool_calls=[("refund", {"order_id": 7, "amount": 42.5})])
        clerk.reply("Refunded 42.5 on order 7.")
        result = await arun(spec_file(AGENT), "I want my money back for order 7", store=store)
    assert result.status == "succeeded", result.error
    assert result.output == {"answer": "Refunded 42.5 on order 7.", "kind": "refund"}
    # instructions are templated; the second agent sees the first one's turn as chat history
    first = triage.calls[0].messages
    assert first[0].role == "system" and "You help Ada." in first[0].content
    second = clerk.calls[0].messages
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert second[-1].content == "Order 7"
    assert [t.name for t in clerk.calls[0].tools] == ["lookup_order", "refund"]
    assert "ctx" not in clerk.calls[0].tools[1].parameters["properties"]
    assert clerk.calls[2].messages[-1].role == "tool"
    [(_, refund_args)] = [c for c in tools_for_tests.CALLS if c[0] == "refund"]
    assert refund_args["key"].startswith(result.run_id)
    # the trace: workflow > nodes > model and tool spans, with GenAI attribute names
    run = Runs(store).get(result.run_id)
    spans = Spans(store).for_trace(run.trace_id)
    kinds = [s.kind for s in spans]
    assert kinds.count("workflow") == 1 and kinds.count("node") == 5 and kinds.count("model") == 4
    assert kinds.count("tool") == 2
    model_span = next(s for s in spans if s.kind == "model")
    assert model_span.attributes["gen_ai.operation.name"] == "chat"
    assert model_span.attributes["gen_ai.request.model"] == "triage"
    assert model_span.attributes["gen_ai.usage.input_tokens"] > 0
    tool_span = next(s for s in spans if s.kind == "tool")
    assert tool_span.attributes["gen_ai.tool.name"] == "lookup_order"
    agent_span = next(s for s in spans if s.name == "node act")
    assert agent_span.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert {s.parent_id for s in spans if s.kind in ("model", "tool")} <= {s.span_id for s in spans}
    # model_calls rows carry the trace and the model span ids
    rows = store.query("SELECT trace_id, span_id FROM model_calls WHERE trace_id = ?", (run.trace_id,))
    assert len(rows) == 4 and {r["span_id"] for r in rows} == {s.span_id for s in spans if s.kind == "model"}


async def test_agent_turn_limit_and_failures(spec_file, store) -> None:
    text = AGENT.replace("max_turns: 4", "max_turns: 2")
    with scripted("triage") as triage, scripted("clerk") as clerk:
        triage.reply(parsed={"kind": "refund", "order_id": 7})
        clerk.reply(tool_calls=[("lookup_order", {"order_id": 7})])
        clerk.reply(tool_calls=[("lookup_order", {"order_id": 7})])
        result = await arun(spec_file(text), "refund 7", store=store)
    assert result.status == "failed" and "max_turns=2" in result.error
    with scripted("triage") as triage:
        triage.fail(ProviderHTTPError("boom", status_code=400))
        result = await arun(spec_file(AGENT, "b.yaml"), "refund 7", store=store)
    assert result.status == "failed" and "ProviderHTTPError" in result.error
    run = Runs(store).get(result.run_id)
    [model_span] = [s for s in Spans(store).for_trace(run.trace_id) if s.kind == "model"]
    assert model_span.status == "error" and "boom" in model_span.error


async def test_failing_tool_takes_the_error_edge(spec_file, store) -> None:
    path = spec_file("""
    name: tool-error
    nodes:
      - {id: start, type: start}
      - {id: bot, type: agent, model: "scripted:bot", tools: ["tests.workflows.tools_for_tests:explode"]}
      - {id: done, type: end}
      - {id: sorry, type: end, output: "'sorry: ' + input.output_text"}
    edges:
      - {from: start, to: bot}
      - {from: bot, to: done}
      - {from: bot, port: error, to: sorry}
    """)
    with scripted("bot") as bot:
        bot.reply(tool_calls=[("explode", {"reason": "disk full"})])
        result = await arun(path, "go", store=store)
    assert result.status == "succeeded"
    assert result.output.startswith("sorry: tool explode failed: RuntimeError: tool exploded: disk full")


APPROVAL = """
name: approve
nodes:
  - {id: start, type: start}
  - {id: ask, type: human_approval, message: "Refund {{ input_as_text }}?", timeout: 1209600}
  - {id: yes, type: end, output: "'approved by ' + input.output_parsed.by"}
  - {id: nope, type: end, output: "'rejected'"}
  - {id: late, type: end, output: "'timed out'"}
edges:
  - {from: start, to: ask}
  - {from: ask, port: approved, to: yes}
  - {from: ask, port: rejected, to: nope}
  - {from: ask, port: timeout, to: late}
"""


async def test_human_approval_approve_reject_and_timeout(spec_file, store) -> None:
    path = spec_file(APPROVAL.replace("id: yes", "id: ok").replace("to: yes", "to: ok"))
    waiting = await arun(path, "order 7", store=store)
    assert waiting.status == "waiting" and waiting.approval.message == "Refund order 7?"
    done = await aapprove(waiting.approval.id, by="lin", comment="fine", store=store)
    assert done.status == "succeeded" and done.output == "approved by lin"

    waiting = await arun(path, "order 8", store=store)
    done = await aapprove(waiting.approval.id[:10], approved=False, store=store)
    assert done.output == "rejected"

    clock = ManualClock()
    waiting = await arun(path, "order 9", store=store, clock=clock)
    assert await arecover(store=store, clock=clock) == []  # not due yet: nothing resumes
    clock.advance(13 * 86400)
    assert await arecover(store=store, clock=clock) == []
    clock.advance(2 * 86400)
    [late] = await arecover(store=store, clock=clock)
    assert late.run_id == waiting.run_id and late.output == "timed out"
    assert Runs(store).approvals(status="expired")[0].run_id == waiting.run_id


async def test_an_answered_approval_cannot_be_answered_again(spec_file, store) -> None:
    from keel.workflows import ApprovalError

    waiting = await arun(spec_file(APPROVAL.replace("id: yes", "id: ok").replace("to: yes", "to: ok")), "x",
                         store=store)
    await aapprove(waiting.approval.id, store=store)
    with pytest.raises(ApprovalError, match="already answered"):
        await aapprove(waiting.approval.id, store=store)
    with pytest.raises(ApprovalError, match="no approval"):
        await aapprove("nope", store=store)


async def test_recover_never_drives_a_run_this_engine_is_already_driving(spec_file, store) -> None:
    import asyncio

    from keel.workflows import Engine, Versions
    from keel.workflows.loader import load_spec

    path = spec_file("""
    name: slow
    nodes:
      - {id: start, type: start}
      - {id: bot, type: agent, model: "scripted:slow"}
      - {id: done, type: end}
    edges:
      - {from: start, to: bot}
      - {from: bot, to: done}
    """)
    version, _ = Versions(store).publish(load_spec(path))
    engine = Engine(store)
    with scripted("slow") as slow:
        slow.reply("done", delay=0.2)
        task = asyncio.create_task(engine.start(version, "go"))
        await asyncio.sleep(0.05)
        assert await engine.recover() == []  # its own in-flight run is not claimed again
        result = await task
    assert result.status == "succeeded" and len(slow.calls) == 1


async def test_chat_history_in_and_through_agents(spec_file, store) -> None:
    path = spec_file("""
    name: chat
    nodes:
      - {id: start, type: start}
      - {id: bot, type: agent, model: "scripted:chat", instructions: Be brief.}
      - {id: done, type: end}
    edges:
      - {from: start, to: bot}
      - {from: bot, to: done}
    """)
    conversation = {"messages": [{"role": "user", "content": "My name is Ada."},
                                 {"role": "assistant", "content": "Hello Ada."},
                                 {"role": "user", "content": "What is my name?"}]}
    with scripted("chat") as chat:
        chat.reply("Ada.")
        result = await arun(path, conversation, store=store)
    assert result.output == "Ada."
    sent = [(m.role, m.content) for m in chat.calls[0].messages]
    assert sent == [("system", "Be brief."), ("user", "My name is Ada."), ("assistant", "Hello Ada."),
                    ("user", "What is my name?")]
    from keel.workflows import WorkflowError

    with pytest.raises(WorkflowError, match=r"last of input\.messages must be a user message"):
        await arun(path, {"messages": [{"role": "assistant", "content": "hi"}]}, store=store)


async def test_a_serving_worker_fires_approval_timeouts(spec_file, store) -> None:
    import asyncio

    from keel.workflows import Engine

    clock = ManualClock()
    path = spec_file(APPROVAL.replace("id: yes", "id: ok").replace("to: yes", "to: ok"))
    waiting = await arun(path, "order 1", store=store, clock=clock)
    engine, stop = Engine(store, clock=clock), asyncio.Event()
    worker = asyncio.create_task(engine.serve(interval=0.01, stop=stop))
    clock.advance(15 * 86400)
    for _ in range(200):
        if Runs(store).get(waiting.run_id).status != "waiting":
            break
        await asyncio.sleep(0.01)
    stop.set()
    await worker
    assert Runs(store).get(waiting.run_id).output == "timed out"


async def test_a_model_without_credentials_fails_its_node_and_the_run(spec_file, store, monkeypatch) -> None:
    """No API key: the Agent node fails with the fix in its error; the run ends `failed`, never hangs
    in `running`."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = spec_file("""
    name: nokey
    nodes:
      - {id: start, type: start}
      - {id: agent, type: agent, model: "openai:gpt-4.1-mini", instructions: Answer.}
      - {id: end, type: end}
    edges:
      - {from: start, to: agent}
      - {from: agent, to: end}
    """)
    result = await arun(path, "hi", store=store)
    assert result.status == "failed"
    assert "no API key for openai" in result.error and "OPENAI_API_KEY" in result.error
    assert [r.status for r in Runs(store).list()] == ["failed"]


async def test_stream_text_passes_agent_answers_to_the_listener_as_they_are_written(spec_file, store) -> None:
    """With ``stream_text``, an Agent node without an output schema streams its answer as
    ``text_delta`` events (tools still work in the same loop); a structured Agent node does not
    (partial JSON is not an answer); without ``stream_text`` nothing but node events is sent."""
    tools_for_tests.CALLS.clear()
    answer = "Refunded 42.5 on order 7, expect it within five days."

    def script(triage, clerk) -> None:
        triage.reply(parsed={"kind": "refund", "order_id": 7})
        clerk.reply(tool_calls=[("lookup_order", {"order_id": 7})])
        clerk.reply(tool_calls=[("refund", {"order_id": 7, "amount": 42.5})])
        clerk.reply(answer)

    events: list = []
    with scripted("triage") as triage, scripted("clerk") as clerk:
        script(triage, clerk)
        result = await arun(spec_file(AGENT), "money back for order 7", store=store, on_event=events.append,
                            stream_text=True)
    assert result.status == "succeeded", result.error
    deltas = [e for e in events if e.kind == "text_delta"]
    assert len(deltas) > 3 and "".join(e.text for e in deltas) == answer
    assert {e.node_id for e in deltas} == {"act"}  # not the structured triage node
    act_finished = next(i for i, e in enumerate(events) if e.kind == "node_finished" and e.node_id == "act")
    assert events.index(deltas[-1]) < act_finished
    assert clerk.calls[-1].stream and not triage.calls[0].stream

    quiet: list = []
    with scripted("triage") as triage, scripted("clerk") as clerk:
        script(triage, clerk)
        await arun(spec_file(AGENT), "money back for order 7", store=store, on_event=quiet.append)
    assert quiet and not [e for e in quiet if e.kind == "text_delta"] and not clerk.calls[-1].stream
