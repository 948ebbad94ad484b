"""The OpenAI-compatible provider through the real ``openai`` client against a real HTTP server."""

from __future__ import annotations

import json
import socket

import pytest

from keel.errors import (
    MissingCredentialsError,
    ProviderAuthError,
    ProviderHTTPError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    RateLimitedError,
    ToolCallError,
)
from keel.models import ModelSettings, ResponseDone, TextDelta, Tool, get_model
from keel.models.openai_compat import OpenAICompatibleModel
from keel.store import ModelCalls, open_store
from tests.openai_stub import OpenAIStub

SCHEMA = {"type": "object", "properties": {"label": {"enum": ["spam", "ham"]}},
          "required": ["label"], "additionalProperties": False}


def model_for(stub: OpenAIStub, **options: str) -> OpenAICompatibleModel:
    query = "?" + "&".join(f"{k}={v}" for k, v in options.items()) if options else ""
    model = get_model(f"openai-compatible:{stub.base_url}#stub-model{query}")
    assert isinstance(model, OpenAICompatibleModel)
    return model


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_MAX_RETRIES", "3")
    OpenAICompatibleModel._mode_cache.clear()


async def test_chat_round_trip_maps_usage_and_records_the_call(openai_stub: OpenAIStub) -> None:
    openai_stub.answer("Hello there")
    r = await model_for(openai_stub).generate("hi", settings=ModelSettings(temperature=0.2, max_tokens=10))
    assert r.text == "Hello there"
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.cached_tokens) == (11, 2, 3)
    assert r.model == "openai-compatible:stub-model"
    sent = openai_stub.requests[0].body
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 10)
    [row] = ModelCalls(open_store()).recent()
    assert (row.provider, row.model, row.status, row.input_tokens, row.cached_tokens) == (
        "openai-compatible", "stub-model", "ok", 11, 3)


async def test_streaming_measures_time_to_first_token(openai_stub: OpenAIStub) -> None:
    openai_stub.answer("streamed words arrive in pieces")
    events = [e async for e in model_for(openai_stub).generate("hi", stream=True)]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1 and "".join(deltas) == "streamed words arrive in pieces"
    done = events[-1]
    assert isinstance(done, ResponseDone) and done.response.ttft_ms is not None
    assert done.response.usage.input_tokens == 11
    assert openai_stub.requests[0].body["stream_options"] == {"include_usage": True}
    assert ModelCalls(open_store()).recent()[0].ttft_ms is not None


async def test_native_json_schema_mode_is_strict_when_the_schema_allows(openai_stub: OpenAIStub) -> None:
    openai_stub.answer('{"label": "spam"}')
    r = await model_for(openai_stub).generate("classify", output_schema=SCHEMA)
    assert r.parsed == {"label": "spam"}
    fmt = openai_stub.requests[0].body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == SCHEMA


async def test_endpoint_rejecting_json_schema_falls_back_once_and_remembers(openai_stub: OpenAIStub) -> None:
    # llama.cpp's server answers 500 to response_format json_schema but accepts json_object + schema.
    openai_stub.status(500, "response_format type json_schema not supported").answer('{"label": "ham"}')
    openai_stub.answer('{"label": "spam"}')
    model = model_for(openai_stub)
    assert (await model.generate("a", output_schema=SCHEMA)).parsed == {"label": "ham"}
    assert (await model.generate("b", output_schema=SCHEMA)).parsed == {"label": "spam"}
    formats = [r.body.get("response_format", {}).get("type") for r in openai_stub.requests]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert "JSON schema" in openai_stub.requests[1].body["messages"][0]["content"]


async def test_429_is_retried_honouring_retry_after(openai_stub: OpenAIStub) -> None:
    openai_stub.status(429, "slow down", {"retry-after": "0.6"}).status(500, "oops").answer("finally")
    r = await model_for(openai_stub).generate("hi")
    assert r.text == "finally"
    times = [req.at for req in openai_stub.requests]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.55, "Retry-After was not honoured"
    statuses = sorted((row.attempt, row.status, row.http_status) for row in ModelCalls(open_store()).recent())
    assert statuses == [(1, "error", 429), (2, "error", 500), (3, "ok", None)]


