"""Text helpers of the mapping: CEL literals, Agent Builder's names rewritten to Keel's, slugs.

Agent Builder keeps expressions as ``{"expression": ..., "format": "cel"}``; its CEL reads a
node's output as ``input.<field>`` and a Guardrails node's text as ``input.safe_text``, where
Keel has ``input.output_parsed.<field>`` and ``input.output_text`` (decision 0012).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["STRING_RE", "cel_literal", "cel_string", "expr", "model_name", "outside_strings", "repair_object",
           "rewrite", "slug"]

STRING_RE = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
"""A CEL string literal (double- or single-quoted); ``split`` with it alternates code and strings."""


def cel_string(text: str) -> str:
    """``text`` as a CEL string literal."""
    return json.dumps(text, ensure_ascii=False)


def cel_literal(expr: Any) -> str | None:
    """The string a CEL expression that is one string literal stands for; None otherwise."""
    if not isinstance(expr, str):
        return None
    s = expr.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'" and STRING_RE.fullmatch(s):
        try:
            return json.loads(s) if s[0] == '"' else json.loads('"' + s[1:-1].replace('"', '\\"') + '"')
        except ValueError:
            return None
    return None


def expr(value: Any) -> str:
    """The CEL source of an Agent Builder ``{"expression": ..., "format": "cel"}`` (or a bare string)."""
    if isinstance(value, dict):
        value = value.get("expression")
    return value if isinstance(value, str) else ""


def outside_strings(source: str, fn: Any) -> str:
    """``source`` with ``fn`` applied to the code between its string literals."""
    parts = STRING_RE.split(source)
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(parts))


def rewrite(source: str) -> str:
    """Agent Builder's names for node outputs -> Keel's (string literals untouched)."""

    def names(code: str) -> str:
        code = re.sub(r"(?<![\w.])undefined(?!\w)", "null", code)
        code = re.sub(r"(?<![\w.])input\s*\.\s*safe_text(?!\w)", "input.output_text", code)
        return re.sub(r"(?<![\w.])input\s*\.\s*(?!output_text\b|output_parsed\b)([A-Za-z_]\w*)",
                      r"input.output_parsed.\1", code)

    return outside_strings(source, names).strip()


def slug(text: str, default: str) -> str:
    """``text`` as a Keel id (lower case, ``_``-separated, starting with a letter)."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:56]
    if not s or not s[0].isalpha():
        s = f"{default}_{s}" if s else default
    return s


def model_name(name: str) -> str:
    """An OpenAI model name as a Keel model string (``gpt-4.1`` -> ``openai:gpt-4.1``)."""
    return name if ":" in name else f"openai:{name}"


def repair_object(source: str) -> str | None:
    """``{"a": , "b": x}`` -> ``{"b": x}``: Agent Builder's export leaves out entries without a value."""
    s = source.strip()
    if not (s.startswith("{") and s.endswith("}")):
        return None
    entries, depth, cur, quote = [], 0, "", None
    for ch in s[1:-1]:
        if quote:
            cur += ch
            if ch == quote and not cur.endswith("\\" + quote):
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            entries.append(cur)
            cur = ""
        else:
            cur += ch
    entries.append(cur)
    kept = [e.strip() for e in entries if ":" in e and e.split(":", 1)[1].strip()]
    return "{" + ", ".join(kept) + "}"
