"""A structured-output Agent node on the tiny local model (llama.cpp + llguidance), through the normal
model string ``local:PATH``: whatever the random weights say, ``output_parsed`` is valid under the schema."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("llama_cpp", reason="the `local` extra is not installed")
pytest.importorskip("llguidance", reason="the `local` extra is not installed")

from keel.models.structured import validate_instance
from keel.testing import write_tiny_gguf
from keel.workflows import Runs, Spans, arun

SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["refund", "order_status", "other"]},
        "order_id": {"type": "integer", "minimum": 0, "maximum": 99999},
        "urgent": {"type": "boolean"},
        "note": {"type": "string", "maxLength": 20},
    },
    "required": ["intent", "order_id", "urgent", "note"],
    "additionalProperties": False,
}


@pytest.mark.local
async def test_structured_agent_node_on_the_tiny_local_model(spec_file, store, tmp_path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf", seed=3)
    path = spec_file(f"""
    name: local-triage
    nodes:
      - {{id: start, type: start}}
      - id: triage
        type: agent
        model: {json.dumps("local:" + str(model))}
        instructions: Classify the message.
        temperature: 1
        max_tokens: 120
        output_schema: {json.dumps(SCHEMA)}
      - id: route
        type: if_else
        branches: [{{name: refund, condition: 'input.output_parsed.intent == "refund"'}}]
      - {{id: done, type: end, output: "input.output_parsed"}}
    edges:
      - {{from: start, to: triage}}
      - {{from: triage, to: route}}
      - {{from: route, port: refund, to: done}}
      - {{from: route, port: else, to: done}}
    """)
    for text in ("Order 7 arrived broken, refund please", "Where is order 12?", "hello"):
        result = await arun(path, text, store=store)
        assert result.status == "succeeded", result.error
        assert validate_instance(result.output, SCHEMA) is None, result.output
    spans = Spans(store).for_trace(Runs(store).get(result.run_id).trace_id)
    [call] = [s for s in spans if s.kind == "model"]
    assert call.attributes["gen_ai.provider.name"] == "local"
