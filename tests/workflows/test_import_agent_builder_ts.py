"""``keel workflows import`` on Agent Builder's TypeScript Code export (``@openai/agents``):
Guardrails, File search and MCP steps, hosted tools, and secrets kept out of the spec.

The TypeScript exports under ``agent_builder_ts/`` mirror shared cases whose Python export the
dataset holds; each must import to the same Keel workflow as the case's workflow JSON
(:func:`canonical`, as the JSON-vs-Python test in test_import_agent_builder.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keel.testing import scripted
from keel.workflows import arun
from keel.workflows.importers import import_file, import_text
from keel.workflows.importers.canonical import canonical
from keel.workflows.loader import parse_spec
from keel.workflows.validate import compile_workflow

HERE = Path(__file__).resolve().parent
TS = HERE / "agent_builder_ts"
CASES = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "agent-builder" / "cases"
needs_cases = pytest.mark.skipif(not CASES.is_dir(), reason=f"the Agent Builder cases are not at {CASES}")

#: TypeScript export -> the shared case it mirrors.
MIRRORS = {
    "guardrails_moderation.ts": "tool_nodes--guardrails--guardrails_moderation",
    "guardrails_with_multiple_and_labels.ts": "tool_nodes--guardrails--guardrails_with_multiple_and_labels",
    "filesearch_transform_agent.ts": "tool_nodes--file_search--filesearch_transform_agent",
    "file_search_with_quotes.ts": "tool_nodes--file_search--file_search_with_quotes",
    "basic_mcp.ts": "logic_nodes--mcp--basic_mcp",
}


@needs_cases
@pytest.mark.parametrize("ts", sorted(MIRRORS))
def test_typescript_export_gives_the_same_workflow_as_the_json(ts) -> None:
    from_ts = import_file(TS / ts)
    from_json = import_file(CASES / MIRRORS[ts] / "input.json")
    assert from_ts.report.form == "agents_sdk_typescript"
    assert not [d.line() for d in from_ts.report.decisions if d.kind == "not_recognised"]
    assert canonical(from_ts.spec) == canonical(from_json.spec)
    compile_workflow(parse_spec(from_ts.yaml, file=ts))  # the YAML as written validates


def test_typescript_guardrails_read_their_config_and_continue_on_error() -> None:
    r = import_file(TS / "guardrails_moderation.ts")
    node = next(n for n in r.spec["nodes"] if n["type"] == "guardrails")
    assert node["checks"] == [{"type": "moderation", "categories": ["harassment", "hate", "illicit", "self_harm",
                                                                    "sexual", "violence"]}]
    assert node["text"] == "workflow.input_as_text"
    assert {e["port"] for e in r.spec["edges"] if e["from"] == node["id"]} == {"pass", "fail", "error"}


async def test_typescript_guardrails_chain_imports_and_runs(store) -> None:
    r = import_file(TS / "guardrails_with_multiple_and_labels.ts")
    chain = [n for n in r.spec["nodes"] if n["type"] == "guardrails"]
    assert len(chain) == 4 and [n.get("text") for n in chain] == [
        "workflow.input_as_text", None, None, None]  # None: the previous node's checked text (the default)
    with scripted("bot"):
        run = await arun(parse_spec(r.yaml, file="chain.yaml"), "hello there", store=store)
    assert run.status == "succeeded", run.error
    assert run.output["passed"] is True  # the last Guardrails node's verdict, ended at its pass port


def test_typescript_file_search_keeps_store_and_query() -> None:
    r = import_file(TS / "file_search_with_quotes.ts")
    node = next(n for n in r.spec["nodes"] if n["type"] == "file_search")
    assert node["collection"] == "vs_123" and node["query"] == '"search query \\"with\\" quotes"'
    assert node["max_results"] == 10
    assert any(d.fix and d.fix.startswith("keel context add vs_123") for d in r.report.placeholders())


def test_typescript_mcp_step_is_read_and_its_bearer_token_stays_out_of_the_spec() -> None:
    r = import_file(TS / "basic_mcp.ts")
    node = next(n for n in r.spec["nodes"] if n["type"] == "mcp")
    assert node["server"] == "https://api.example.com/mcp" and node["tool"] == "database_query"
    assert node["arguments"] == {"table": '"users"', "limit": "10"}
    assert "sk-test-token-123" not in r.yaml and "sk-test-token-123" not in json.dumps(r.report.as_json())
    assert any(d.kind == "dropped" and "bearer token" in d.what for d in r.report.decisions)


HOSTED = '''import { fileSearchTool, hostedMcpTool, webSearchTool, Agent, AgentInputItem, Runner, withTrace } from "@openai/agents";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

// Tool definitions
const fileSearch = fileSearchTool([
  "vs_68f1f57265548191ae8930882e69422f"
])
const mcp = hostedMcpTool({
  serverLabel: "crm",
  allowedTools: ["lookup"],
  authorization: "sk-hosted-secret",
  requireApproval: "never",
  serverUrl: "https://crm.example.com/mcp"
})
const webSearchPreview = webSearchTool({ searchContextSize: "medium" })
const helper = new Agent({
  name: "Helper",
  instructions: `Answer with the handbook.
Cite the page.`,
  model: "gpt-4.1",
  tools: [
    fileSearch,
    mcp,
    webSearchPreview
  ],
  modelSettings: {
    temperature: 1,
    store: true
  }
});

type WorkflowInput = { input_as_text: string };

// Main code entrypoint
export const runWorkflow = async (workflow: WorkflowInput) => {
  return await withTrace("Hosted tools", async () => {
    const state = {
      verbose: false
    };
    const conversationHistory: AgentInputItem[] = [
      { role: "user", content: [{ type: "input_text", text: workflow.input_as_text }] }
    ];
    const runner = new Runner();
    const filesearchResult = (await client.vectorStores.search("vs_abc", {query: `policy
about "holidays"`,
    max_num_results: 3})).data.map((result) => {
      return { id: result.file_id, filename: result.filename, score: result.score }
    });
    const mcpTransport = new StdioClientTransport({ command: "npx", args: ["-y", "@acme/crm-mcp"] });
    const mcpClient = new Client({ name: "wf", version: "1.0.0" });
    await mcpClient.connect(mcpTransport);
    const mcpResult = await mcpClient.callTool({ name: "lookup", arguments: { id: 7 } });
    await mcpClient.close();
    state.verbose = state.verbose ? false : true;
    const helperResultTemp = await runner.run(
      helper,
      [
        ...conversationHistory
      ]
    );
    const helperResult = {
      output_text: helperResultTemp.finalOutput ?? ""
    };
    return helperResult;
  });
}
'''


def test_typescript_hosted_tools_multiline_queries_stdio_mcp_and_ternaries() -> None:
    r = import_text(HOSTED, source="hosted.ts")
    assert not [d.line() for d in r.report.decisions if d.kind == "not_recognised"]
    kinds = [n["type"] for n in r.spec["nodes"]]
    assert kinds.count("file_search") == 1 and kinds.count("mcp") == 1 and kinds.count("set_state") == 1
    fs = next(n for n in r.spec["nodes"] if n["type"] == "file_search")
    assert fs["collection"] == "vs_vs_abc" and json.loads(fs["query"]) == 'policy\nabout "holidays"'
    mcp = next(n for n in r.spec["nodes"] if n["type"] == "mcp")
    assert mcp["server"] == "stdio:npx -y @acme/crm-mcp" and mcp["tool"] == "lookup"
    state = next(n for n in r.spec["nodes"] if n["type"] == "set_state")
    assert state["assign"] == {"verbose": "state.verbose ? false : true"}
    agent = next(n for n in r.spec["nodes"] if n["type"] == "agent")
    assert agent["instructions"] == "Answer with the handbook.\nCite the page." and agent["temperature"] == 1
    placeholders = " ".join(d.what for d in r.report.placeholders())
    assert "vs_68f1f57265548191ae8930882e69422f" in placeholders
    assert "hosted MCP tool crm" in placeholders and "hosted web_search tool" in placeholders
    assert "sk-hosted-secret" not in r.yaml
    compile_workflow(parse_spec(r.yaml, file="hosted.yaml"))


UNREACHABLE_MCP = {
    "object": "workflow", "name": "secret", "start_node_id": "s",
    "nodes": [
        {"id": "s", "node_type": "builtins.Start", "config": {}},
        {"id": "e", "node_type": "builtins.End", "config": {}},
        {"id": "m", "node_type": "builtins.MCP", "label": "CRM", "config": {
            "transportType": "http", "url": "https://crm.example.com/mcp", "authType": "bearer",
            "bearerToken": "sk-live-do-not-copy", "toolName": "lookup", "parameters": "{}",
            "headers": {"Authorization": "Bearer sk-live-do-not-copy"}}},
    ],
    "edges": [{"source_node_id": "s", "source_port_id": "on_result", "target_node_id": "e"}],
}


def test_a_token_of_an_unconnected_mcp_node_stays_out_of_its_note() -> None:
    r = import_text(json.dumps(UNREACHABLE_MCP), source="secret.json")
    note = next(n for n in r.spec["nodes"] if n["type"] == "note")
    assert "https://crm.example.com/mcp" in note["text"] and "<removed>" in note["text"]
    assert "sk-live-do-not-copy" not in r.yaml


def _keel(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEEL_HOME": str(cwd / "home")}
    return subprocess.run([sys.executable, "-m", "keel", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_imports_a_typescript_mcp_export_without_its_token(tmp_path) -> None:
    r = _keel("workflows", "import", str(TS / "basic_mcp.ts"), "-o", "mcp.yaml", "--report", "report.json",
              cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    written = (tmp_path / "mcp.yaml").read_text()
    assert "database_query" in written and "sk-test-token-123" not in written
    assert "sk-test-token-123" not in (tmp_path / "report.json").read_text() + r.stderr
    v = _keel("workflows", "validate", "mcp.yaml", cwd=tmp_path)
    assert v.returncode == 0, v.stderr
    assert yaml.safe_load(written)["nodes"][1]["type"] == "mcp"
