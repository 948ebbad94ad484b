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
