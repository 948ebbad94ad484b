"""Agents SDK multi-agent code: ``handoffs=[...]`` and ``agent.as_tool(...)`` onto Keel's ``handoffs``
and ``agent_tools`` (docs/agents.md).

The readers record, in an Agent's config, the Python variables it names: ``handoffs`` (a list of
variable names) and ``agent_tools`` (``{"agent": variable, "name"?, "description"?}``). Once the
graph is read, :func:`attach` gives every agent named that way a node of its own, off the graph
(no edges: it runs only when called or handed to), and replaces the variable names by node ids.
TypeScript's ``asTool({toolName, toolDescription})`` arrives here as Python with a dict argument.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from typing import Any

from keel.workflows.importers.ir import AbGraph
from keel.workflows.importers.python_cel import call_name, const, kw
from keel.workflows.importers.report import Report

__all__ = ["as_tool", "attach", "handoffs"]


def as_tool(t: ast.expr) -> dict[str, Any] | None:
    """``var.as_tool(tool_name=..., tool_description=...)`` as an agent-tool reference, else None."""
    if not (isinstance(t, ast.Call) and isinstance(t.func, ast.Attribute) and t.func.attr in ("as_tool", "asTool")
            and isinstance(t.func.value, ast.Name)):
        return None
    ref: dict[str, Any] = {"agent": t.func.value.id}
    options = const(t.args[0], {}) if t.args else {}  # TypeScript: asTool({toolName, toolDescription})
    options = options if isinstance(options, dict) else {}
    name = const(kw(t, "tool_name")) or options.get("toolName") or options.get("tool_name")
    description = const(kw(t, "tool_description")) or options.get("toolDescription") \
        or options.get("tool_description")
    if isinstance(name, str):
        ref["name"] = name
    if isinstance(description, str):
        ref["description"] = description
    return ref


def handoffs(call: ast.Call, label: str, report: Report) -> list[str]:
    """The variables ``handoffs=[a, handoff(b), ...]`` names; other shapes are reported."""
    value = kw(call, "handoffs")
    out: list[str] = []
    for h in value.elts if isinstance(value, ast.List) else []:
        if isinstance(h, ast.Call) and call_name(h) == "handoff" and h.args:
            options = const(h.args[1], {}) if len(h.args) > 1 else {}  # TypeScript: handoff(agent, {...})
            overrides = [k.arg for k in h.keywords if k.arg] + list(options if isinstance(options, dict) else {})
            if overrides:
                report.add("dropped", None, f"handoff options {', '.join(overrides)} of agent {label!r}: Keel names "
                           "the tool transfer_to_<id> and describes it by the target's `description`")
            h = h.args[0]
        if isinstance(h, ast.Name):
            out.append(h.id)
        else:
            report.add("not_recognised", None, f"handoff {ast.unparse(h)[:60]!r} of agent {label!r}",
                       "name an Agent(...) defined at module level")
    return out


def attach(g: AbGraph, agents: dict[str, dict[str, Any]], add: Callable[[str, str | None, dict[str, Any]], str],
           report: Report, *, on_graph: dict[str, str]) -> None:
    """Give each agent that graph Agents call or hand off to a node off the graph, and point the
    references at node ids (an agent named twice gets one node; an agent ``Runner.run`` runs on the
    graph, ``on_graph``, is that node)."""
    made: dict[str, str] = dict(on_graph)

    def node_for(var: str) -> str | None:
        if var in made:
            return made[var]
        if var not in agents:
            report.add("not_recognised", None, f"agent {var!r} is called or handed off to, but is no Agent(...) "
                       "defined at module level", "define it as `name = Agent(...)` at module level")
            return None
        config = {k: v for k, v in json.loads(json.dumps(agents[var])).items() if k != "label"}
        made[var] = add("Agent", agents[var].get("label"), config)
        resolve(g.node(made[var]).config)
        return made[var]

    def resolve(config: dict[str, Any]) -> None:
        refs = config.pop("agent_tool_refs", [])
        names = config.pop("handoff_refs", [])
        tools = []
        for ref in refs:
            node = node_for(ref["agent"])
            if node is not None:
                tools.append({**ref, "agent": node})
        targets = [t for t in (node_for(v) for v in names) if t is not None]
        if tools:
            config["agent_tools"] = tools
        if targets:
            config["handoffs"] = targets

    for n in list(g.nodes):
        if n.type == "Agent":
            resolve(n.config)
