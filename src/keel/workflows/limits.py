"""The limits every run obeys (``limits:`` in the spec, :class:`~keel.workflows.spec.Limits`).

The engine asks :func:`before_step` before each step (steps taken, seconds spent being
executed) and :func:`after_step` once a node has produced its output (its size, and the size
of the state and chat history when the node changed them). Agent nodes check
``max_agent_turns`` and ``max_agent_depth`` as their agents go (:mod:`keel.workflows.multi_agent`,
with the messages here). A run over a limit fails with an
error that names the limit, the node and the spec field to raise; no ``error`` edge catches it
(a retry edge would only go round again).
"""

from __future__ import annotations

from typing import Any

from keel import jsontext
from keel.workflows.spec import Limits

__all__ = ["after_step", "before_step", "over_agent_depth", "over_agent_turns", "over_time"]


def _fix(field: str) -> str:
    return f"raise it with `limits: {{{field}: ...}}` in the workflow spec"


def before_step(limits: Limits, *, steps: int, elapsed: float, node_id: str) -> str | None:
    """Why the run may not take another step at ``node_id``, or None."""
    if steps >= limits.max_steps:
        return (f"limits.max_steps: the run took {steps} steps without finishing (the limit is "
                f"{limits.max_steps}); stopped before node {node_id!r}. Fix: {_fix('max_steps')}, or make "
                f"the loop end (a cycle through an If/else never stops by itself)")
    if elapsed >= limits.max_seconds:
        return over_time(limits, elapsed=elapsed, node_id=node_id, before=True)
    return None


def over_time(limits: Limits, *, elapsed: float, node_id: str, before: bool = False) -> str:
    """The error of a run that spent ``limits.max_seconds`` being executed."""
    where = f"stopped before node {node_id!r}" if before else f"node {node_id!r} was cancelled"
    return (f"limits.max_seconds: the run was executed for {elapsed:.1f} s without finishing (the limit is "
            f"{limits.max_seconds:g} s); {where}. Fix: {_fix('max_seconds')}")


def after_step(limits: Limits, *, node_id: str, output_json: str | None, state: Any = None,
               history: Any = None) -> str | None:
    """Why the output of ``node_id`` (as JSON text; None to skip) or the state and history it
    left (when it changed them) may not be kept, or None."""
    if output_json is not None:
        size = len(output_json.encode())
        if size > limits.max_output_bytes:
            return (f"limits.max_output_bytes: the output of node {node_id!r} is {size} bytes as JSON (the limit "
                    f"is {limits.max_output_bytes}). Fix: {_fix('max_output_bytes')}, or make the node "
                    "return less")
    if state is not None or history is not None:
        size = len(jsontext.dumps(state).encode()) + len(jsontext.dumps(history).encode())
        if size > limits.max_state_bytes:
            return (f"limits.max_state_bytes: after node {node_id!r} the workflow state and chat history are "
                    f"{size} bytes as JSON (the limit is {limits.max_state_bytes}). Fix: "
                    f"{_fix('max_state_bytes')}, or keep less in state")
    return None


def over_agent_turns(limits: Limits, *, used: int, agent_id: str) -> str | None:
    """Why agent ``agent_id`` may not call its model again after the run's agents made ``used`` calls, or None."""
    if used < limits.max_agent_turns:
        return None
    return (f"limits.max_agent_turns: the agents of this run made {used} model calls (the limit is "
            f"{limits.max_agent_turns}); stopped before agent {agent_id!r} called its model again. Fix: "
            f"{_fix('max_agent_turns')}, or give the agents a way to finish (a handoff cycle goes round until "
            "this limit)")


def over_agent_depth(limits: Limits, *, depth: int, caller: str, target: str) -> str | None:
    """Why ``caller`` may not call ``target`` as a tool at nesting ``depth``, or None."""
    if depth <= limits.max_agent_depth:
        return None
    return (f"limits.max_agent_depth: agent {caller!r} called agent {target!r} as a tool at depth {depth} (the "
            f"limit is {limits.max_agent_depth}). Fix: {_fix('max_agent_depth')}, or nest the agents less deeply")
