"""The local provider, end to end, on a tiny random-weight GGUF model run by llama.cpp."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("llguidance")
pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

import jsonschema

from keel.errors import (
    ProviderTimeoutError,
    SchemaError,
    StructuredOutputError,
    UnknownModelError,
    UserError,
)
from keel.models._retry import RetryPolicy
from keel.models.base import ModelRequest
from keel.models.local import LocalModel
from keel.models.types import (
    Message,
    ModelSettings,
    ResponseDone,
    TextDelta,
    Tool,
    ToolCall,
)
from keel.testing._tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.local

BOUNDED = {
    "type": "object",
    "properties": {
        "sentiment": {"enum": ["positive", "negative", "neutral"]},
        "summary": {"type": "string", "maxLength": 20},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
    },
    "required": ["sentiment", "summary", "score", "tags"],
    "additionalProperties": False,
}

WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_tiny_gguf(tmp_path_factory.mktemp("models") / "tiny.gguf", seed=0))


@pytest.fixture(autouse=True)
def _keel_home(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "keel-home"))


@pytest.fixture
def model(gguf_path: str) -> LocalModel:
    return LocalModel(gguf_path)


def _sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_tiny_gguf_is_deterministic_by_seed(tmp_path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", seed=7)
    b = write_tiny_gguf(tmp_path / "b.gguf", seed=7)
    c = write_tiny_gguf(tmp_path / "c.gguf", seed=8)
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)
    assert a.stat().st_size < 2_000_000


def test_model_identity(model: LocalModel, gguf_path: str) -> None:
    assert model.provider == "local"
    assert model.structured_mode == "grammar"
    assert model.name == gguf_path
    assert model.model_string == f"local:{gguf_path}"


def test_unconstrained_generation_returns_text_and_usage(model: LocalModel) -> None:
    async def run():
        return await model.generate(
            "Hello, how are you?", settings=ModelSettings(max_tokens=24, seed=1)
        )

    r = asyncio.run(run())
    assert isinstance(r.text, str) and r.text
    assert r.usage.input_tokens > 0
    assert 0 < r.usage.output_tokens <= 24
    assert r.finish_reason in ("stop", "length")
    assert r.model == model.model_string
    # the same seed gives the same text
    assert asyncio.run(run()).text == r.text


def test_max_tokens_gives_finish_reason_length(model: LocalModel) -> None:
    schema = {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 40}
    request = ModelRequest(
        messages=(Message.user("List things"),),
        output_schema=schema,
        settings=ModelSettings(max_tokens=5, seed=0),
    )

    async def attempt():
        return [item async for item in model._attempt(request)]

    (response,) = asyncio.run(attempt())
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 5
    # through generate(), a cut-off document is invalid output (after one retry)
    call = model.generate("List things", output_schema=schema, settings=ModelSettings(max_tokens=5))
    with pytest.raises(StructuredOutputError, match="cut off"):
        asyncio.run(_await(call))


async def _await(call):
    return await call


def test_bounded_schema_is_always_valid_at_temperature_1(model: LocalModel) -> None:
    async def run():
        out = []
        for _ in range(200):
            r = await model.generate(
                "Classify: the product broke after a day.",
                output_schema=BOUNDED,
                settings=ModelSettings(temperature=1.0),
            )
            out.append(r)
        return out

    responses = asyncio.run(run())
    invalid = []
    for r in responses:
        try:
            value = json.loads(r.text)
            jsonschema.validate(value, BOUNDED)
        except (ValueError, jsonschema.ValidationError) as e:
            invalid.append((r.text, e))
            continue
        assert r.parsed == value
        assert r.finish_reason == "stop"
        assert "\n" not in r.text and r.text == r.text.strip()  # compact JSON
    assert invalid == []
    assert len({r.text for r in responses}) > 150  # sampling really varies


def test_streaming_deltas_concatenate_to_the_final_text(model: LocalModel) -> None:
    async def run(schema):
        events = [
            e
            async for e in model.generate(
                "Say something",
                output_schema=schema,
                stream=True,
                settings=ModelSettings(max_tokens=200, seed=3),
            )
        ]
        return events

    for schema in (None, BOUNDED):
        events = asyncio.run(run(schema))
        deltas = [e for e in events if isinstance(e, TextDelta)]
        assert deltas, "expected streamed text"
        assert isinstance(events[-1], ResponseDone)
        final = events[-1].response
        assert "".join(d.text for d in deltas) == final.text
        assert final.ttft_ms is not None


def test_tool_call_with_valid_arguments(model: LocalModel) -> None:
    async def run():
        calls, answers = [], []
        for seed in range(40):
            r = await model.generate(
                "What is the weather in Paris?",
                tools=[WEATHER],
                settings=ModelSettings(seed=seed, temperature=1.0, max_tokens=48),
            )
            (calls if r.tool_calls else answers).append(r)
            if calls and answers:
                break
        return calls, answers

    calls, answers = asyncio.run(run())
    assert calls, "no tool call in 40 seeds"
    for r in calls:
        assert r.finish_reason == "tool_calls"
        (call,) = r.tool_calls
        assert call.name == "get_weather"
        assert call.id
        jsonschema.validate(call.arguments, WEATHER.parameters)
    for r in answers:
        assert r.finish_reason in ("stop", "length")
        assert isinstance(r.text, str)


def test_tools_with_output_schema_and_tool_results_in_history(model: LocalModel) -> None:
    schema = {
        "type": "object",
        "properties": {"verdict": {"enum": ["go", "stay"]}},
        "required": ["verdict"],
        "additionalProperties": False,
    }
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris", "unit": "celsius"})
    messages = [
        Message.system("You plan trips."),
        Message.user("Should I go to Paris?"),
        Message.assistant(tool_calls=(call,)),
        Message.tool("call_1", '{"temp": 21, "sky": "clear"}'),
    ]

    async def run():
        return [
            await model.generate(
                messages,
                tools=[WEATHER],
                output_schema=schema,
                settings=ModelSettings(seed=seed, temperature=1.0, max_tokens=48),
            )
            for seed in range(10)
        ]

    for r in asyncio.run(run()):
        if r.tool_calls:
            jsonschema.validate(r.tool_calls[0].arguments, WEATHER.parameters)
        else:
            jsonschema.validate(r.parsed, schema)
            assert json.loads(r.text) == r.parsed


def test_schema_llguidance_cannot_enforce_gives_schema_error(model: LocalModel) -> None:
    for schema in (
        {"type": "string", "pattern": "^(?=a)a+$"},  # look-ahead
        {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
        {"not": {"type": "string"}},
    ):
        with pytest.raises(SchemaError) as info:
            asyncio.run(_await(model.generate("x", output_schema=schema)))
        assert "\n" not in info.value.message
        assert info.value.hint


def test_inexpressible_tool_parameters_give_schema_error(model: LocalModel) -> None:
    tool = Tool(name="t", parameters={"type": "object", "properties": {"a": {"not": {}}}})
    with pytest.raises(SchemaError, match="tool"):
        asyncio.run(_await(model.generate("x", tools=[tool])))


def test_malformed_schema_gives_schema_error(model: LocalModel) -> None:
    with pytest.raises(SchemaError):
        model.generate("x", output_schema={"type": "no-such-type"})


def test_missing_model_file_is_a_clear_user_error(tmp_path) -> None:
    path = str(tmp_path / "nope.gguf")
    with pytest.raises(UnknownModelError) as info:
        asyncio.run(_await(LocalModel(path).generate("hi")))
    assert isinstance(info.value, UserError)
    assert path in info.value.message
    assert info.value.hint


def test_unloadable_file_is_a_user_error(tmp_path) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(UserError) as info:
        asyncio.run(_await(LocalModel(str(path)).generate("hi")))
    assert str(path) in info.value.message


def test_cancellation_stops_the_worker(gguf_path: str) -> None:
    # Uncancelled, this call would generate ~8000 tokens (over a second).
    model = LocalModel(gguf_path, n_ctx=8192)
    schema = {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 400}

    async def run():
        first = asyncio.Event()

        async def consume():
            async for _ in model.generate(
                "List", output_schema=schema, stream=True, settings=ModelSettings(max_tokens=8000)
            ):
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the worker stops at the next token, so the next call is not stuck behind it
        loop = asyncio.get_running_loop()
        started = loop.time()
        r = await model.generate("Hi", settings=ModelSettings(max_tokens=4, seed=0))
        return r, loop.time() - started

    r, waited = asyncio.run(run())
    assert r.text is not None
    assert waited < 0.5


def test_timeout_is_a_provider_timeout(gguf_path: str) -> None:
    model = LocalModel(gguf_path, n_ctx=8192, retry=RetryPolicy(max_attempts=1))
    schema = {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 400}
    call = model.generate(
        "List", output_schema=schema, settings=ModelSettings(max_tokens=8000, timeout=0.05)
    )
    with pytest.raises(ProviderTimeoutError):
        asyncio.run(_await(call))


def test_concurrent_calls_share_one_loaded_model(model: LocalModel, gguf_path: str) -> None:
    other = LocalModel(gguf_path)

    async def run():
        return await asyncio.gather(
            *(
                m.generate("Classify", output_schema=BOUNDED, settings=ModelSettings(seed=i))
                for i, m in enumerate([model, other] * 4)
            )
        )

    for r in asyncio.run(run()):
        jsonschema.validate(r.parsed, BOUNDED)
