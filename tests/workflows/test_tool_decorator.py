"""``@keel.tool`` (issue 19): the JSON schema from the signature and the docstring, arguments
validated and converted by the signature before the function runs; and tool results cut to the
Agent node's ``max_tool_result_tokens``, with the note the model sees in its next request."""

from __future__ import annotations

from datetime import date

from keel.testing import scripted
from keel.workflows import arun
from keel.workflows.tool_results import estimate_tokens, truncate_result
from keel.workflows.tools import ToolContext, resolve_tool
from tests.workflows import decorated_tools

MODULE = "tests.workflows.decorated_tools"
CTX = ToolContext("run", "node", "key", "call")


def test_the_schema_comes_from_the_type_hints_and_the_docstring() -> None:
    t = resolve_tool(f"{MODULE}:convert")
    assert t.tool.description == "Convert an amount to another currency."  # sections left out
    assert t.tool.parameters == {
        "type": "object",
        "properties": {
            "amount": {"type": "number", "description": "the amount, in the source currency"},
            "currency": {"type": "string", "enum": ["EUR", "USD"], "description": "the currency to convert to"},
            "on": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}], "default": None,
                   "description": "the day of the rate (default: today)"},
        },
        "required": ["amount", "currency"],
        "additionalProperties": False,
    }
    t = resolve_tool(f"{MODULE}:order")  # registered under another name; Sphinx-style docstring
    assert t.name == "place_order" and t.tool.description == "Place an order."
    props = t.tool.parameters["properties"]
    assert props["lines"]["description"] == "what to order, one line per product"
    assert props["note"]["description"] == "a note for the warehouse"
    assert t.tool.parameters["$defs"]["Line"]["required"] == ["sku"]
    assert resolve_tool("place_order") is t  # and by its registered name


async def test_arguments_are_validated_and_converted_before_the_function_runs() -> None:
    decorated_tools.SEEN.clear()
    convert, order = resolve_tool(f"{MODULE}:convert"), resolve_tool(f"{MODULE}:order")
    assert await convert.call({"amount": 10, "currency": "USD", "on": "2025-03-01"}, CTX) == "11.00 USD"
    assert decorated_tools.SEEN[-1] == {"amount": 10.0, "currency": "USD", "on": date(2025, 3, 1)}
    assert await order.call({"lines": [{"sku": "kettle", "quantity": 2}, {"sku": "cup"}]}, CTX) == "ordered 3 items"
    assert isinstance(decorated_tools.SEEN[-1]["lines"][0], decorated_tools.Line)
    seen = len(decorated_tools.SEEN)
    bad = await convert.call({"amount": 10, "currency": "GBP", "on": "yesterday"}, CTX)
    assert bad.startswith("error: invalid arguments for tool convert: currency: Input should be 'EUR' or 'USD'")
    assert "on: Input should be a valid date" in bad
    assert await order.call({"lines": [{"quantity": 2}], "extra": 1}, CTX) == (
        "error: invalid arguments for tool place_order: lines.0.sku: Field required; "
        "extra: Extra inputs are not permitted")
    assert len(decorated_tools.SEEN) == seen  # the function never ran


async def test_an_invalid_call_goes_back_to_the_model_which_corrects_it(spec_file, store) -> None:
    decorated_tools.SEEN.clear()
    path = spec_file(f"""
    name: money
    nodes:
      - {{id: start, type: start}}
      - id: clerk
        type: agent
        model: scripted:clerk
        tools: ["{MODULE}:convert"]
      - {{id: done, type: end}}
    edges:
      - {{from: start, to: clerk}}
      - {{from: clerk, to: done}}
    """)
    with scripted("clerk") as clerk:
        # the JSON schema allows any string for `on`; the signature's `date` does not
        clerk.reply(tool_calls=[("convert", {"amount": 5, "currency": "EUR", "on": "next tuesday"})])
        clerk.reply(tool_calls=[("convert", {"amount": 5, "currency": "EUR", "on": "2025-06-03"})])
        clerk.reply("5 euros is 5.50 EUR")
        result = await arun(path, "convert 5", store=store)
    assert result.status == "succeeded", result.error
    first, second = clerk.calls[1].messages[-1].content, clerk.calls[2].messages[-1].content
    assert first == "error: invalid arguments for tool convert: on: Input should be a valid date or datetime, " \
                    "invalid character in year"
    assert second == "5.50 EUR"
    assert [{"amount": 5.0, "currency": "EUR", "on": date(2025, 6, 3)}] == decorated_tools.SEEN


async def test_a_long_tool_result_is_cut_to_the_budget_with_a_note_the_model_sees(spec_file, store) -> None:
    full = decorated_tools.search_logs("timeout")
    total = estimate_tokens(full)
    path = spec_file(f"""
    name: logs
    nodes:
      - {{id: start, type: start}}
      - id: clerk
        type: agent
        model: scripted:clerk
        tools: ["{MODULE}:search_logs"]
        max_tool_result_tokens: 200
      - {{id: done, type: end}}
    edges:
      - {{from: start, to: clerk}}
      - {{from: clerk, to: done}}
    """)
    with scripted("clerk") as clerk:
        clerk.reply(tool_calls=[("search_logs", {"query": "timeout"})])
        clerk.reply("Too many lines; narrowing down.")
        result = await arun(path, "why do workers fail?", store=store)
    assert result.status == "succeeded", result.error
    seen = clerk.calls[1].messages[-1].content  # the model's next request holds the cut result
    assert seen.endswith(f"\n[truncated: {total:,} tokens → 200; ask for a narrower query]")
    assert seen.startswith(full[:200]) and estimate_tokens(seen.rsplit("\n[truncated", 1)[0]) == 200
    assert total > 20_000 and len(seen) < 1_200
    # without a budget the whole result goes through
    unlimited = path.read_text().replace("max_tool_result_tokens: 200", "max_turns: 3")
    assert "max_tool_result_tokens" not in unlimited
    path.write_text(unlimited)
    with scripted("clerk") as clerk:
        clerk.reply(tool_calls=[("search_logs", {"query": "timeout"})])
        clerk.reply("ok")
        await arun(path, "why do workers fail?", store=store)
    assert clerk.calls[1].messages[-1].content == full


def test_truncate_result_edges() -> None:
    assert truncate_result("a b c", None) == "a b c"
    assert truncate_result("a b c", 3) == "a b c"
    assert truncate_result("a b c d", 3) == "a b c\n[truncated: 4 tokens → 3; ask for a narrower query]"
    assert truncate_result('{"k": 1}', 2) == '{"\n[truncated: 7 tokens → 2; ask for a narrower query]'
    assert estimate_tokens("12,345 tokens → 2,000") == 8
