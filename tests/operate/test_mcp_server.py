"""Published workflows as MCP tools, driven by the official ``mcp`` client: over stdio
(``keel mcp`` as a real subprocess) and over streamable HTTP (a real ``keel serve``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.operate.conftest import Server, echo3, keel, server_env

ADD = """
name: add
description: Adds two numbers.
nodes:
  - id: start
    type: start
    input_schema: {type: object, properties: {a: {type: number}, b: {type: number}}, required: [a, b]}
  - {id: done, type: end, output: "{'sum': input.output_parsed.a + input.output_parsed.b}"}
edges:
  - {from: start, to: done}
"""

SHOUT = """
name: shout
nodes:
  - {id: start, type: start, input_schema: {type: string, maxLength: 20}}
  - {id: done, type: end, output: "input.output_text.upperAscii()"}
edges:
  - {from: start, to: done}
"""


def publish_here(spec: str) -> None:
    """Publish into this test's KEEL_HOME, in-process (the subprocesses read the same store)."""
    from keel.store import open_store
    from keel.workflows import publish

    store = open_store()
    try:
        publish(spec, store=store)
    finally:
        store.close()


@pytest.fixture
def home(keel_home: Path) -> Path:
    publish_here(echo3("echo3"))
    publish_here(ADD)
    return keel_home


def stdio(home: Path) -> Client:
    return Client(StdioServerParameters(command=sys.executable, args=["-m", "keel", "mcp"],
                                        env=server_env(home), cwd=str(home)))


def text_of(result) -> str:
    return "".join(c.text for c in result.content if c.type == "text")


async def test_stdio_lists_workflows_as_tools_with_their_input_schemas(home: Path) -> None:
    async with stdio(home) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"echo3", "add"}
    assert tools["echo3"].description == "Repeats the last user message."
    assert tools["echo3"].input_schema["required"] == ["input"]
    assert tools["add"].input_schema["properties"] == {"a": {"type": "number"}, "b": {"type": "number"}}
    assert tools["add"].description == "Adds two numbers."


async def test_stdio_call_runs_the_workflow_and_returns_text_and_structured_output(home: Path) -> None:
    async with stdio(home) as client:
        echoed = await client.call_tool("echo3", {"input": "hello over stdio"})
        added = await client.call_tool("add", {"a": 2, "b": 40})
    assert not echoed.is_error
    assert text_of(echoed) == "hello over stdio"
    assert echoed.structured_content == {"output": "hello over stdio"}
    assert not added.is_error
    assert json.loads(text_of(added)) == {"sum": 42}
    assert added.structured_content == {"sum": 42}
    # The call was a real, recorded run: its id is in _meta and the store has it.
    run_id = added.meta["keel/run_id"]
    shown = json.loads(keel(home, "runs", "show", run_id, "--json").stdout)["run"]
    assert shown["status"] == "succeeded" and shown["workflow"] == "add"


async def test_stdio_non_object_input_schema_is_wrapped_as_input(home: Path) -> None:
    publish_here(SHOUT)
    async with stdio(home) as client:
        tool = next(t for t in (await client.list_tools()).tools if t.name == "shout")
        assert tool.input_schema == {"type": "object", "properties": {"input": {"type": "string", "maxLength": 20}},
                                     "required": ["input"]}
        ok = await client.call_tool("shout", {"input": "quiet"})
        too_long = await client.call_tool("shout", {"input": "x" * 50})
    assert text_of(ok) == "QUIET"
    assert too_long.is_error and "input_schema" in text_of(too_long)


async def test_stdio_bad_calls_are_clear_errors_not_crashes(home: Path) -> None:
    async with stdio(home) as client:
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("nope", {"input": "x"})
        bad_input = await client.call_tool("add", {"a": "two"})
        missing = await client.call_tool("echo3", {})
        # The server is still up after all that.
        still = await client.call_tool("echo3", {"input": "still here"})
    assert unknown.value.code == -32602
    assert "unknown tool 'nope'" in unknown.value.message and "echo3" in unknown.value.message
    assert bad_input.is_error and "input_schema" in text_of(bad_input) and "Traceback" not in text_of(bad_input)
    assert missing.is_error and "missing argument 'input'" in text_of(missing)
    assert text_of(still) == "still here"


def test_keel_mcp_list_prints_the_tools(home: Path) -> None:
    out = keel(home, "mcp", "--list").stdout
    assert "echo3  (v1)  Repeats the last user message." in out
    assert '"a": {"type": "number"}' in out


# -- over HTTP, against the shared `keel serve` -------------------------------------------------


def http(serve: Server, key: str | None = None) -> Client:
    """An MCP client for the server's /mcp/ endpoint, sending ``key`` (default: the admin key)."""
    client = httpx.AsyncClient(headers=serve.headers(key), timeout=60)
    return Client(streamable_http_client(f"{serve.url}/mcp/", http_client=client))


async def test_http_lists_and_calls_a_workflow_tool(serve: Server) -> None:
    async with http(serve) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("echo3", {"input": "hello over http"})
    assert {"echo3", "other", "approve"} <= names
    assert not result.is_error and text_of(result) == "hello over http"
    run = httpx.get(f"{serve.url}/v1/runs/{result.meta['keel/run_id']}", headers=serve.headers()).json()
    assert run["status"] == "succeeded"


async def test_http_key_scope_limits_the_tools(serve: Server) -> None:
    async with http(serve, serve.scoped_key) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        with pytest.raises(MCPError):
            await client.call_tool("other", {"input": "not mine"})
    assert names == {"echo3"}


async def test_http_waiting_for_approval_names_the_approval(serve: Server) -> None:
    async with http(serve) as client:
        result = await client.call_tool("approve", {"input": "order 7"})
    assert not result.is_error
    assert result.structured_content["status"] == "waiting"
    approval = result.structured_content["approval_id"]
    assert approval in text_of(result) and "Refund order 7?" in text_of(result)


def test_http_without_a_key_is_refused_with_a_json_error(serve: Server) -> None:
    r = httpx.post(f"{serve.url}/mcp/", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401
    assert r.json()["error"]["hint"]


async def test_a_browser_opening_mcp_gets_a_page_and_an_mcp_client_still_works(keel_home: Path) -> None:
    """GET /mcp/ from a browser (Accept: text/html, no MCP headers) used to open MCP's event
    stream and never answer; now it is a short page saying what the endpoint is. An MCP
    client on the same server (open mode, no key) still lists and calls the tools."""
    from tests.operate.conftest import start_server

    publish_here(echo3("echo3"))
    server = start_server(keel_home)
    try:
        browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
        # a hang guard, not a timing assertion: the old code never answered this request
        r = httpx.get(f"{server.url}/mcp/", headers=browser, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "This is Keel's MCP endpoint" in r.text and f"{server.url}/mcp/" in r.text
        assert "Authorization" not in r.text  # open mode: no key to send
        assert "<script" not in r.text.lower()
        client = httpx.AsyncClient(timeout=60)
        async with Client(streamable_http_client(f"{server.url}/mcp/", http_client=client)) as mcp:
            names = {t.name for t in (await mcp.list_tools()).tools}
            result = await mcp.call_tool("echo3", {"input": "still streaming for clients"})
        assert "echo3" in names and text_of(result) == "still streaming for clients"
    finally:
        server.stop()
