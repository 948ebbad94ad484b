"""The graph every reader produces: Agent Builder's own vocabulary, flattened.

Readers of the three source forms (workflow JSON, exported Python, exported TypeScript) all build
an :class:`AbGraph`: nodes keep Agent Builder's ``node_type`` short name and its ``config`` shape,
edges keep its port ids, and a While body is flattened (its nodes name the While in ``parent``,
an edge through the synthetic port ``body`` enters it). :mod:`.mapping` then turns one
``AbGraph`` into a Keel spec, so the forms cannot drift apart in how they are mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MISSING", "AbEdge", "AbGraph", "AbNode"]

MISSING: Any = object()
"""A state variable declared without a default."""


@dataclass
class AbNode:
    id: str
    type: str
    """Agent Builder's node type without ``builtins.``: ``Start``, ``Agent``, ``IfElse``, ``While``,
    ``BinaryApproval``, ``Guardrails``, ``FileSearch``, ``MCP``, ``Transform``, ``SetState``,
    ``End``, ``Note`` (``tool.FileSearch`` and ``tool.MCP`` are read as ``FileSearch``/``MCP``)."""
    label: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    position: tuple[float, float] | None = None
    parent: str | None = None
    """The While node whose body holds this node."""


@dataclass(frozen=True)
class AbEdge:
    source: str
    port: str
    """Agent Builder's port id (``out``, ``on_result``, ``on_approve``, ``case-0``, ``fallback``,
    ``on_pass``, ``on_fail``, ``on_error``) or ``body`` for the entry of a While body."""
    target: str


@dataclass
class AbGraph:
    name: str
    nodes: list[AbNode] = field(default_factory=list)
    edges: list[AbEdge] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    """State variable -> default (or :data:`MISSING`)."""
    input_schema: dict[str, Any] | None = None
    start: str | None = None

    def node(self, node_id: str) -> AbNode:
        return next(n for n in self.nodes if n.id == node_id)

    def out(self, node_id: str) -> dict[str, str]:
        return {e.port: e.target for e in self.edges if e.source == node_id}
