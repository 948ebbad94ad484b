"""Read an Agent Builder workflow object (``"object": "workflow"``) into an :class:`AbGraph`."""

from __future__ import annotations

from typing import Any

from keel.workflows.importers.errors import NotImportable
from keel.workflows.importers.ir import MISSING, AbEdge, AbGraph, AbNode

__all__ = ["looks_like_workflow", "read_workflow_json"]


def looks_like_workflow(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    if data.get("object") == "workflow":
        return True
    nodes = data.get("nodes")
    return isinstance(nodes, list) and any(
        isinstance(n, dict) and str(n.get("node_type", "")).startswith("builtins.") for n in nodes)


def _type(node_type: str) -> str:
    short = node_type.removeprefix("builtins.")
    return short.removeprefix("tool.")


def read_workflow_json(data: Any, source: str) -> AbGraph:
    if not looks_like_workflow(data):
        raise NotImportable(f"{source}: this JSON is not an Agent Builder workflow",
                            hint='expected an object with "object": "workflow" and nodes of type builtins.*')
    g = AbGraph(name=str(data.get("name") or data.get("label") or "imported"))
    positions = ((data.get("ui_metadata") or {}).get("positionsByNodeId") or {})
    _read_graph(g, data, positions, parent=None, source=source)
    g.start = data.get("start_node_id") or next((n.id for n in g.nodes if n.type == "Start"), None)
    for var in data.get("state_vars") or []:
        if isinstance(var, dict) and var.get("name"):
            g.state[var["name"]] = var.get("default", MISSING)
    schema = data.get("input_variable_json_schema")
    g.input_schema = schema if isinstance(schema, dict) else None
    return g


def _read_graph(g: AbGraph, data: dict, positions: dict, *, parent: str | None, source: str) -> None:
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        raise NotImportable(f"{source}: `nodes` is not a list", hint="expected an Agent Builder workflow object")
    for raw in nodes:
        if not isinstance(raw, dict) or "id" not in raw or "node_type" not in raw:
            raise NotImportable(f"{source}: a node without `id` or `node_type`: {str(raw)[:80]}",
                                hint="expected an Agent Builder workflow object")
        pos = positions.get(raw["id"])
        node = AbNode(id=str(raw["id"]), type=_type(str(raw["node_type"])), label=raw.get("label"),
                      config=dict(raw.get("config") or {}), parent=parent,
                      position=_position(pos))
        if node.type == "Note" and "text" not in node.config and isinstance(raw.get("text"), str):
            node.config["text"] = raw["text"]
        g.nodes.append(node)
        if node.type == "While":
            body = node.config.pop("body", None) or {}
            _read_graph(g, body, positions, parent=node.id, source=source)
            if body.get("start_node_id"):
                g.edges.append(AbEdge(node.id, "body", str(body["start_node_id"])))
    for e in data.get("edges") or []:
        if isinstance(e, dict) and e.get("source_node_id") and e.get("target_node_id"):
            g.edges.append(AbEdge(str(e["source_node_id"]), str(e.get("source_port_id") or "out"),
                                  str(e["target_node_id"])))


def _position(pos: Any) -> tuple[float, float] | None:
    """Agent Builder stores some coordinates as strings ("235.30"); None when unreadable."""
    try:
        return (float(pos["x"]), float(pos["y"]))
    except (TypeError, KeyError, ValueError):
        return None
