"""The Agents SDK importer maps ``handoffs=[...]`` and ``agent.as_tool(...)`` (Python, and ``asTool`` /
``handoffs`` in TypeScript) onto Keel's ``handoffs`` and ``agent_tools``; the imported workflow
validates and runs (the OpenAI stub stands in for the remote model behind Keel's real client)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.workflows import arun, validate
from keel.workflows.importers import import_file
from tests.openai_stub import OpenAIStub

SAMPLES = Path(__file__).with_name("agents_sdk_multi")


def _meaning(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in ("name", "description")}


@pytest.mark.parametrize("form", ["desk.py", "desk.ts"])
def test_handoffs_and_as_tool_become_handoffs_and_agent_tools(form) -> None:
    r = import_file(SAMPLES / form)
    nodes = {n["id"]: n for n in r.spec["nodes"]}
    assert nodes["triage"]["agent_tools"] == [
        {"agent": "researcher", "name": "research", "description": "Find the facts about an order."},
        {"agent": "writer", "name": "write_reply", "description": "Write the reply."}]
    assert nodes["triage"]["handoffs"] == ["billing_agent", "writer"]
    assert nodes["writer"]["handoffs"] == ["billing_agent"]  # the specialists' own handoffs come along
    assert nodes["billing_agent"]["description"] == "Answers questions about invoices and refunds."
    assert nodes["researcher"]["instructions"] == "Find the facts about an order."
    # The specialists stay off the graph: only Start -> Triage -> End are connected.
    assert {(e["from"], e["to"]) for e in r.spec["edges"]} == {("start", "triage"), ("triage", "end")}
    assert r.spec["limits"] == {"max_agent_turns": 100}
    whats = [d.what for d in r.report.decisions]
    assert any("handoff options" in w and "to_writer" not in w for w in whats), whats
    assert not [d for d in r.report.decisions if d.kind == "not_recognised"]
    validate(r.yaml)


def test_the_python_and_typescript_forms_give_the_same_workflow() -> None:
    assert _meaning(import_file(SAMPLES / "desk.py").spec) == _meaning(import_file(SAMPLES / "desk.ts").spec)


def test_a_handoff_to_an_agent_not_defined_is_reported(tmp_path) -> None:
    text = (SAMPLES / "desk.py").read_text().replace("handoffs=[billing_agent, handoff(", "handoffs=[refunds, handoff(")
    (tmp_path / "x.py").write_text(text)
    r = import_file(tmp_path / "x.py")
    [d] = [d for d in r.report.decisions if d.kind == "not_recognised"]
    assert "agent 'refunds' is called or handed off to, but is no Agent(...) defined at module level" in d.what
    assert {n["id"]: n for n in r.spec["nodes"]}["triage"]["handoffs"] == ["writer"]


async def test_the_imported_workflow_runs(store, openai_stub: OpenAIStub, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-import")
    spec = tmp_path / "desk.yaml"
    spec.write_text(import_file(SAMPLES / "desk.py").yaml)
    openai_stub.answer(tool_calls=[("research", '{"input": "order 7"}')])  # triage
    openai_stub.answer("Order 7 was refunded twice.")  # researcher
    openai_stub.answer(tool_calls=[("transfer_to_billing_agent", "{}")])  # triage
    openai_stub.answer("One refund will be reversed.")  # billing agent
    result = await arun(spec, "Why was I refunded twice?", store=store)
    assert result.status == "succeeded", result.error
    assert result.output == "One refund will be reversed."
    bodies = [r.body for r in openai_stub.requests]
    assert [b["model"] for b in bodies] == ["gpt-4.1", "gpt-4.1-mini", "gpt-4.1", "gpt-4.1-mini"]
    assert bodies[1]["messages"][0]["content"].startswith("Find the facts about an order.")
    assert bodies[3]["messages"][0]["content"].startswith("You answer questions about invoices and refunds.")
