from __future__ import annotations

import asyncio

import pytest

from keel.errors import ProviderHTTPError, ScriptError, StructuredOutputError, ToolCallError
from keel.models import Message, ResponseDone, StreamRestart, TextDelta, Tool, get_model
from keel.store import ModelCalls, open_store
from keel.testing import scripted

SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
          "required": ["city"], "additionalProperties": False}


async def test_replies_in_order_and_calls_are_recorded() -> None:
    with scripted("bot") as m:
        m.reply("one").reply("two")
        model = get_model("scripted:bot")
        assert model is m
        assert (await model.generate("a")).text == "one"
        assert (await model.generate([Message.system("s"), Message.user("b")])).text == "two"
    assert [c.messages[-1].content for c in m.calls] == ["a", "b"]
    rows = ModelCalls(open_store()).recent()
    assert [(r.provider, r.model, r.status) for r in rows] == [("scripted", "bot", "ok")] * 2


def test_leftover_replies_fail_the_block() -> None:
    with pytest.raises(ScriptError, match="1 unused reply"), scripted("left") as m:
        m.reply("never used")


async def test_running_out_of_replies_fails_the_call() -> None:
    with scripted("short"), pytest.raises(ScriptError, match="no reply left"):
        await get_model("scripted:short").generate("hi")


async def test_echo_is_built_in() -> None:
    assert (await get_model("scripted:echo").generate("ping")).text == "ping"


async def test_invalid_structured_reply_is_retried_with_the_error() -> None:
    with scripted("s") as m:
        m.reply("{not json").reply(parsed={"city": "Lyon"})
        r = await get_model("scripted:s").generate("where?", output_schema=SCHEMA)
    assert r.parsed == {"city": "Lyon"}
    retry_prompt = m.calls[1].messages[-1].content
    assert "invalid" in retry_prompt and "JSON" in retry_prompt
    statuses = [row.status for row in ModelCalls(open_store()).recent()]
    assert sorted(statuses) == ["invalid_output", "ok"]


async def test_twice_invalid_raises_a_typed_error() -> None:
    with scripted("bad") as m:
        m.reply(parsed={"city": "x" * 50}).reply(parsed={"town": "Lyon"})
        with pytest.raises(StructuredOutputError, match="invalid output twice") as info:
            await get_model("scripted:bad").generate("where?", output_schema=SCHEMA)
    assert info.value.output == '{"town": "Lyon"}'


async def test_tool_call_arguments_are_validated() -> None:
    tool = Tool(name="refund", parameters={"type": "object", "properties": {"amount": {"type": "number"}},
                                          "required": ["amount"], "additionalProperties": False})
    with scripted("tools") as m:
        m.reply(tool_calls=[("refund", {"amount": "lots"})]).reply(tool_calls=[("refund", {"amount": 12.5})])
        r = await get_model("scripted:tools").generate("refund me", tools=[tool])
    assert r.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("refund", {"amount": 12.5})]
    with scripted("tools2") as m:
        m.reply(tool_calls=[("delete_everything", {})]).reply(tool_calls=[("nope", {})])
        with pytest.raises(ToolCallError, match="does not exist"):
            await get_model("scripted:tools2").generate("x", tools=[tool])


async def test_streaming_yields_deltas_then_the_response() -> None:
    with scripted("stream") as m:
        m.reply("hello streaming world")
        events = [e async for e in get_model("scripted:stream").generate("x", stream=True)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "hello streaming world"
    assert isinstance(events[-1], ResponseDone)
    assert events[-1].response.ttft_ms is not None


async def test_streaming_signals_a_restart_when_an_attempt_is_rejected() -> None:
    with scripted("restart") as m:
        m.reply("nope").reply(parsed={"city": "Oslo"})
        events = [e async for e in get_model("scripted:restart").generate("x", stream=True, output_schema=SCHEMA)]
    kinds = [e.kind for e in events]
    assert "restart" in kinds and kinds[-1] == "done"
    assert isinstance(events[kinds.index("restart")], StreamRestart)


async def test_transient_errors_are_retried_permanent_ones_are_not() -> None:
    with scripted("flaky") as m:
        m.fail(ProviderHTTPError("down", status_code=503)).reply("back")
        assert (await get_model("scripted:flaky").generate("x")).text == "back"
    with scripted("broken") as m:
        m.fail(ProviderHTTPError("bad request", status_code=400))
        with pytest.raises(ProviderHTTPError):
            await get_model("scripted:broken").generate("x")


async def test_cancellation_is_recorded_and_propagates() -> None:
    with scripted("slow") as m:
        m.reply("late", delay=5)
        task = asyncio.create_task(get_model("scripted:slow").generate("x").response())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert ModelCalls(open_store()).recent()[0].status == "cancelled"


async def test_a_long_lived_model_keeps_only_recent_calls(monkeypatch) -> None:
    """`calls` is bounded, so a server answering with a scripted model does not grow without end."""
    with scripted("many") as m:
        monkeypatch.setattr(m, "KEEP_CALLS", 5)
        for i in range(8):
            m.reply("ok")
            await get_model("scripted:many").generate(f"q{i}")
    assert m.call_count == 8
    assert [c.messages[-1].content for c in m.calls] == ["q3", "q4", "q5", "q6", "q7"]
