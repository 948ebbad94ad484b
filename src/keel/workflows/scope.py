"""The CEL names in scope at a node, for an editor's completion: what an expression of that
node may read (docs/workflows.md, "Variables").

- ``input_as_text``, ``input.output_text``, ``input.output_parsed`` and, when every node with
  an edge into this one (looking through If/else, While and Set state, which pass their input
  on) has a strict output schema, ``input.output_parsed.<field>``;
- ``state.<name>`` declared on the Start node or assigned by a Set state node;
- ``workflow.input``, ``workflow.input_as_text``, ``workflow.name``, ``workflow.run_id`` and the
  fields of the Start node's ``input_schema``;
- ``nodes.<id>.output_text`` / ``.output_parsed`` (and its fields) of every node a path from
  Start passes before this one.
"""

from __future__ import annotations

from typing import Any

from keel.workflows.cel import WORKFLOW_NAMES
from keel.workflows.spec import (
    AgentNode,
    IfElseNode,
    NoteNode,
    SetStateNode,
    StartNode,
    WhileNode,
    WorkflowSpec,
)

__all__ = ["names_in_scope"]

_PASS_THROUGH = (IfElseNode, WhileNode, SetStateNode)


def _schema_props(node: Any) -> dict[str, Any] | None:
    schema = node.output_schema if isinstance(node, AgentNode) else None
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return None
    return schema["properties"]


def _type(schema: Any) -> str | None:
    t = schema.get("type") if isinstance(schema, dict) else None
    return t if isinstance(t, str) else None


def names_in_scope(spec: WorkflowSpec, node_id: str) -> list[dict[str, Any]]:
    """``[{"name", "type", "detail"}]`` for node ``node_id`` (KeyError if there is none);
    ``type`` is a JSON Schema type when known, else None."""
    spec.node(node_id)
    by_id = {n.id: n for n in spec.nodes}
    into: dict[str, list[str]] = {}
    for e in spec.edges:
        if e.source in by_id and e.target in by_id:
            into.setdefault(e.target, []).append(e.source)

    out: list[dict[str, Any]] = [
        {"name": "input_as_text", "type": "string", "detail": "the run's input as text"},
        {"name": "input.output_text", "type": "string", "detail": "the previous node's text"},
        {"name": "input.output_parsed", "type": None, "detail": "the previous node's structured output"},
    ]
    # input.output_parsed.<field>: the fields every way in has (looking through pass-through nodes)
    sources, seen, todo, known = [], set(), [node_id], True
    while todo:
        for src in into.get(todo.pop(), []):
            if src in seen:
                continue
            seen.add(src)
            if isinstance(by_id[src], _PASS_THROUGH):
                todo.append(src)
            elif (props := _schema_props(by_id[src])) is not None:
                sources.append((src, props))
            else:
                known = False
    if known and sources:
        common = set.intersection(*(set(p) for _, p in sources))
        for field in [f for f in sources[0][1] if f in common]:
            out.append({"name": f"input.output_parsed.{field}", "type": _type(sources[0][1][field]),
                        "detail": "from " + ", ".join(s for s, _ in sources)})
    start = next((n for n in spec.nodes if isinstance(n, StartNode)), None)
    state: dict[str, str] = {}
    if start is not None:
        state.update({k: "declared on the start node" for k in start.state})
    for n in spec.nodes:
        if isinstance(n, SetStateNode):
            for k in n.assign:
                state.setdefault(k, f"assigned by {n.id}")
    out += [{"name": f"state.{k}", "type": None, "detail": d} for k, d in state.items()]
    out += [{"name": f"workflow.{k}", "type": "string" if k != "input" else None, "detail": "Keel's"}
            for k in WORKFLOW_NAMES]
    if start is not None and isinstance(start.input_schema, dict) \
            and isinstance(start.input_schema.get("properties"), dict):
        for k, s in start.input_schema["properties"].items():
            out.append({"name": f"workflow.{k}", "type": _type(s), "detail": "a field of the start node's input_schema"})
    # nodes.<id>: the ancestors of this node
    ancestors, todo = set(), [node_id]
    while todo:
        for src in into.get(todo.pop(), []):
            if src not in ancestors:
                ancestors.add(src)
                todo.append(src)
    for n in spec.nodes:
        if n.id not in ancestors or n.id == node_id or isinstance(n, NoteNode):
            continue
        out.append({"name": f"nodes.{n.id}.output_text", "type": "string", "detail": f"{n.type} node"})
        out.append({"name": f"nodes.{n.id}.output_parsed", "type": None, "detail": f"{n.type} node"})
        for field, s in (_schema_props(n) or {}).items():
            out.append({"name": f"nodes.{n.id}.output_parsed.{field}", "type": _type(s), "detail": f"{n.type} node"})
    return out
