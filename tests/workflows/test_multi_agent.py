"""Multi-agent workflows: agents as tools and handoffs, on real runs with a real SQLite store
(``scripted:NAME`` models, one per agent, so each agent's requests can be read back)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.testing import scripted
from keel.workflows import Runs, Spans, SpecError, arun, validate

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("multi_agent_worker.py")

CONDUCTOR = """
name: desk
nodes:
  - {id: start, type: start}
  - id: conductor
    type: agent
    model: scripted:conductor
    instructions: You conduct specialists.
    agent_tools:
      - {agent: researcher, description: Finds facts.}
      - {agent: writer, name: write_it}
    handoffs: [closer]
  - id: researcher
    type: agent
    model: scripted:researcher
    instructions: You research.
    tools: [tests.workflows.tools_for_tests:lookup_order]
  - {id: writer, type: agent, model: scripted:writer, instructions: You write., description: Writes prose.}
  - {id: closer, type: agent, model: scripted:closer, instructions: You close the case.}
  - {id: done, type: end}
edges:
  - {from: start, to: conductor}
  - {from: conductor, to: done}
"""


def _script(conductor, researcher, writer, closer) -> None:
    conductor.reply(tool_calls=[("researcher", {"input": "what about order 7?"})])
    researcher.reply(tool_calls=[("lookup_order", {"order_id": 7})])
    researcher.reply("Order 7 shipped.")
    conductor.reply(tool_calls=[("write_it", {"input": "a note: order 7 shipped"})])
    writer.reply("Dear customer, order 7 is on its way.")
    conductor.reply(tool_calls=[("transfer_to_closer", {})])
    closer.reply("Case closed: order 7 is on its way.")


async def test_a_conductor_calls_two_specialists_and_hands_off(spec_file, store) -> None:
    path = spec_file(CONDUCTOR)
    with scripted("conductor") as conductor, scripted("researcher") as researcher, \
            scripted("writer") as writer, scripted("closer") as closer:
        _script(conductor, researcher, writer, closer)
        result = await arun(path, "Where is order 7?", store=store)
        assert result.status == "succeeded", result.error
        assert result.output == "Case closed: order 7 is on its way."
        for m in (conductor, researcher, writer, closer):
            m.assert_done()
        # The conductor sees one function tool per specialist and a transfer tool.
        names = [t.name for t in conductor.calls[0].tools]
        assert names == ["researcher", "write_it", "transfer_to_closer"]
        assert conductor.calls[0].tools[0].description == "Finds facts."
        assert conductor.calls[0].tools[1].description == "Writes prose."
        assert conductor.calls[0].tools[2].description == \
            "Hand the conversation over to the closer agent: it answers the user from here on."
        # Each specialist runs with its own instructions and only the input it was given ...
        first = researcher.calls[0].messages
        assert [m.role for m in first] == ["system", "user"]
        assert first[0].content.startswith("You research.") and first[1].content == "what about order 7?"
        assert [t.name for t in researcher.calls[0].tools] == ["lookup_order"]
        assert writer.calls[0].messages[-1].content == "a note: order 7 shipped"
        # ... and its answer comes back to the conductor as the tool result.
        assert conductor.calls[1].messages[-1].role == "tool"
        assert conductor.calls[1].messages[-1].content == "Order 7 shipped."
        assert conductor.calls[2].messages[-1].content == "Dear customer, order 7 is on its way."
        # The handoff target gets the whole conversation, under its own instructions.
        taken = closer.calls[0].messages
        assert taken[0].role == "system" and taken[0].content.startswith("You close the case.")
        assert "You conduct specialists." not in taken[0].content
        assert taken[1].content == "Where is order 7?"
        assert [m.role for m in taken[1:]] == ["user", "assistant", "tool", "assistant", "tool", "assistant", "tool"]
        assert [t.name for t in closer.calls[0].tools] == []

    run = Runs(store).get(result.run_id)
    assert [s.node_id for s in Runs(store).steps(result.run_id)] == ["start", "conductor", "done"]
    spans = Spans(store).for_trace(run.trace_id)
    by_id = {s.span_id: s for s in spans}
    node = next(s for s in spans if s.kind == "node" and s.name == "node conductor")
    assert node.attributes["keel.agent.final"] == "closer"

    def parent(s):
        return by_id[s.parent_id]

    tool_research = next(s for s in spans if s.name == "execute_tool researcher")
    assert parent(tool_research) is node
    agent_research = next(s for s in spans if s.name == "invoke_agent researcher")
    assert agent_research.kind == "agent" and parent(agent_research) is tool_research
    research_models = [s for s in spans if s.kind == "model" and s.parent_id == agent_research.span_id]
    assert [s.name for s in research_models] == ["chat scripted:researcher"] * 2
    lookup = next(s for s in spans if s.name == "execute_tool lookup_order")
    assert parent(lookup) is agent_research  # the specialist's own tool call, under the specialist
    writer_span = next(s for s in spans if s.name == "invoke_agent writer")
    assert parent(parent(writer_span)).span_id == node.span_id
    closer_span = next(s for s in spans if s.name == "invoke_agent closer")
    assert parent(closer_span) is node and closer_span.attributes["keel.agent.via"] == "handoff"
    assert [s.name for s in spans if s.parent_id == closer_span.span_id] == ["chat scripted:closer"]
    assert all(s.status == "ok" for s in spans if s.kind in ("agent", "tool", "model"))
    conductor_models = [s for s in spans if s.kind == "model" and s.parent_id == node.span_id]
    assert len(conductor_models) == 3
    # Evals see every sub-agent's calls as steps of the conductor's node, with their text.
    from keel.evals.traces import load_trace

    steps = load_trace(store, result.run_id).steps
    models = [s for s in steps if s.kind == "model"]
    assert [s.name for s in models] == ["chat scripted:conductor", "chat scripted:researcher",
                                        "chat scripted:researcher", "chat scripted:conductor",
                                        "chat scripted:writer", "chat scripted:conductor", "chat scripted:closer"]
    assert {s.node_id for s in models} == {"conductor"}
    assert models[2].output_text == "Order 7 shipped." and models[-1].output_text.startswith("Case closed")
    assert [s.tool for s in steps if s.kind == "tool"] == ["researcher", "lookup_order", "write_it"]


def test_a_killed_and_resumed_run_does_not_run_a_completed_specialist_again(tmp_path, store) -> None:
    """SIGKILL while the conductor waits for its model, after the researcher (called as a tool)
    answered; the resumed run replays the researcher's answer from its memo and hands off."""
    env = {**os.environ, "MULTI_AGENT_LOG": str(tmp_path / "notes.log"),
           "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    worker = subprocess.Popen([sys.executable, str(WORKER), "first"], env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and worker.poll() is None:
            rows = store.query("SELECT COUNT(*) AS n FROM workflow_memos WHERE key = '1:tool:0:0'")
            if rows[0]["n"]:  # the researcher's answer is stored as the conductor's tool result
                break
            time.sleep(0.05)
        assert worker.poll() is None, "the worker ended before the kill"
        assert rows[0]["n"] == 1, "the researcher did not answer in time"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    done = subprocess.run([sys.executable, str(WORKER), "resume"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "succeeded Closed: order 7 shipped."
    assert (tmp_path / "notes.log").read_text().splitlines() == ["looked up order 7"]
    [run] = store.query("SELECT trace_id FROM workflow_runs")
    names = [s.name for s in Spans(store).for_trace(run["trace_id"])]
    assert names.count("invoke_agent researcher") == 1 and names.count("invoke_agent closer") == 1


async def test_calling_a_specialist_can_wait_for_approval(spec_file, store) -> None:
    from keel.workflows import aapprove

    path = spec_file(CONDUCTOR.replace("    handoffs: [closer]\n", "    handoffs: [closer]\n    approval: {write_it: always}\n"))
    with scripted("conductor") as conductor, scripted("researcher") as researcher, \
            scripted("writer") as writer, scripted("closer") as closer:
        conductor.reply(tool_calls=[("write_it", {"input": "a note"})])
        waiting = await arun(path, "Where is order 7?", store=store)
        assert waiting.status == "waiting", waiting.error
        assert waiting.approval.message.startswith('Allow the tool call write_it({"input": "a note"}) on agent writer')
        assert not writer.calls
        writer.reply("A note.")
        conductor.reply("Done.")
        done = await aapprove(waiting.approval.id, by="lin", store=store)
        assert done.status == "succeeded", done.error
        assert conductor.calls[-1].messages[-1].content == "A note."
        researcher.assert_done()
        closer.assert_done()


def _error(spec_file, text: str) -> str:
    with pytest.raises(SpecError) as e:
        validate(spec_file(text))
    return "\n".join(f"{p} @{p.path} hint: {p.hint}" for p in e.value.problems)


def _spec(conductor: str, extra: str = "", limits: str = "") -> str:
    return f"""
name: bad
nodes:
  - {{id: start, type: start}}
  - {{id: a, type: agent, model: scripted:a, {conductor}}}
  - {{id: b, type: agent, model: scripted:b{extra}}}
  - {{id: c, type: agent, model: scripted:c}}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: a}}
  - {{from: a, to: done}}
{limits}"""


def test_unknown_and_non_agent_ids_are_refused_at_their_line(spec_file) -> None:
    text = _error(spec_file, _spec("agent_tools: [{agent: researchr}], handoffs: [done]"))
    assert "agent_tools names node 'researchr', which the workflow does not have" in text
    assert "handoffs names node 'done', a end node: only Agent nodes" in text
    assert "wf.yaml:4" in text and "agent_tools[0].agent" in text and "handoffs[0]" in text


def test_an_agent_that_calls_itself_through_others_is_refused(spec_file) -> None:
    text = _error(spec_file, _spec("agent_tools: [{agent: b}]", ", agent_tools: [{agent: a}]"))
    assert "agent 'a' calls itself as a tool through a -> b -> a" in text
    text = _error(spec_file, _spec("agent_tools: [{agent: a}]"))
    assert "agent 'a' calls itself as a tool through a -> a" in text
    # Through a handoff too: a calls b, which hands the conversation back to a.
    text = _error(spec_file, _spec("agent_tools: [{agent: b}]", ", handoffs: [a]"))
    assert "calls itself as a tool through a -> b -> a" in text


def test_a_handoff_cycle_needs_a_turn_limit(spec_file) -> None:
    text = _error(spec_file, _spec("handoffs: [b]", ", handoffs: [c]").replace(
        "{id: c, type: agent, model: scripted:c}", "{id: c, type: agent, model: scripted:c, handoffs: [a]}"))
    assert "the handoff cycle a -> b -> c -> a can hand the conversation round without end" in text
    assert "limits: {max_agent_turns: N}" in text
    bounded = _spec("handoffs: [b]", ", handoffs: [a]", "limits: {max_agent_turns: 20}").replace(
        "  - {id: c, type: agent, model: scripted:c}\n", "")
    assert validate(spec_file(bounded)).spec.node("a").handoffs == ["b"]


def test_nesting_deeper_than_the_depth_limit_is_refused(spec_file) -> None:
    deep = _spec("agent_tools: [{agent: b}]", ", agent_tools: [{agent: c}]", "limits: {max_agent_depth: 1}")
    text = _error(spec_file, deep)
    assert "agent 'a' nests agents 2 deep through its agent_tools (limits.max_agent_depth is 1)" in text
    assert "max_agent_depth: 2" in text


def test_off_graph_agents_need_no_edges_but_unused_ones_still_do(spec_file) -> None:
    text = _error(spec_file, _spec("agent_tools: [{agent: b}]"))
    assert "node 'b'" not in text  # b is a tool: off the graph is fine
    assert "missing edge from 'c' through port 'next'" in text  # c is nobody's: it is on the graph


async def test_the_agent_turn_limit_stops_a_handoff_cycle(spec_file, store) -> None:
    path = spec_file(_spec("handoffs: [b]", ", handoffs: [a]", "limits: {max_agent_turns: 3}").replace(
        "  - {id: c, type: agent, model: scripted:c}\n", ""))
    with scripted("a") as a, scripted("b") as b:
        a.reply(tool_calls=[("transfer_to_b", {})])
        b.reply(tool_calls=[("transfer_to_a", {})])
        a.reply(tool_calls=[("transfer_to_b", {})])
        result = await arun(path, "hi", store=store)
    assert result.status == "failed"
    assert "limits.max_agent_turns: the agents of this run made 3 model calls (the limit is 3)" in result.error
    assert "stopped before agent 'b'" in result.error


def test_the_depth_limit_at_run_time_names_the_limit_and_the_fix() -> None:
    """Validation refuses a spec that nests too deeply; the run-time check is the guard behind it."""
    from keel.workflows.multi_agent import Budget
    from keel.workflows.nodes import NodeFailure
    from keel.workflows.spec import Limits

    budget = Budget(Limits(max_agent_depth=2), used=0)
    budget.enter(2, "a", "b")
    with pytest.raises(NodeFailure) as e:
        budget.enter(3, "b", "c")
    assert e.value.kind == "limit"
    assert e.value.message.startswith("limits.max_agent_depth: agent 'b' called agent 'c' as a tool at depth 3 "
                                      "(the limit is 2). Fix: raise it with `limits: {max_agent_depth: ...}`")


def test_the_python_export_keeps_agent_tools_handoffs_and_limits(spec_file, store) -> None:
    from keel.workflows import publish
    from keel.workflows.export import export_python

    text = CONDUCTOR.replace("  - {id: closer, type: agent, model: scripted:closer, instructions: You close the case.}",
                             "  - {id: closer, type: agent, model: scripted:closer, handoffs: [conductor]}")
    version = publish(spec_file(text + "limits: {max_agent_turns: 30}\n"), store=store)
    namespace: dict = {}
    exec(compile(export_python(version), "exported.py", "exec"), namespace)  # builds SPEC, runs nothing
    assert namespace["SPEC"] == version.loaded().spec
    validate(namespace["SPEC"])


def test_the_cli_reports_a_handoff_cycle_at_its_line_without_a_traceback(spec_file) -> None:
    from tests.workflows.test_cli import clean_failure, keel

    path = spec_file(_spec("handoffs: [b]", ", handoffs: [a]").replace(
        "  - {id: c, type: agent, model: scripted:c}\n", ""))
    r = keel("workflows", "validate", str(path))
    clean_failure(r, f"{path}:4 (node a): the handoff cycle a -> b -> a can hand the conversation round without end")
    assert "limits: {max_agent_turns: N}" in r.stderr


def test_runs_show_prints_the_agents_under_their_caller(spec_file, store) -> None:
    import asyncio

    from tests.workflows.test_cli import keel

    path = spec_file(CONDUCTOR)
    with scripted("conductor") as conductor, scripted("researcher") as researcher, \
            scripted("writer") as writer, scripted("closer") as closer:
        _script(conductor, researcher, writer, closer)
        result = asyncio.run(arun(path, "Where is order 7?", store=store))
    r = keel("runs", "show", result.run_id)
    assert r.returncode == 0, r.stderr
    lines = [re.split(r"  \d", ln)[0] for ln in r.stdout.splitlines()]  # the tree and names, not the timings
    tree = lines[lines.index("├── node conductor"):lines.index("└── node done")]
    assert tree == [
        "├── node conductor",
        "│   ├── chat scripted:conductor",
        "│   ├── execute_tool researcher",
        "│   │   └── invoke_agent researcher",
        "│   │       ├── chat scripted:researcher",
        "│   │       ├── execute_tool lookup_order",
        "│   │       └── chat scripted:researcher",
        "│   ├── chat scripted:conductor",
        "│   ├── execute_tool write_it",
        "│   │   └── invoke_agent writer",
        "│   │       └── chat scripted:writer",
        "│   ├── chat scripted:conductor",
        "│   └── invoke_agent closer",
        "│       └── chat scripted:closer",
    ]


async def test_turns_of_failed_attempts_count_towards_the_run_limit(spec_file, store) -> None:
    """An `error` edge that retries a failing conductor is stopped by limits.max_agent_turns, which
    no `error` edge takes (like the engine's own limits)."""
    path = spec_file("""
name: retry
nodes:
  - {id: start, type: start}
  - {id: a, type: agent, model: scripted:a, max_turns: 2, agent_tools: [{agent: b}]}
  - {id: b, type: agent, model: scripted:b}
  - {id: done, type: end}
edges:
  - {from: start, to: a}
  - {from: a, to: done}
  - {from: a, port: error, to: a}
limits: {max_agent_turns: 5}
""")
    with scripted("a") as a, scripted("b") as b:
        for _ in range(3):
            a.reply(tool_calls=[("b", {"input": "again"})])
        b.reply("no").reply("no")
        result = await arun(path, "go", store=store)
    assert result.status == "failed"
    assert "limits.max_agent_turns: the agents of this run made 5 model calls (the limit is 5)" in result.error
    assert "stopped before agent 'b'" in result.error
    # attempt 1: a, b, a, b (then max_turns=2 fails it); attempt 2 (the error edge): a, and b is refused
    assert len(a.calls) == 3 and len(b.calls) == 2


def test_the_extractive_answerer_cannot_conduct_or_hand_off(spec_file) -> None:
    text = _error(spec_file, _spec("handoffs: [b]").replace("model: scripted:a", "model: extractive").replace(
        "  - {id: c, type: agent, model: scripted:c}\n", ""))
    assert "model 'extractive' is the extractive answerer, which only quotes its sources" in text
    assert "@nodes[1].model" in text


async def test_only_the_answer_streams_not_the_specialists(spec_file, store) -> None:
    """Streamed text is the node's answer: the handoff target's, never a specialist's (whose
    answer is a tool result)."""
    events = []
    path = spec_file(CONDUCTOR)
    with scripted("conductor") as conductor, scripted("researcher") as researcher, \
            scripted("writer") as writer, scripted("closer") as closer:
        _script(conductor, researcher, writer, closer)
        result = await arun(path, "Where is order 7?", store=store, on_event=events.append, stream_text=True)
    assert result.status == "succeeded", result.error
    shown = ""
    for e in events:
        if e.kind == "text_delta":
            assert e.node_id == "conductor"
            shown += e.text
        elif e.kind == "text_restart":
            shown = ""
    assert shown == "Case closed: order 7 is on its way."
    everything = "".join(e.text or "" for e in events if e.kind == "text_delta")
    assert "Dear customer" not in everything and "Order 7 shipped" not in everything


async def test_a_specialists_own_tool_call_can_wait_for_approval(spec_file, store) -> None:
    """The researcher's Python tool needs approval: the run parks inside the specialist and, once
    approved, goes on from there (the conductor's first call is replayed, not made again)."""
    from keel.workflows import aapprove

    path = spec_file(CONDUCTOR.replace("    tools: [tests.workflows.tools_for_tests:lookup_order]\n",
                                       "    tools: [tests.workflows.tools_for_tests:lookup_order]\n"
                                       "    approval: {lookup_order: always}\n"))
    with scripted("conductor") as conductor, scripted("researcher") as researcher, \
            scripted("writer") as writer, scripted("closer") as closer:
        conductor.reply(tool_calls=[("researcher", {"input": "what about order 7?"})])
        researcher.reply(tool_calls=[("lookup_order", {"order_id": 7})])
        waiting = await arun(path, "Where is order 7?", store=store)
        assert waiting.status == "waiting", waiting.error
        assert waiting.approval.message.startswith('Allow the tool call lookup_order({"order_id": 7}) on Python tool')
        researcher.reply("Order 7 shipped.")
        conductor.reply("It shipped.")
        done = await aapprove(waiting.approval.id, by="lin", store=store)
        assert done.status == "succeeded", done.error
        assert done.output == "It shipped."
        assert len(conductor.calls) == 2 and len(researcher.calls) == 2  # replayed from memos, not re-asked
        assert researcher.calls[1].messages[-1].role == "tool"
        writer.assert_done()
        closer.assert_done()
    spans = Spans(store).for_trace(Runs(store).get(done.run_id).trace_id)
    assert [s.name for s in spans].count("invoke_agent researcher") == 1
    assert [s.name for s in spans].count("execute_tool researcher") == 1
    assert all(s.status == "ok" for s in spans if s.kind in ("agent", "tool", "model"))  # the wait is no failure


_ARRIVED: list[str] = []


async def meet(name: str) -> str:
    """Arrive, then wait for the other specialist to arrive too (at most 10 s)."""
    import asyncio

    _ARRIVED.append(name)
    for _ in range(1000):
        if len(_ARRIVED) >= 2:
            return "together"
        await asyncio.sleep(0.01)
    return "alone"


async def test_specialists_called_in_one_reply_run_together(spec_file, store) -> None:
    """Each specialist calls `meet`, which waits for the other: both can arrive only if they run at
    the same time (one after the other, the first would wait alone)."""
    _ARRIVED.clear()
    me = "tests.workflows.test_multi_agent:meet"
    path = spec_file(CONDUCTOR.replace("tools: [tests.workflows.tools_for_tests:lookup_order]", f"tools: [{me}]")
                     .replace("instructions: You write., description", f"instructions: You write., tools: [{me}], "
                              "description"))
    with scripted("conductor") as conductor, scripted("researcher") as researcher, \
            scripted("writer") as writer, scripted("closer") as closer:
        conductor.reply(tool_calls=[("researcher", {"input": "facts"}), ("write_it", {"input": "prose"})])
        researcher.reply(tool_calls=[("meet", {"name": "researcher"})]).reply("Facts.")
        writer.reply(tool_calls=[("meet", {"name": "writer"})]).reply("Prose.")
        conductor.reply("Both.")
        result = await arun(path, "go", store=store)
        assert result.status == "succeeded", result.error
        assert researcher.calls[1].messages[-1].content == "together"
        assert writer.calls[1].messages[-1].content == "together"
        # the results go back in the order the model asked for them
        assert [(m.role, m.content) for m in conductor.calls[1].messages[-2:]] == [("tool", "Facts."),
                                                                                    ("tool", "Prose.")]
        closer.assert_done()
