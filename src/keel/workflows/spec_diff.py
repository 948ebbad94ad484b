"""Structural diff of two specs, as data a canvas draws: nodes added, removed and changed (with
each changed field), edges added and removed, other top-level fields changed, and whether the
layout moved. Fields are compared by meaning (defaults filled in), so writing a default out or
reordering keys is no change; the layout is reported apart, as it is not part of a version's
meaning."""

from __future__ import annotations

from typing import Any

from keel.workflows.spec import WorkflowSpec

__all__ = ["diff_specs", "pointer"]


def pointer(parts: tuple[str | int, ...]) -> str:
    """A JSON pointer (RFC 6901): ``("nodes", 2, "condition")`` -> ``/nodes/2/condition``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _changes(a: Any, b: Any, at: tuple[str | int, ...]) -> list[dict[str, Any]]:
    if a == b and type(a) is type(b):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        return [c for k in [*a, *(k for k in b if k not in a)] for c in _changes(a.get(k), b.get(k), (*at, k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [c for i, (x, y) in enumerate(zip(a, b, strict=True)) for c in _changes(x, y, (*at, i))]
    return [{"path": pointer(at), "before": a, "after": b}]


def _removed(node_id: str, node_type: str, a: WorkflowSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node_id, "type": node_type}
    at = a.layout.nodes.get(node_id) if a.layout is not None else None
    if at is not None:
        out["at"] = {"x": at.x, "y": at.y}
    return out


def diff_specs(a: WorkflowSpec, b: WorkflowSpec) -> dict[str, Any]:
    """What changed from ``a`` to ``b``::

        {"nodes": {"added": [{id, type}], "removed": [{id, type, at?}],
                   "changed": [{id, type, changes: [{path, before, after}]}]},
         "edges": {"added": [{from, port, to}], "removed": [{from, port, to}]},
         "fields": [{path, before, after}],      # description, limits (not nodes, edges, layout)
         "layout_changed": bool, "same_meaning": bool}

    A change's ``path`` is a JSON pointer inside the node (``/branches/0/condition``) or the spec
    (``/limits/max_steps``). A removed node's ``at`` is where ``a``'s layout placed it (``{x, y}``;
    absent when ``a`` has no position for it), so a canvas can draw it where it was."""
    na = {n.id: n.model_dump(mode="json", by_alias=True) for n in a.nodes}
    nb = {n.id: n.model_dump(mode="json", by_alias=True) for n in b.nodes}
    ea = [e.model_dump(mode="json", by_alias=True) for e in a.edges]
    eb = [e.model_dump(mode="json", by_alias=True) for e in b.edges]
    changed = []
    for node_id in [i for i in na if i in nb]:
        found = _changes(na[node_id], nb[node_id], ())
        if found:
            changed.append({"id": node_id, "type": nb[node_id]["type"], "changes": found})
    skip = {"nodes", "edges", "layout"}
    da = a.model_dump(mode="json", by_alias=True, exclude=skip)
    db = b.model_dump(mode="json", by_alias=True, exclude=skip)
    out = {
        "nodes": {"added": [{"id": i, "type": nb[i]["type"]} for i in nb if i not in na],
                  "removed": [_removed(i, na[i]["type"], a) for i in na if i not in nb],
                  "changed": changed},
        "edges": {"added": [e for e in eb if e not in ea], "removed": [e for e in ea if e not in eb]},
        "fields": _changes(da, db, ()),
        "layout_changed": a.layout != b.layout,
    }
    out["same_meaning"] = not (out["nodes"]["added"] or out["nodes"]["removed"] or changed
                               or out["edges"]["added"] or out["edges"]["removed"] or out["fields"])
    return out
