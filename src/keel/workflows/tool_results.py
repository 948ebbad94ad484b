"""Tool results cut to a token budget before they reach the model.

An Agent node's ``max_tool_result_tokens`` bounds every tool result it sends back (Python, HTTP
and MCP tools alike). A longer result keeps its beginning and ends with a note the model can act
on, e.g. ``[truncated: 12,345 tokens → 2,000; ask for a narrower query]``; the run's memo and the
tool span keep the text as the model saw it, so a resumed run replays exactly that.

Tokens are estimated, not counted with the model's tokenizer (an Agent node may switch models,
and a remote model's tokenizer is not here): one token per word and per punctuation mark,
which is close to BPE tokenizers on English prose and a little above them on JSON.
"""

from __future__ import annotations

import re

__all__ = ["estimate_tokens", "truncate_result"]

_PIECES = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """Estimated tokens of ``text``: words and punctuation marks."""
    return sum(1 for _ in _PIECES.finditer(text))


def truncate_result(text: str, budget: int | None) -> str:
    """``text`` when it fits ``budget`` tokens (or ``budget`` is None); else its first ``budget``
    tokens and a note saying how much was cut and what to do instead."""
    if budget is None:
        return text
    end = None
    total = 0
    for total, m in enumerate(_PIECES.finditer(text), start=1):
        if total == budget:
            end = m.end()
    if total <= budget or end is None:
        return text
    return (f"{text[:end]}\n[truncated: {total:,} tokens → {budget:,}; "
            "ask for a narrower query]")
