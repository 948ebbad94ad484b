"""Validation of ``agent_tools`` and ``handoffs`` (see :mod:`keel.workflows.multi_agent`).

Refused before a run starts, each problem at its YAML line:

- a reference to no node, or to a node that is not an Agent node;
- two tools of one agent with the same name (a Python tool, an agent tool, a handoff);
- an agent that calls itself as a tool, directly or through others (handoffs included): its
  nesting would grow without end;
- a handoff cycle (A hands off to B, B back to A) unless the spec sets ``limits.max_agent_turns``,
  which is then what ends it;
- agents nested deeper than ``limits.max_agent_depth``.

Agent nodes named by ``agent_tools`` or ``handoffs`` may stay off the graph (no edge in or out):
:func:`off_graph` lists them, and the graph checks leave them out.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable

from keel.workflows.multi_agent import HANDOFF_PREFIX
from keel.workflows.spec import AgentNode, WorkflowSpec

__all__ = ["check_multi_agent", "off_graph"]

Report = Callable[..., None]
"""``report(message, hint, *, node=..., path=(...))``: the checker's ``problem``."""


def _referenced(spec: WorkflowSpec) -> set[str]:
    out: set[str] = set()
    for n in spec.nodes:
        if isinstance(n, AgentNode):
            out.update(r.agent for r in n.agent_tools)
            out.update(n.handoffs)
    return out


def off_graph(spec: WorkflowSpec) -> set[str]:
    """Agent nodes used only by other agents (named by ``agent_tools`` or ``handoffs``, no edges)."""
    on = {e.source for e in spec.edges} | {e.target for e in spec.edges}
    agents = {n.id for n in spec.nodes if isinstance(n, AgentNode)}
    return (_referenced(spec) & agents) - on


def _path(succ: dict[str, list[str]], start: str, goal: str) -> list[str] | None:
    """Nodes from ``start`` to ``goal`` along ``succ`` (both included), or None."""
    parent: dict[str, str | None] = {start: None}
    todo = deque([start])
    while todo:
        cur = todo.popleft()
        if cur == goal:
            out = [cur]
            while parent[out[-1]] is not None:
                out.append(parent[out[-1]])  # type: ignore[arg-type]
            return out[::-1]
        for nxt in succ.get(cur, ()):
            if nxt not in parent:
                parent[nxt] = cur
                todo.append(nxt)
    return None


def check_multi_agent(spec: WorkflowSpec, python_tool_names: Callable[[AgentNode], list[str]],
                      report: Report) -> None:
    """Report every problem of the spec's ``agent_tools`` and ``handoffs`` through ``report``."""
    nodes = {n.id: n for n in spec.nodes}
    agents = {i: n for i, n in nodes.items() if isinstance(n, AgentNode)}
    tool_edges: list[tuple[str, str, int]] = []
    handoff_edges: list[tuple[str, str, int]] = []
    for n in agents.values():
        names: dict[str, tuple] = {name: ("tools",) for name in python_tool_names(n)}

        def target(ref: str, path: tuple, what: str, n: AgentNode = n) -> bool:
            if ref not in nodes:
                close = difflib.get_close_matches(ref, list(agents), n=1)
                report(f"{what} names node {ref!r}, which the workflow does not have",
                       (f"did you mean {close[0]!r}? " if close else "")
                       + f"name an Agent node's id (agents: {', '.join(sorted(agents)) or 'none'})",
                       node=n.id, path=path)
                return False
            if ref not in agents:
                report(f"{what} names node {ref!r}, a {nodes[ref].type} node: only Agent nodes can be called or "
                       "handed off to", f"name an Agent node (agents: {', '.join(sorted(agents))})",
                       node=n.id, path=path)
                return False
            return True

        for i, ref in enumerate(n.agent_tools):
            if target(ref.agent, ("agent_tools", i, "agent"), "agent_tools"):
                tool_edges.append((n.id, ref.agent, i))
            name = ref.name or ref.agent
            if name in names:
                report(f"two tools of agent {n.id!r} are named {name!r}",
                       "give the agent tool its own `name:`", node=n.id, path=("agent_tools", i))
            names[name] = ("agent_tools", i)
        for i, ref in enumerate(n.handoffs):
            if ref == n.id:
                report(f"agent {n.id!r} hands off to itself", "hand off to another Agent node, or remove it",
                       node=n.id, path=("handoffs", i))
                continue
            if target(ref, ("handoffs", i), "handoffs"):
                handoff_edges.append((n.id, ref, i))
            name = HANDOFF_PREFIX + ref
            if len(name) > 64:
                report(f"the handoff tool {name!r} is longer than the 64 characters a tool name may have",
                       f"give node {ref!r} a shorter id", node=n.id, path=("handoffs", i))
            if name in names:
                report(f"two tools of agent {n.id!r} are named {name!r}", "rename the other tool",
                       node=n.id, path=("handoffs", i))
            names[name] = ("handoffs", i)

    every: dict[str, list[str]] = {}
    for src, dst, _ in tool_edges + handoff_edges:
        every.setdefault(src, []).append(dst)
    selfcalls = False
    for src, dst, i in tool_edges:
        back = _path(every, dst, src)
        if back is not None:
            selfcalls = True
            ring = " -> ".join([src, *back])
            report(f"agent {src!r} calls itself as a tool through {ring}: each call would nest another without "
                   "end", "an agent may not call itself, directly or through the agents it calls or hands off "
                   "to: remove one of these agent_tools or handoffs", node=src, path=("agent_tools", i))

    limits = spec.run_limits()
    turns_set = spec.limits is not None and "max_agent_turns" in spec.limits.model_fields_set
    handoff_succ: dict[str, list[str]] = {}
    for src, dst, _ in handoff_edges:
        handoff_succ.setdefault(src, []).append(dst)
    seen_rings: set[frozenset[str]] = set()
    for src, dst, i in handoff_edges:
        back = _path(handoff_succ, dst, src)
        if back is None or turns_set or frozenset(back) in seen_rings:
            continue
        seen_rings.add(frozenset(back))
        ring = " -> ".join([src, *back])
        report(f"the handoff cycle {ring} can hand the conversation round without end",
               "set `limits: {max_agent_turns: N}` in the spec to bound it (the run fails after N model "
               "calls by its agents), or remove one of these handoffs", node=src, path=("handoffs", i))
    if selfcalls:
        return
    # Nesting: a tool call goes one level deeper, a handoff stays at its level.
    depth = {a: 0 for a in agents}
    weighted = [(s, d, 1) for s, d, _ in tool_edges] + [(s, d, 0) for s, d, _ in handoff_edges]
    for _ in range(len(agents)):
        changed = False
        for s, d, w in weighted:
            if depth[d] + w > depth[s]:
                depth[s], changed = depth[d] + w, True
        if not changed:
            break
    first_tool = {s: i for s, _, i in reversed(tool_edges)}
    for a, d in depth.items():
        if d > limits.max_agent_depth and a in first_tool:
            report(f"agent {a!r} nests agents {d} deep through its agent_tools (limits.max_agent_depth is "
                   f"{limits.max_agent_depth})", f"raise it with `limits: {{max_agent_depth: {d}}}`, or nest "
                   "the agents less deeply", node=a, path=("agent_tools", first_tool[a]))
