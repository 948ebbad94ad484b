"""Which Agent nodes' tokens are the run's answer (``keel.workflows.answer``), and the engine's
``text_restart`` when words precede a tool call."""

from __future__ import annotations

import pytest

from keel.testing import scripted
from keel.workflows import arun, validate
from keel.workflows.answer import answer_nodes
from tests.workflows import tools_for_tests

HEAD = """
name: w
nodes:
  - {id: start, type: start}
  - {id: bot, type: agent, model: "scripted:x", instructions: Answer.}
"""


@pytest.mark.parametrize(("nodes", "edges", "expected"), [
    # The agent's text is the End's default output.
    ("  - {id: done, type: end}\n", "  - {from: bot, to: done}\n", {"bot"}),
    # Through nodes that pass their input on: If/else (both ways), Set state.
    ("  - {id: route, type: if_else, branches: [{name: long, condition: 'size(input.output_text) > 9'}]}\n"
     "  - {id: keep, type: set_state, assign: {seen: 'true'}}\n"
     "  - {id: a, type: end}\n  - {id: b, type: end}\n",
     "  - {from: bot, to: route}\n  - {from: route, port: long, to: keep}\n  - {from: keep, to: a}\n"
     "  - {from: route, port: else, to: b}\n", {"bot"}),
    # An End expression reshapes it.
    ("  - {id: done, type: end, output: \"{'answer': input.output_text}\"}\n", "  - {from: bot, to: done}\n",
     set()),
    # One branch goes through a Transform.
    ("  - {id: route, type: if_else, branches: [{name: long, condition: 'size(input.output_text) > 9'}]}\n"
     "  - {id: cut, type: transform, expression: 'input.output_text'}\n"
     "  - {id: a, type: end}\n  - {id: b, type: end}\n",
     "  - {from: bot, to: route}\n  - {from: route, port: long, to: cut}\n  - {from: cut, to: a}\n"
     "  - {from: route, port: else, to: b}\n", set()),
    # A check may replace it.
    ("  - {id: check, type: guardrails, text: input.output_text, checks: [jailbreak]}\n"
     "  - {id: a, type: end}\n  - {id: b, type: end}\n",
     "  - {from: bot, to: check}\n  - {from: check, port: pass, to: a}\n  - {from: check, port: fail, to: b}\n",
     set()),
])
def test_answer_nodes(spec_file, nodes: str, edges: str, expected: set[str]) -> None:
    wf = validate(spec_file(HEAD + nodes + "edges:\n  - {from: start, to: bot}\n" + edges))
    assert answer_nodes(wf) == expected


def test_a_structured_agent_is_never_an_answer_node(spec_file) -> None:
    wf = validate(spec_file(HEAD.replace("instructions: Answer.}", "instructions: Answer., output_schema: "
                                         "{type: object, properties: {a: {type: string}}, required: [a], "
                                         "additionalProperties: false}}")
                            + "  - {id: done, type: end}\nedges:\n  - {from: start, to: bot}\n"
                            "  - {from: bot, to: done}\n"))
    assert answer_nodes(wf) == frozenset()


async def test_words_before_a_tool_call_are_followed_by_text_restart(spec_file, store) -> None:
    tools_for_tests.CALLS.clear()
    path = spec_file(HEAD.replace('"scripted:x", instructions: Answer.}', '"scripted:x", instructions: Answer., '
                                  'tools: ["tests.workflows.tools_for_tests:lookup_order"]}')
                     + "  - {id: done, type: end}\nedges:\n  - {from: start, to: bot}\n  - {from: bot, to: done}\n")
    events: list = []
    with scripted("x") as x:
        x.reply("Let me look that order up.", tool_calls=[("lookup_order", {"order_id": 7})])
        x.reply("Order 7 was delivered.")
        result = await arun(path, "where is order 7?", store=store, on_event=events.append, stream_text=True)
    assert result.output == "Order 7 was delivered."
    kinds = [(e.kind, e.text) for e in events if e.kind in ("text_delta", "text_restart")]
    restart = kinds.index(("text_restart", None))
    assert "".join(t for k, t in kinds[:restart]) == "Let me look that order up."
    assert "".join(t for k, t in kinds[restart + 1:]) == "Order 7 was delivered."
