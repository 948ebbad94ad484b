"""Answers stream token by token through the OpenAI-compatible and ChatKit endpoints.

The model is a real HTTP server on 127.0.0.1 speaking OpenAI's wire format (a remote paid
model cannot run here) that pauses its stream after the first words until the test opens
a gate: a client that sees those words *while the model is paused* got them live, not
after the run ended.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.openai_stub import OpenAIStub
from tests.operate.conftest import Server, create_key, publish, start_server

ANSWER = "Hello there, this answer is written while you read it."

LIVE = """
name: live
nodes:
  - {{id: start, type: start}}
  - {{id: bot, type: agent, model: "openai-compatible:{url}#stub-model", instructions: Answer.}}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: bot}}
  - {{from: bot, to: done}}
"""

RESHAPED = """
name: reshaped
nodes:
  - {{id: start, type: start}}
  - {{id: bot, type: agent, model: "openai-compatible:{url}#stub-model", instructions: Answer.}}
  - {{id: shout, type: transform, expression: "input.output_text + '!'"}}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: bot}}
  - {{from: bot, to: shout}}
  - {{from: shout, to: done}}
"""


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    s = OpenAIStub()
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def server(stub: OpenAIStub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home: Path = tmp_path_factory.mktemp("streaming-home")
    publish(home, LIVE.format(url=stub.base_url), "live")
    publish(home, RESHAPED.format(url=stub.base_url), "reshaped")
    key = create_key(home, "streaming", "--workflow", "*")
    server = start_server(home, env={"KEEL_MAX_RETRIES": "0"})
    server.admin_key = key
    try:
        yield server
    finally:
        server.stop()


def _gated(stub: OpenAIStub, text: str = ANSWER) -> tuple[threading.Event, object]:
    gate = threading.Event()
    stub.answer(text, gate=gate)
    return gate, stub.plan[-1]


def test_chat_completions_stream_the_agents_tokens_while_the_model_writes(server: Server, stub: OpenAIStub) -> None:
    gate, planned = _gated(stub)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0, timeout=60)
    pieces, live = [], None
    try:
        for chunk in client.chat.completions.create(model="live", stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]):
            content = chunk.choices[0].delta.content if chunk.choices else None
            if content:
                if live is None:
                    live = planned.paused  # the model is still holding the rest of its answer
                    gate.set()
                pieces.append(content)
    finally:
        gate.set()
    assert live is True, "the first words arrived only after the model had finished"
    assert "".join(pieces) == ANSWER and pieces[0] == ANSWER[:5]
    assert stub.requests[-1].body["stream"] is True


def test_responses_stream_the_agents_tokens_while_the_model_writes(server: Server, stub: OpenAIStub) -> None:
    gate, planned = _gated(stub)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0, timeout=60)
    deltas, live, events = [], None, []
    try:
        for event in client.responses.create(model="live", input="hi", stream=True):
            events.append(event)
            if event.type == "response.output_text.delta":
                if live is None:
                    live = planned.paused
                    gate.set()
                deltas.append(event.delta)
    finally:
        gate.set()
    assert live is True
    types = [e.type for e in events]
    assert types.index("response.output_item.added") < types.index("response.output_text.delta")
    assert "".join(deltas) == ANSWER == events[-1].response.output_text


def test_an_answer_a_later_node_reshapes_is_sent_when_the_run_ends(server: Server, stub: OpenAIStub) -> None:
    """The Transform after the Agent changes the answer: streaming the Agent's tokens would send
    text the run does not answer, so the answer comes whole, after the model has finished."""
    stub.answer(ANSWER)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.admin_key, max_retries=0, timeout=60)
    chunks = list(client.chat.completions.create(model="reshaped", stream=True,
                                                 messages=[{"role": "user", "content": "hi"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER + "!"
    assert stub.requests[-1].body.get("stream") is not True  # the engine did not even ask for tokens


def test_chatkit_streams_the_answer_into_one_assistant_message(server: Server, stub: OpenAIStub) -> None:
    gate, planned = _gated(stub)
    body = {"type": "threads.create", "metadata": {"workflow": "live"}, "params": {"input": {
        "content": [{"type": "input_text", "text": "hi"}], "attachments": [], "inference_options": {}}}}
    deltas, live, events = [], None, []
    try:
        with httpx.stream("POST", server.url + "/chatkit", json=body, headers=server.headers(),
                          timeout=60) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                events.append(event)
                update = event.get("update") or {}
                if update.get("type") == "assistant_message.content_part.text_delta":
                    if live is None:
                        live = planned.paused
                        gate.set()
                    deltas.append(update["delta"])
    finally:
        gate.set()
    assert live is True
    added = [e for e in events if e["type"] == "thread.item.added" and e["item"]["type"] == "assistant_message"]
    done = [e["item"] for e in events if e["type"] == "thread.item.done" and e["item"]["type"] == "assistant_message"]
    assert len(added) == len(done) == 1 and added[0]["item"]["id"] == done[0]["id"]
    assert "".join(deltas) == ANSWER == done[0]["content"][0]["text"]


def test_answer_tokens_send_what_is_left_of_the_answer() -> None:
    from keel.operate.server.runner import AnswerTokens

    def fed(*events: tuple[str, str | None]) -> AnswerTokens:
        tokens = AnswerTokens(frozenset({"bot"}))
        for kind, text in events:
            tokens.feed({"kind": kind, "node_id": "bot", "text": text})
        return tokens

    assert fed(("text_delta", "Hel"), ("text_delta", "lo")).rest("Hello") == ""
    assert fed(("text_delta", "Hel")).rest("Hello") == "lo"  # the stream broke off; the answer is whole
    assert fed().rest("Hello") == "Hello"
    # Words before a tool call stay shown; the answer follows them after a blank line.
    assert fed(("text_delta", "Let me check."), ("text_restart", None)).rest("Hello") == "\n\nHello"
    assert fed(("text_delta", "Let me check."), ("text_restart", None), ("text_delta", "He")).rest("Hello") == "llo"
    other = AnswerTokens(frozenset({"bot"}))
    assert other.feed({"kind": "text_delta", "node_id": "triage", "text": "x"}) == ""