async def test_rate_limit_that_never_ends_raises_after_max_attempts(
    openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_MAX_RETRIES", "2")
    for _ in range(3):
        openai_stub.status(429, "quota", {"retry-after-ms": "10"})
    with pytest.raises(RateLimitedError, match="429"):
        await model_for(openai_stub).generate("hi")
    assert len(openai_stub.requests) == 3


async def test_auth_errors_are_not_retried(openai_stub: OpenAIStub) -> None:
    openai_stub.status(401, "invalid api key")
    with pytest.raises(ProviderAuthError, match="refused the API key"):
        await model_for(openai_stub).generate("hi")
    assert len(openai_stub.requests) == 1


async def test_bad_request_is_not_retried(openai_stub: OpenAIStub) -> None:
    openai_stub.status(404, "model not found")
    with pytest.raises(ProviderHTTPError, match="404") as info:
        await model_for(openai_stub).generate("hi")
    assert info.value.hint == "check the model name"


async def test_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_MAX_RETRIES", "1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    model = get_model(f"openai-compatible:http://127.0.0.1:{port}/v1#m")
    with pytest.raises(ProviderUnreachableError, match="cannot reach"):
        await model.generate("hi")


async def test_timeout(openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_MAX_RETRIES", "0")
    openai_stub.answer("too late", delay=1.5)
    with pytest.raises(ProviderTimeoutError):
        await model_for(openai_stub).generate("hi", settings=ModelSettings(timeout=0.3))


async def test_tool_calls_parsed_and_bad_arguments_retried(openai_stub: OpenAIStub) -> None:
    tool = Tool(name="lookup", description="Find an order",
                parameters={"type": "object", "properties": {"order_id": {"type": "integer"}},
                            "required": ["order_id"], "additionalProperties": False})
    openai_stub.answer(tool_calls=[("lookup", "{not json")]).answer(tool_calls=[("lookup", '{"order_id": 42}')])
    r = await model_for(openai_stub).generate("where is my order?", tools=[tool])
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("lookup", {"order_id": 42})]
    sent = openai_stub.requests[0].body["tools"][0]["function"]
    assert sent["name"] == "lookup" and sent["parameters"] == tool.parameters
    # the retry shows the model its own bad call and the reason
    retry_messages = openai_stub.requests[1].body["messages"]
    assert retry_messages[-2]["role"] == "assistant" and "not a JSON object" in retry_messages[-1]["content"]

    openai_stub.answer(tool_calls=[("lookup", '{"order_id": "x"}')]).answer(tool_calls=[("lookup", "[]")])
    with pytest.raises(ToolCallError):
        await model_for(openai_stub).generate("again", tools=[tool])


async def test_streamed_tool_calls(openai_stub: OpenAIStub) -> None:
    tool = Tool(name="lookup", parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    openai_stub.answer(tool_calls=[("lookup", json.dumps({"q": "refund policy"}))])
    r = await model_for(openai_stub).generate("x", tools=[tool], stream=True)
    assert r.tool_calls[0].arguments == {"q": "refund policy"}
    assert r.finish_reason == "tool_calls"


def test_missing_key_is_a_clear_user_error() -> None:
    with pytest.raises(MissingCredentialsError) as info:
        get_model("openai:gpt-4.1-mini")
    assert "OPENAI_API_KEY" in (info.value.hint or "")


async def test_openai_key_and_base_url_reach_the_server(openai_stub: OpenAIStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    openai_stub.answer("ok")
    r = await get_model("openai:gpt-4.1-mini").generate("hi")
    assert r.text == "ok"
    assert openai_stub.requests[0].headers["authorization"] == "Bearer sk-test-123"
    assert r.cost_usd is not None and r.cost_usd > 0  # a known price


async def test_responses_api_round_trip(openai_stub: OpenAIStub) -> None:
    openai_stub.answer('{"label": "ham"}')
    openai_stub.answer(tool_calls=[("lookup", '{"q": "x"}')])
    model = model_for(openai_stub, api="responses")
    r = await model.generate("classify", output_schema=SCHEMA)
    assert r.parsed == {"label": "ham"}
    assert (r.usage.input_tokens, r.usage.cached_tokens, r.usage.reasoning_tokens) == (9, 1, 2)
    sent = openai_stub.requests[0]
    assert sent.path.endswith("/responses")
    assert sent.body["input"] == [{"role": "user", "content": "classify"}]
    assert sent.body["text"]["format"]["type"] == "json_schema"
    assert sent.body["text"]["format"]["strict"] is True
    tool = Tool(name="lookup", parameters={"type": "object", "properties": {"q": {"type": "string"}}})
    r = await model.generate("find", tools=[tool])
    assert r.tool_calls[0].arguments == {"q": "x"} and r.finish_reason == "tool_calls"
    assert openai_stub.requests[1].body["tools"][0]["name"] == "lookup"
