"""Which tool calls of an Agent node wait for a person: approval policies matched by normalised name.

A policy maps tool names to ``always`` (a person approves each call first) or ``never``; the
key ``*`` sets the policy of the tools no other key names. Names are compared *normalised*
(case, ``-``, ``_``, spaces and other punctuation ignored: ``Delete_All``, ``delete-all`` and
``deleteall`` are one name), so a server cannot slip past ``delete_all: always`` by exposing
``Delete_All``. Tools whose normalised names collide are ambiguous: each of them needs
approval whatever a key says (``always`` is the strictest policy).

Defaults differ on purpose: an MCP server decides the tools it exposes, so a tool its policy
does not name needs approval (:data:`MCP_DEFAULT`); Python tools are listed one by one by the
spec's author, so they run without approval unless the policy says otherwise
(:data:`PYTHON_DEFAULT`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["MCP_DEFAULT", "PYTHON_DEFAULT", "Decision", "decide", "name_key"]

MCP_DEFAULT = "always"
"""Policy of an MCP tool no key names, when the server's policy has no ``*``."""
PYTHON_DEFAULT = "never"
"""Policy of a Python tool no key names, when the node's policy has no ``*``."""

_STRICTNESS = {"never": 0, "always": 1}


def name_key(name: str) -> str:
    """``name`` as policies compare it: case-folded, only letters and digits kept."""
    return re.sub(r"[^a-z0-9]", "", name.casefold())


@dataclass(frozen=True)
class Decision:
    """The policy one tool follows, and why."""

    policy: str
    """``always`` or ``never``."""
    named: bool
    """Whether a key of the policy (other than ``*``) names the tool."""
    ambiguous: bool
    """Whether another offered tool has the same normalised name."""

    def reason(self) -> str:
        """Why this tool needs approval, for the approver (empty when a key names it plainly)."""
        if self.ambiguous:
            return "another tool has the same name up to case and punctuation, so every call needs approval"
        if not self.named:
            return "no approval policy names this tool"
        return ""


def decide(approval: Mapping[str, str], tools: Iterable[str], *, default: str) -> dict[str, Decision]:
    """The :class:`Decision` for each of ``tools`` (the names offered together) under ``approval``."""
    tools = list(tools)
    fallback = approval.get("*", default)
    by_key: dict[str, str] = {}
    for key, policy in approval.items():
        if key == "*":
            continue
        k = name_key(key)
        # Two keys that normalise alike: the stricter one holds.
        if k not in by_key or _STRICTNESS[policy] > _STRICTNESS[by_key[k]]:
            by_key[k] = policy
    seen = Counter(name_key(t) for t in tools)
    out: dict[str, Decision] = {}
    for t in tools:
        k = name_key(t)
        named = k in by_key
        ambiguous = seen[k] > 1
        policy = "always" if ambiguous else by_key[k] if named else fallback
        out[t] = Decision(policy, named, ambiguous)
    return out
