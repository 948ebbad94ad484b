"""TypeScript of the export, rewritten as Python text: expressions, object literals, names.

No TypeScript parser: the export writes a small, fixed subset (object and array literals,
``===``, ``&&``, ``||``, ``!``, ``??``, ``?.``, ``a ? b : c``, template literals without
``${...}``, ``new X(...)``), which these functions turn into the Python :mod:`ast` reads.
String literals are never touched; camelCase names become snake_case, as the Python export
spells them (``classifyResultTemp`` -> ``classify_result_temp``).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["STRING_RE", "balance", "balanced", "fields", "join_template_lines", "js_to_py", "outside_strings",
           "snake", "split_top", "template_text"]

STRING_RE = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`)""")
"""A string literal: double-, single-quoted or a template literal."""


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}


def outside_strings(code: str, fn: Any) -> str:
    """``code`` with ``fn`` applied to the text between its string literals."""
    parts = STRING_RE.split(code)
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(parts))


def _masked(code: str) -> str:
    """``code`` with the inside of every string literal blanked (same length, same positions)."""
    parts = STRING_RE.split(code)
    return "".join(p[0] + "_" * (len(p) - 2) + p[-1] if i % 2 else p for i, p in enumerate(parts))


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def balance(code: str) -> int:
    """Opening minus closing brackets outside string literals."""
    code = "".join(p for i, p in enumerate(STRING_RE.split(code)) if not i % 2)
    return sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")


def balanced(code: str, start: int) -> int:
    """The index just after the bracket that closes the one at ``code[start]`` (-1: never closed)."""
    masked, depth = _masked(code), 0
    for i in range(start, len(masked)):
        if masked[i] in "([{":
            depth += 1
        elif masked[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def split_top(code: str, sep: str = ",") -> list[str]:
    """``code`` split at ``sep`` where no bracket is open (string literals kept whole)."""
    masked, out, depth, last = _masked(code), [], 0, 0
    for i, ch in enumerate(masked):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append(code[last:i])
            last = i + 1
    out.append(code[last:])
    return [p.strip() for p in out if p.strip()]


def fields(body: str) -> list[tuple[str, str]]:
    """``key: value`` pairs of an object literal's top level (``body`` without its braces)."""
    out = []
    for entry in split_top(body):
        key, _, value = entry.partition(":")
        out.append((key.strip().strip("\"'"), value.strip() if _ else key.strip()))
    return out


def template_text(literal: str) -> str:
    """The text of a template literal (`` `...` ``), its escapes (``\\n``, ``\\t``, ``\\```, ...) undone."""
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), literal[1:-1], flags=re.S)


def join_template_lines(text: str) -> str:
    """Template literals that span lines, each put on one line (``\\n`` escapes), so the
    line-by-line reading sees whole statements. ``//`` comments and quoted strings are skipped."""
    out, state, i = [], None, 0
    while i < len(text):
        ch = text[i]
        if state is None:
            if ch in "\"'`":
                state = ch
            elif text.startswith("//", i):
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
                out.append(text[i:end])
                i = end
                continue
        elif ch == "\\":
            out.append(text[i:i + 2])
            i += 2
            continue
        elif ch == state:
            state = None
        elif ch == "\n":
            if state == "`":
                out.append("\\n")
                i += 1
                continue
            state = None  # an unclosed quote ends with its line
        out.append(ch)
        i += 1
    return "".join(out)


def _ternary(code: str) -> tuple[str, str, str] | None:
    """The test, yes and no of ``test ? yes : no`` at the top level of ``code``; None if there is none."""
    masked = _masked(code)
    depth, q, nested = 0, None, 0
    for i, ch in enumerate(masked):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth or ch not in "?:":
            continue
        elif ch == "?":
            if masked[i + 1:i + 2] in ("?", ".") or masked[i - 1:i] == "?":
                continue  # `??` and `?.`
            if q is None:
                q = i
            else:
                nested += 1
        elif q is not None:
            if nested == 0:
                return code[:q], code[q + 1:i], code[i + 1:]
            nested -= 1
    return None


def js_to_py(code: str) -> str:
    """A JavaScript expression, object literal or simple statement in Python syntax."""
    code = code.strip()
    m = re.match(r"^([\w.\[\]\"']+\s*=(?!=)\s*)(.*)$", code, re.S)
    prefix, rhs = (m.group(1), m.group(2)) if m else ("", code)
    inner = rhs
    while inner.startswith("(") and balanced(inner, 0) == len(inner):
        inner = inner[1:-1].strip()
    parts = _ternary(inner)
    if parts is not None:
        test, yes, no = (js_to_py(p) for p in parts)
        value = f"(({yes}) if ({test}) else ({no}))"
        return f"{js_to_py(prefix.rstrip('= '))} = {value}" if prefix else value

    def fix(part: str) -> str:
        part = re.sub(r"\bnew\s+(?=[A-Z])", "", part)
        part = re.sub(r"\.\.\.", "*", part)
        part = part.replace("===", "==").replace("!==", "!=").replace("&&", " and ").replace("||", " or ")
        part = part.replace("??", " or ").replace("?.", ".")
        part = re.sub(r"!(?!=)", " not ", part)
        part = re.sub(r"\btrue\b", "True", part)
        part = re.sub(r"\bfalse\b", "False", part)
        part = re.sub(r"\b(null|undefined)\b", "None", part)
        part = re.sub(r"([{,]\s*)([A-Za-z_]\w*)\s*:", r'\1"\2":', part)
        return re.sub(r"(?<![\w.\"])([a-z]+[A-Z]\w*)", lambda m: snake(m.group(1)), part)

    pieces = STRING_RE.split(code)
    return "".join((json.dumps(template_text(p), ensure_ascii=False) if p.startswith("`") else p) if i % 2
                   else fix(p) for i, p in enumerate(pieces))
