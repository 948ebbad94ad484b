"""The reflection step: show a model the current instructions and how they did on a few items
(input, output, graders' feedback), and read back new instructions.

The reply must hold the new instructions between triple backticks (as GEPA asks; an opening
fence that is never closed counts, up to the end of the reply); a reply without a fence, with an
empty block, or with the same instructions again is *garbage*
(:func:`parse_proposal` returns ``None`` and says why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NO_FENCE", "Example", "parse_proposal", "reflection_prompt"]

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\n?(.*?)```", re.S)
_OPEN = re.compile(r"^[a-zA-Z0-9_-]*\n")
"""A language tag after an opening fence."""
NO_FENCE = "no ``` block in the reply"
MAX_FIELD = 1500
"""Characters of one example's input or output shown to the reflection model."""


@dataclass(frozen=True)
class Example:
    """One item as the candidate handled it."""

    input: str
    output: str
    score: float
    feedback: str
    trace: str = ""
    """A workflow run's steps (empty for a model target)."""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD] + " [...]"


def reflection_prompt(instructions: str, examples: list[Example]) -> str:
    """The user message sent to the reflection model."""
    shown = "\n\n".join(
        f"### Example {i}\nInput:\n{_clip(e.input)}\n\n"
        + (f"Steps of the run:\n{_clip(e.trace)}\n\n" if e.trace else "")
        + f"Output:\n{_clip(e.output)}\n\n"
        f"Score: {e.score:.2f} (1.00 is best)\nFeedback:\n{e.feedback}"
        for i, e in enumerate(examples, 1))
    return (
        "I gave an assistant the following instructions:\n```\n"
        f"{instructions}\n```\n\n"
        "Here are inputs it was given, the outputs it produced with those instructions, and feedback on "
        f"each output:\n\n{shown}\n\n"
        "Read the inputs, outputs and feedback carefully. Work out what the assistant did wrong and what "
        "facts or rules about the task it needs, including details the feedback reveals that the inputs do "
        "not, and any general strategy that would have worked. Then write new instructions for the assistant "
        "that fix these problems. Keep what worked.\n\n"
        "Answer with the new instructions inside one block of triple backticks (```), nothing else inside it.")


def parse_proposal(reply: str, current: str) -> tuple[str | None, str]:
    """``(instructions, "")`` from a reflection reply, or ``(None, why it is garbage)``."""
    blocks = [b.strip() for b in _FENCE.findall(reply)]
    if not blocks and reply.count("```") == 1:
        # an opening fence never closed (the reply hit its token limit, or a small model forgot):
        # what follows it is the proposal, as GEPA reads it; the minibatch judges it like any other
        blocks = [_OPEN.sub("", reply.split("```", 1)[1], count=1).strip()]
    if not blocks:
        return None, NO_FENCE
    text = max(blocks, key=len)
    if not text:
        return None, "the ``` block is empty"
    if text == current.strip():
        return None, "the instructions are unchanged"
    return text, ""
