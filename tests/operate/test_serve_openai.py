"""The official ``openai`` client calling Keel workflows through a real ``keel serve``."""

from __future__ import annotations

import openai
import pytest

from tests.operate.conftest import Server


@pytest.fixture
def client(serve: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=serve.url + "/v1", api_key=serve.admin_key, max_retries=0)


def test_chat_completions(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model="echo3", messages=[
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello from the sdk"}])
    assert r.choices[0].message.content == "hello from the sdk" and r.choices[0].finish_reason == "stop"
    assert r.model == "echo3@1" and r.usage is not None and r.usage.completion_tokens == 4


def test_chat_completions_streaming_with_a_pinned_version(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="echo3@1", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "a streamed answer " * 10}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a streamed answer " * 10
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 30


def test_responses(client: openai.OpenAI) -> None:
    r = client.responses.create(model="echo3", input="respond please", instructions="echo")
    assert r.output_text == "respond please" and r.status == "completed"


def test_responses_streaming(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="echo3", input="stream this response", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "stream this response"
    assert events[-1].response.output_text == "stream this response"


def test_models_lists_workflows(client: openai.OpenAI) -> None:
    assert {"echo3", "approve", "other"} <= {m.id for m in client.models.list()}


def test_unknown_workflow_or_version_is_a_404_naming_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["param"] == "model" and "nope" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="echo3@9", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["param"] == "model"
    for model in ("echo3@x", f"echo3@{2**63}"):
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert e.value.body["param"] == "model" and e.value.body["hint"]
