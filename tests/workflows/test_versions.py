"""Publishing makes immutable versions; runs pin a version or take the latest; diffs between versions."""

from __future__ import annotations

import pytest

from keel.workflows import Versions, WorkflowNotFoundError, arun, diff, list_workflows, publish

V1 = """
name: greet
description: says hello
nodes:
  - {id: start, type: start}
  - {id: shape, type: transform, expression: "'hello ' + input_as_text"}
  - {id: done, type: end}
edges:
  - {from: start, to: shape}
  - {from: shape, to: done}
"""


async def test_publish_pin_latest_and_diff(spec_file, store) -> None:
    v1 = publish(spec_file(V1), store=store)
    assert (v1.name, v1.version) == ("greet", 1)
    assert publish(spec_file(V1), store=store).version == 1  # unchanged: no new version
    v2 = publish(spec_file(V1.replace("'hello '", "'hi '")), store=store)
    assert v2.version == 2
    assert (await arun("greet", "ada", store=store)).output == "hi ada"
    assert (await arun("greet", "ada", version=1, store=store)).output == "hello ada"
    # version 1 is immutable: it still holds its own spec
    assert Versions(store).get("greet", 1).spec.node("shape").expression == "'hello ' + input_as_text"
    text = diff("greet", 1, 2, store=store)
    assert "~ node shape: expression" in text
    assert "-  - {id: shape, type: transform, expression: \"'hello ' + input_as_text\"}" in text
    v3 = publish(spec_file(V1.replace("  - {from: shape, to: done}", "  - {from: shape, to: fin}").replace(
        "  - {id: done, type: end}", "  - {id: fin, type: end}")), store=store)
    text = diff("greet", 2, v3.version, store=store)
    assert "+ node fin (end)" in text and "- node done (end)" in text and "+ edge shape -[next]-> fin" in text
    assert list_workflows(store=store)[0] == {"name": "greet", "latest": 3, "published_at": v3.published_at,
                                              "description": "says hello"}


async def test_unknown_workflow_and_version(store) -> None:
    with pytest.raises(WorkflowNotFoundError, match="no published workflow named 'nope'"):
        await arun("nope", "x", store=store)
    publish(V1, store=store)
    with pytest.raises(WorkflowNotFoundError, match="did you mean 'greet'"):
        await arun("gret", "x", store=store)
    with pytest.raises(WorkflowNotFoundError, match="no version 9") as e:
        await arun("greet", "x", version=9, store=store)
    assert "published versions: 1" in e.value.hint
