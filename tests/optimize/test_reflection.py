"""Reading new instructions out of a reflection reply (keel.optimize.reflection.parse_proposal)."""

from __future__ import annotations

import pytest

from keel.optimize.reflection import parse_proposal


@pytest.mark.parametrize(("reply", "expected"), [
    ("Better:\n```\nSay the intent only.\n```\nDone.", "Say the intent only."),
    ("```text\nSay the intent only.\n```", "Say the intent only."),
    # a reply cut off at its token limit (or a small model that never closes the fence)
    ("Here are the new instructions:\n```\nSay the intent only.\nUse the labels", "Say the intent only.\nUse the labels"),
    ("```markdown\nSay the intent only.", "Say the intent only."),
])
def test_a_fenced_block_is_the_proposal(reply, expected):
    assert parse_proposal(reply, "Classify.") == (expected, "")


@pytest.mark.parametrize(("reply", "why"), [
    ("The instructions look fine to me.", "no ``` block in the reply"),
    ("```\n```", "the ``` block is empty"),
    ("```\n", "the ``` block is empty"),
    ("```\nClassify.\n```", "the instructions are unchanged"),
    ("Keep it:\n```\nClassify.", "the instructions are unchanged"),
])
def test_garbage_says_why(reply, why):
    assert parse_proposal(reply, "Classify.") == (None, why)


def test_a_reply_without_fences_is_tried_whole_and_the_minibatch_judges_it(tmp_path):
    """Small reflection models often answer with bare instructions. GEPA tries such a reply whole;
    so does Keel now (it used to discard it): here it is the right answer and wins."""
    import asyncio

    from keel.models.scripted import get_script
    from keel.optimize import Options, optimize_prompt
    from keel.store import open_store
    from tests.optimize.scripted_task import PROPOSAL, install, write_eval

    install()
    get_script("opt-plain").default = lambda request: f"Here are better instructions:\n\n{PROPOSAL}"
    run = asyncio.run(optimize_prompt(open_store(), write_eval(tmp_path), target="cities",
                                      options=Options(budget=20, reflection_model="scripted:opt-plain", demos=0)))
    result = run.result
    assert result["best_score"] == 1.0 and result["seed_score"] == 0.0
    assert result["candidates"][result["best"]]["instructions"] == f"Here are better instructions:\n\n{PROPOSAL}"
    assert result["unusable_reflections"][0].startswith("no ``` block in the reply, tried whole")
