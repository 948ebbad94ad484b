"""A canonical form of a Keel spec, to tell whether two imports give the same workflow.

Node ids and titles differ between the forms (the exported code keeps no labels, no positions
and no End expressions), so the form is the graph unfolded from Start into a tree: each node by
its type and the fields both forms carry (agent model, instructions, messages, output schema,
history flag; conditions; transform, state, guardrail and file-search settings; the start's
state and input schema), each port in a fixed order, a return to an enclosing While as
``("loop", depth)``, and every End as ``"end"``. CEL is compared with whitespace outside string
literals removed. Output schemas are compared without ``title``, ``description`` and ``enum``,
which the exported pydantic models do not keep. Notes (Agent Builder notes, unreachable nodes,
tool placeholders) are compared as the sorted list of their first lines.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["canonical"]

_STRING_RE = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_SKIP = {"id", "title", "position", "type", "output", "timeout"}
_DROP_SCHEMA_KEYS = {"title", "description", "enum"}


def _cel(source: str) -> str:
    parts = _STRING_RE.split(source)
    out = []
    for i, p in enumerate(parts):
        if i % 2:
            out.append(json.dumps(json.loads(p) if p[0] == '"' else p[1:-1], ensure_ascii=False))
        else:
            out.append(re.sub(r"\s+", "", p))
    return "".join(out)


def _schema(s: Any) -> Any:
    if isinstance(s, dict):
        return {k: _schema(v) for k, v in sorted(s.items()) if k not in _DROP_SCHEMA_KEYS}
    if isinstance(s, list):
        return [_schema(x) for x in s]
    return s


def _fields(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in _SKIP:
            continue
        if k == "output_schema":
            out[k] = _schema(v)
        elif k in ("condition", "expression", "text", "query", "input") and isinstance(v, str) and node["type"] != "note":
            out[k] = _cel(v)
        elif k == "branches":
            out[k] = [_cel(b["condition"]) for b in v]
        elif k in ("assign", "arguments", "fields"):
            out[k] = {name: _cel(e) for name, e in v.items()}
        else:
            out[k] = v
    return out


def _ports(node: dict[str, Any]) -> list[str]:
    t = node["type"]
    if t == "if_else":
        return [b["name"] for b in node["branches"]] + ["else"]
    return {"while": ["body", "next"], "human_approval": ["approved", "rejected", "timeout"],
            "guardrails": ["pass", "fail", "error"], "end": [], "note": []}.get(t, ["next", "error"])


def canonical(spec: dict[str, Any]) -> dict[str, Any]:
    """The canonical form of ``spec`` (plain data: compare with ``==``)."""
    nodes = {n["id"]: n for n in spec["nodes"]}
    out: dict[tuple[str, str], str] = {}
    for e in spec.get("edges", []):
        out[(e["from"], e.get("port", "next"))] = e["to"]
    start = next(n["id"] for n in spec["nodes"] if n["type"] == "start")

    def tree(node_id: str, loops: list[str], depth: int) -> Any:
        node = nodes[node_id]
        if node["type"] == "end":
            return "end"
        if node_id in loops:
            return ["loop", len(loops) - loops.index(node_id)]
        if depth > 200:
            return "deep"
        inner = [*loops, node_id] if node["type"] == "while" else loops
        children = []
        for i, port in enumerate(_ports(node)):
            if (node_id, port) in out:
                body = inner if port == "body" else loops
                label = i if node["type"] == "if_else" else port
                children.append([label, tree(out[(node_id, port)], body, depth + 1)])
        return {"type": node["type"], **_fields(node), "ports": children}

    notes = sorted(str(n.get("text", "")).splitlines()[0] if n.get("text") else "" for n in spec["nodes"]
                   if n["type"] == "note" and str(n.get("text", "")).startswith("PLACEHOLDER"))
    return {"graph": tree(start, [], 0), "placeholders": notes}
