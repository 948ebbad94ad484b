"""What each node type does in one step (the Agent node lives in :mod:`keel.workflows.agent`).

A step reads the run's variables and returns a :class:`StepOutcome`: the port to
leave through, the node's output, and any change to state. Steps that depend
only on variables (everything here) are pure, so re-executing one after a crash
gives the same outcome.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from keel.secrets import scrub
from keel.workflows.cel import CelError
from keel.workflows.errors import InputFieldError, WorkflowError
from keel.workflows.spec import (
    EndNode,
    IfElseNode,
    SetStateNode,
    StartNode,
    TransformNode,
    WhileNode,
)
from keel.workflows.validate import CompiledWorkflow

__all__ = ["NodeFailure", "StepOutcome", "as_output", "chat_history_of", "run_simple_node", "variables"]


class NodeFailure(Exception):
    """A node could not complete; the run takes its ``error`` edge or fails."""

    def __init__(self, message: str, *, kind: str = "error") -> None:
        message = scrub(message)  # it becomes the step's error or output, the span's, the run's
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass
class StepOutcome:
    """The result of executing one node once."""

    port: str | None
    """Port to leave through; None for End (the run finishes)."""
    output: dict[str, Any]
    """``{"output_text": str, "output_parsed": Any}``: becomes ``input`` for the next node."""
    state: dict[str, Any] | None = None
    """The new workflow state, if the node changed it."""
    loops: dict[str, int] | None = None
    history: list[dict[str, Any]] | None = None
    """The run's conversation after this node, if it changed."""
    run_output: Any = None
    """For End nodes: the run's output."""
    wait: Any = None
    """For Human approval: the pending approval (the run pauses)."""
    attributes: dict[str, Any] = field(default_factory=dict)
    """Extra span attributes for this node."""


def as_output(value: Any) -> dict[str, Any]:
    """A node output from a value: text as ``output_text``, anything else parsed and as JSON text."""
    if isinstance(value, str):
        return {"output_text": value, "output_parsed": None}
    return {"output_text": json.dumps(value, ensure_ascii=False), "output_parsed": value}


def variables(ctx: dict[str, Any], run_id: str, workflow: str) -> dict[str, Any]:
    """The CEL variables of a run at this point (see :mod:`keel.workflows.spec`)."""
    return {
        "input": ctx["last"],
        "input_as_text": ctx["input_as_text"],
        "state": ctx["state"],
        "nodes": ctx["nodes"],
        "workflow": workflow_variable(ctx["input"], ctx["input_as_text"], workflow, run_id),
    }


def workflow_variable(input: Any, input_as_text: str, workflow: str, run_id: str) -> dict[str, Any]:
    """``workflow``: Keel's names and Agent Builder's (``workflow.input_as_text`` and each field
    of an object input as ``workflow.<field>``); Keel's own names win over a field of that name."""
    fields = input if isinstance(input, dict) else {}
    return {**fields, "input": input, "input_as_text": input_as_text, "name": workflow, "run_id": run_id}


def _eval(wf: CompiledWorkflow, node_id: str, key: str, env: dict[str, Any]) -> Any:
    try:
        return wf.expressions[(node_id, key)].evaluate(env)
    except CelError as e:
        raise NodeFailure(f"{key}: {e.message}", kind="cel") from None


def run_simple_node(wf: CompiledWorkflow, node: Any, ctx: dict[str, Any], env: dict[str, Any]) -> StepOutcome:
    """Execute a Start, End, If/else, While, Transform or Set state node."""
    last = ctx["last"]
    if isinstance(node, StartNode):
        value = ctx["input"]
        return StepOutcome("next", {"output_text": ctx["input_as_text"],
                                    "output_parsed": None if isinstance(value, str) else value})
    if isinstance(node, IfElseNode):
        for b in node.branches:
            value = _eval(wf, node.id, f"branches.{b.name}", env)
            if not isinstance(value, bool):
                raise NodeFailure(f"condition of branch {b.name!r} gave {value!r}, not a bool", kind="cel")
            if value:
                return StepOutcome(b.name, last, attributes={"keel.branch": b.name})
        return StepOutcome("else", last, attributes={"keel.branch": "else"})
    if isinstance(node, WhileNode):
        value = _eval(wf, node.id, "condition", env)
        if not isinstance(value, bool):
            raise NodeFailure(f"condition gave {value!r}, not a bool", kind="cel")
        loops = dict(ctx["loops"])
        if not value:
            loops.pop(node.id, None)  # a later entry into this loop starts counting afresh
            return StepOutcome("next", last, loops=loops)
        loops[node.id] = loops.get(node.id, 0) + 1
        if loops[node.id] > node.max_iterations:
            raise NodeFailure(f"the loop ran more than max_iterations={node.max_iterations} times",
                              kind="loop_limit")
        return StepOutcome("body", last, loops=loops, attributes={"keel.iteration": loops[node.id]})
    if isinstance(node, TransformNode):
        if node.expression is not None:
            value = _eval(wf, node.id, "expression", env)
        else:
            value = {k: _eval(wf, node.id, f"fields.{k}", env) for k in node.fields}
        out = as_output(value)
        if isinstance(value, str):
            out["output_parsed"] = value
        return StepOutcome("next", out)
    if isinstance(node, SetStateNode):
        values = {k: _eval(wf, node.id, f"assign.{k}", env) for k in node.assign}
        return StepOutcome("next", last, state={**ctx["state"], **values})
    if isinstance(node, EndNode):
        if node.output is not None:
            value = _eval(wf, node.id, "output", env)
        else:
            value = last["output_parsed"] if last.get("output_parsed") is not None else last["output_text"]
        return StepOutcome(None, as_output(value), run_output=value)
    raise NodeFailure(f"{node.type} nodes are not available yet", kind="unavailable")


def chat_history_of(input: Any, *, accept_tool_history: bool = False) -> list[dict[str, Any]]:
    """Messages of an input shaped ``{"messages": [{"role": ..., "content": ...}, ...]}`` (chat history in),
    ending with a user message; [] for any other input.

    ``tool`` messages and assistant ``tool_calls`` are refused (:class:`InputFieldError`) unless
    ``accept_tool_history``: they would be results of tool calls no tool made, which the model trusts."""
    if not isinstance(input, dict) or not isinstance(input.get("messages"), list) or not input["messages"]:
        return []
    from pydantic import ValidationError

    from keel.models import Message

    try:
        messages = [Message.model_validate(m) for m in input["messages"]]
    except ValidationError as e:
        raise WorkflowError(f"input.messages is not a list of chat messages: {e.errors()[0]['msg']}",
                            hint='pass [{"role": "user", "content": "..."}, ...]') from None
    if not accept_tool_history:
        for i, m in enumerate(messages):
            if m.role == "tool" or m.tool_calls:
                what = "a tool message" if m.role == "tool" else "an assistant message with tool_calls"
                raise InputFieldError(
                    f"input.messages[{i}] is {what}: this workflow does not accept tool calls or tool results "
                    "in the conversation it is given (a caller could forge them)", field=f"input.messages[{i}]",
                    hint="send only user, assistant (text) and system messages, or set `accept_tool_history: "
                         "true` on the workflow's start node if its callers are trusted to replay tool calls")
    if messages[-1].role != "user":
        raise WorkflowError("the last of input.messages must be a user message",
                            hint="the conversation's last turn is the question this run answers")
    return [m.model_dump(mode="json", exclude_defaults=True) | {"role": m.role} for m in messages]
