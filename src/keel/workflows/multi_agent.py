"""Multi-agent pieces of an Agent node: agents as tools, handoffs, and the run's agent budget.

An Agent node may offer other Agent nodes to its model in two ways (docs/agents.md):

- **agents as tools** (``agent_tools``): a function tool per specialist, taking ``{"input": text}``.
  A call runs the specialist on that text with its own instructions, model and tools, nested one
  level deeper, and its final answer is the tool result. The result is memoized like any tool
  result, so a resumed run does not run a completed specialist again.
- **handoffs** (``handoffs``): a ``transfer_to_<id>`` tool per target. A call ends the current
  agent's turn: the conversation so far is carried over to the target, which continues under its
  own instructions, model and tools, and whose answer is the node's.

This module holds what does not need the engine: the tools the model sees, the :class:`AgentCall`
an agent-tool call turns into, and :class:`Budget`, which enforces ``limits.max_agent_depth`` and
``limits.max_agent_turns``. The loop that runs agents is :mod:`keel.workflows.agent`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from keel.models import Tool
from keel.workflows.limits import over_agent_depth, over_agent_turns
from keel.workflows.nodes import NodeFailure
from keel.workflows.spec import AgentNode, Limits

__all__ = ["HANDOFF_PREFIX", "AgentCall", "Budget", "agent_tools", "handoff_message", "handoff_specs", "handoff_tools",
           "may_wait"]

HANDOFF_PREFIX = "transfer_to_"
"""Handoff tools are named ``transfer_to_<target id>``, as the Agents SDK names them."""

_INPUT_SCHEMA = {"type": "object", "properties": {"input": {"type": "string", "description":
                 "What to ask the agent: the whole request, since it sees nothing else of this conversation."}},
                 "required": ["input"], "additionalProperties": False}


@dataclass(frozen=True)
class AgentCall:
    """An agent offered as a tool: what the model sees (:attr:`tool`) and the node it runs.

    :attr:`run` is bound by the agent loop; it runs the agent on the ``input`` argument and returns
    its final answer as text."""

    name: str
    tool: Tool
    target: str
    """Id of the Agent node a call runs."""
    run: Callable[[dict[str, Any], Any, str], Awaitable[str]] | None = None
    """``(arguments, tool span, memo key) -> answer``."""


def agent_tools(node: AgentNode, nodes: dict[str, Any]) -> list[AgentCall]:
    """The agents ``node`` offers as tools (validation made sure each names an Agent node)."""
    out = []
    for ref in node.agent_tools:
        target = nodes[ref.agent]
        name = ref.name or ref.agent
        description = ref.description if ref.description is not None else \
            target.description or f"Ask the {target.title or target.id} agent."
        out.append(AgentCall(name, Tool(name=name, description=description, parameters=_INPUT_SCHEMA),
                             ref.agent))
    return out


def handoff_tools(node: AgentNode, nodes: dict[str, Any]) -> dict[str, str]:
    """Handoff tool name -> target node id, for every handoff of ``node``."""
    return {f"{HANDOFF_PREFIX}{target}": target for target in node.handoffs}


def handoff_specs(node: AgentNode, nodes: dict[str, Any]) -> list[Tool]:
    """The ``transfer_to_<id>`` tools the model of ``node`` sees."""
    return [Tool(name=name, description=f"Hand the conversation over to the {nodes[target].title or target} "
                 f"agent: it answers the user from here on. {nodes[target].description}".strip(), parameters={"type": "object", "properties": {},
                                                               "additionalProperties": False})
            for name, target in handoff_tools(node, nodes).items()]


def handoff_message(target: str) -> str:
    """The tool result of a handoff call (the history the target reads shows where it took over)."""
    return f'{{"assistant": "{target}"}}'


def may_wait(agent_id: str, nodes: dict[str, Any], seen: set[str] | None = None) -> bool:
    """Whether running ``agent_id`` may stop for a person's approval: it (or an agent it calls or
    hands off to) has MCP tools or an ``always`` approval policy. Such specialists run one at a
    time; the others may run together."""
    seen = set() if seen is None else seen
    seen.add(agent_id)
    node = nodes[agent_id]
    if node.mcp or "always" in node.approval.values():
        return True
    return any(other not in seen and may_wait(other, nodes, seen)
               for other in [r.agent for r in node.agent_tools] + list(node.handoffs))


class Budget:
    """The agent turns a run has used, and the depth the current agent runs at.

    One budget per Agent node step: it starts from the turns earlier steps used (stored in the
    run's variables under ``agent_turns``) and :meth:`save` writes the new total back."""

    def __init__(self, limits: Limits, used: int) -> None:
        self.limits = limits
        self.used = used

    def turn(self, agent_id: str) -> None:
        """Count one model call by ``agent_id``; a failure when the run has none left."""
        over = over_agent_turns(self.limits, used=self.used, agent_id=agent_id)
        if over is not None:
            raise NodeFailure(over, kind="limit")  # the run fails: no `error` edge takes it
        self.used += 1

    def enter(self, depth: int, caller: str, target: str) -> None:
        """Check that ``caller`` may call ``target`` as a tool at nesting ``depth`` (1: a node's own
        agent calling a specialist)."""
        over = over_agent_depth(self.limits, depth=depth, caller=caller, target=target)
        if over is not None:
            raise NodeFailure(over, kind="limit")

    def save(self, ctx: dict[str, Any]) -> None:
        ctx["agent_turns"] = self.used
