"""MCP nodes and MCP tools in Agent nodes, against a real MCP server subprocess (tests/workflows/mcp_server.py)
over stdio and over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.testing import scripted
from keel.workflows import Runs, Spans, SpecError, aapprove, areject, arun, publish

pytest.importorskip("mcp")

SERVER = Path(__file__).with_name("mcp_server.py")
STDIO = f"stdio:{shlex.quote(sys.executable)} {shlex.quote(str(SERVER))}"


def _refunds(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _agent_spec(log: Path, server: str = STDIO) -> str:
    return f"""
    name: shop
    nodes:
      - {{id: start, type: start}}
      - id: clerk
        type: agent
        model: scripted:clerk
        instructions: Help with orders.
        mcp:
          - server: {json.dumps(server)}
            tools: [lookup_order, refund]
            approval: {{lookup_order: never, refund: always}}
            env: {{SHOP_LOG: {json.dumps(str(log))}}}
      - {{id: done, type: end}}
    edges:
      - {{from: start, to: clerk}}
      - {{from: clerk, to: done}}
    """


async def test_mcp_node_over_stdio(spec_file, store, tmp_path) -> None:
    path = spec_file(f"""
    name: lookup
    nodes:
      - {{id: start, type: start}}
      - id: look
        type: mcp
        server: {json.dumps(STDIO)}
        tool: lookup_order
        arguments: {{order_id: "int(input_as_text)"}}
      - {{id: done, type: end, output: "input.output_parsed.status + ' ' + string(input.output_parsed.total)"}}
    edges:
      - {{from: start, to: look}}
      - {{from: look, to: done}}
    """)
    result = await arun(path, "7", store=store)
    assert result.status == "succeeded", result.error
    assert result.output == "delivered 42.5"
    run = Runs(store).get(result.run_id)
    [tool] = [s for s in Spans(store).for_trace(run.trace_id) if s.kind == "tool"]
    assert tool.attributes["gen_ai.tool.name"] == "lookup_order"
    assert tool.attributes["keel.mcp.server"].startswith("stdio:")


async def test_agent_mcp_tools_with_a_durable_approval(spec_file, store, tmp_path) -> None:
    log = tmp_path / "refunds.jsonl"
    path = spec_file(_agent_spec(log))
    with scripted("clerk") as clerk:
        clerk.reply(tool_calls=[("lookup_order", {"order_id": 7})])
        clerk.reply(tool_calls=[("refund", {"order_id": 7, "amount": 42.5})])
        waiting = await arun(path, "Refund order 7", store=store)
        assert waiting.status == "waiting", waiting.error
        assert "refund" in waiting.approval.message and '"order_id": 7' in waiting.approval.message
        assert _refunds(log) == []  # nothing happens before a person says yes
        assert [t.name for t in clerk.calls[0].tools] == ["lookup_order", "refund"]
        assert "delivered" in clerk.calls[1].messages[-1].content  # the lookup ran without approval

        # Later, from another engine (no memory of the run): approve; the run continues from its
        # memoized turns, so the model is asked exactly once more and the refund happens once.
        clerk.reply("Refunded 42.5 on order 7.")
        done = await aapprove(waiting.approval.id, by="lin", store=store)
    assert done.status == "succeeded", done.error
    assert done.output == "Refunded 42.5 on order 7."
    assert len(clerk.calls) == 3
    assert clerk.calls[2].messages[-1].content == "refunded 42.5 on order 7"
    [refund] = _refunds(log)
    assert refund["order_id"] == 7 and refund["key"].startswith(done.run_id)
    spans = Spans(store).for_trace(Runs(store).get(done.run_id).trace_id)
    assert [s.attributes["gen_ai.tool.name"] for s in spans if s.kind == "tool"] == ["lookup_order", "refund"]


async def test_a_rejected_tool_call_is_reported_to_the_model(spec_file, store, tmp_path) -> None:
    log = tmp_path / "refunds.jsonl"
    with scripted("clerk") as clerk:
        clerk.reply(tool_calls=[("refund", {"order_id": 7, "amount": 1000})])
        waiting = await arun(spec_file(_agent_spec(log)), "Refund 1000 on order 7", store=store)
        clerk.reply("I could not refund that.")
        done = await areject(waiting.approval.id, comment="too much", store=store)
    assert done.output == "I could not refund that."
    assert "declined" in clerk.calls[1].messages[-1].content and "too much" in clerk.calls[1].messages[-1].content
    assert _refunds(log) == []


@pytest.fixture
def http_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "http-refunds.jsonl"
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port)], env={"SHOP_LOG": str(log), "PATH": ""},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("the MCP server exited") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp", log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_mcp_over_streamable_http(spec_file, store, http_server) -> None:
    url, log = http_server
    path = spec_file(f"""
    name: refund-http
    nodes:
      - {{id: start, type: start}}
      - id: pay
        type: mcp
        server: {url}
        tool: refund
        arguments: {{order_id: "workflow.input.order", amount: "workflow.input.amount"}}
      - {{id: done, type: end}}
    edges:
      - {{from: start, to: pay}}
      - {{from: pay, to: done}}
    """)
    result = await arun(path, {"order": 9, "amount": 3.5}, store=store)
    assert result.status == "succeeded", result.error
    assert result.output == {"result": "refunded 3.5 on order 9"}  # structured content wins
    [refund] = _refunds(log)
    assert refund["key"] == f"{result.run_id}:1:mcp"
    # and the same server's tools inside an Agent node
    with scripted("clerk") as clerk:
        clerk.reply(tool_calls=[("lookup_order", {"order_id": 3})])
        clerk.reply("Order 3 was delivered.")
        result = await arun(spec_file(_agent_spec(log, url).replace("lookup_order: never, refund: always", '"*": never'),
                                      "a.yaml"),
                            "where is 3", store=store)
    assert result.output == "Order 3 was delivered." and '"delivered"' in clerk.calls[1].messages[-1].content


async def test_mcp_node_approval_rejection_and_tool_errors_take_the_error_edge(spec_file, store, tmp_path) -> None:
    text = f"""
    name: guarded
    nodes:
      - {{id: start, type: start}}
      - id: call
        type: mcp
        server: {json.dumps(STDIO)}
        tool: TOOL
        arguments: {{reason: "input_as_text"}}
        APPROVAL
      - {{id: done, type: end}}
      - {{id: oops, type: end, output: "input.output_parsed.type + ': ' + input.output_text"}}
    edges:
      - {{from: start, to: call}}
      - {{from: call, to: done}}
      - {{from: call, port: error, to: oops}}
    """
    waiting = await arun(spec_file(text.replace("TOOL", "fail").replace("APPROVAL", "approval: always")),
                         "x", store=store)
    assert waiting.status == "waiting" and "fail" in waiting.approval.message
    done = await areject(waiting.approval.id, store=store)
    assert done.output.startswith("rejected: the call of fail was not approved")
    result = await arun(spec_file(text.replace("TOOL", "fail").replace("APPROVAL", ""), "b.yaml"), "disk full",
                        store=store)
    assert result.output == "tool: MCP tool fail reported an error: Error executing tool fail: cannot: disk full"
    result = await arun(spec_file(text.replace("TOOL", "fail").replace("APPROVAL", "").replace(
        str(SERVER), str(SERVER) + ".missing"), "c.yaml"), "x", store=store)
    assert result.output.startswith("mcp: cannot connect to MCP server"), result.output


def test_mcp_spec_errors_point_at_their_lines(spec_file) -> None:
    path = spec_file("""
    name: bad
    nodes:
      - {id: start, type: start}
      - {id: call, type: mcp, server: "ftp://x", tool: t, arguments: {a: "nope +"}}
      - id: bot
        type: agent
        model: scripted:x
        mcp:
          - server: "stdio:"
            tools: [a]
            approval: {b: always}
      - {id: done, type: end}
    edges:
      - {from: start, to: call}
      - {from: call, to: bot}
      - {from: bot, to: done}
    """)
    with pytest.raises(SpecError) as e:
        publish(path)
    assert any("neither" in p.message and (p.line, p.node_id) == (4, "call") for p in e.value.problems)
    messages = " | ".join(p.message for p in e.value.problems)
    assert "CEL error in arguments.a" in messages
    assert "names no command" in messages
    assert "approval names tool 'b'" in messages
    assert {p.line for p in e.value.problems if p.node_id == "bot"} == {9, 11}


def test_an_unknown_server_command_is_reported_at_validate_time(spec_file) -> None:
    path = spec_file("""
    name: bad-command
    nodes:
      - {id: start, type: start}
      - {id: call, type: mcp, server: "stdio:keel-no-such-mcp-server --port 1", tool: t}
      - {id: done, type: end}
    edges:
      - {from: start, to: call}
      - {from: call, to: done}
    """)
    with pytest.raises(SpecError) as e:
        publish(path)
    [p] = e.value.problems
    assert (p.line, p.node_id) == (4, "call")
    assert p.message == "the MCP server command 'keel-no-such-mcp-server' is not found on PATH"
    assert "full path" in p.hint


async def test_a_failing_mcp_tool_in_an_agent_is_reported_to_the_model(spec_file, store, tmp_path) -> None:
    text = _agent_spec(tmp_path / "log.jsonl").replace("tools: [lookup_order, refund]", "tools: [fail]")
    with scripted("clerk") as clerk:
        clerk.reply(tool_calls=[("fail", {"reason": "disk full"})])
        clerk.reply("Sorry, that did not work.")
        result = await arun(spec_file(text.replace("lookup_order: never, refund: always", '"*": never')), "go",
                            store=store)
    assert result.status == "succeeded", result.error
    assert result.output == "Sorry, that did not work."
    told = clerk.calls[1].messages[-1].content
    assert told.startswith("error: ") and "disk full" in told
    spans = Spans(store).for_trace(Runs(store).get(result.run_id).trace_id)
    [tool] = [s for s in spans if s.kind == "tool"]
    assert tool.attributes["gen_ai.tool.name"] == "fail"
