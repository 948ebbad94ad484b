"""What an Agent node's model call was asked and answered (table ``model_call_messages``,
migration 0317), so graded workflow runs can become fine-tuning sets (``keel distill export
--workflow/--node``, :mod:`keel.optimize.graded`).

``model_calls`` keeps a call's cost and timing but not its messages; the run's memo keeps the
answer but not the request. This row keeps both, as sent: the messages (the node's instructions,
the conversation and tool results so far), the tools offered, and the assistant's answer (text and
tool calls). It is written in the same transaction as the call's model span, so a call is either
stored whole or not at all, and a replayed step (its memo found) does not write it again.

``KEEL_CALL_MESSAGES=off`` (read by each call, in the process that runs the workflow: ``keel serve``,
``keel worker``, ``keel run``) stops storing them, e.g. where requests must not be kept twice; the
calls' cost and timing still go to ``model_calls``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from keel import jsontext
from keel.models import Message, ModelResponse, Tool

__all__ = ["ENV", "INSERT_SQL", "enabled", "read", "row", "rows"]

ENV = "KEEL_CALL_MESSAGES"

INSERT_SQL = ("INSERT INTO model_call_messages (span_id, run_id, workflow, node_id, model, requested, messages, "
              "tools, output, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (span_id) DO NOTHING")


def enabled() -> bool:
    """Whether Agent-node calls are stored with their messages (``KEEL_CALL_MESSAGES``, default on)."""
    return os.environ.get(ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def _tool_json(t: Any) -> dict[str, Any] | None:
    if isinstance(t, Tool):
        return t.model_dump(mode="json")
    name = getattr(t, "name", None)  # a tool object of the engine (MCP, Python, agent-as-tool)
    if not isinstance(name, str):
        return None
    return {"name": name, "description": getattr(t, "description", "") or "",
            "parameters": getattr(t, "parameters", None) or {"type": "object", "properties": {}}}


def rows(span_id: str, run_id: str, workflow: str, node_id: str, requested: str, messages: list[Message],
         tools: list[Any] | None, response: ModelResponse) -> list[tuple[str, tuple]]:
    """The statements that store one call (none when turned off), for the transaction that stores its span."""
    return [row(span_id, run_id, workflow, node_id, requested, messages, tools, response)] if enabled() else []


def row(span_id: str, run_id: str, workflow: str, node_id: str, requested: str, messages: list[Message],
        tools: list[Any] | None, response: ModelResponse) -> tuple[str, tuple]:
    """The SQL and parameters that store one call."""
    tool_rows = [t for t in (_tool_json(t) for t in tools or []) if t is not None]
    output = Message.assistant(response.text, response.tool_calls)
    return INSERT_SQL, (
        span_id, run_id, workflow, node_id, response.model or requested, requested,
        jsontext.dumps([m.model_dump(mode="json", exclude_defaults=True) for m in messages]),
        jsontext.dumps(tool_rows) if tool_rows else None,
        jsontext.dumps(output.model_dump(mode="json", exclude_defaults=True)), time.time())


def read(r: dict[str, Any]) -> tuple[list[Message], list[Tool], Message]:
    """``(messages, tools, output)`` of a stored row."""
    messages = [Message.model_validate(m) for m in json.loads(r["messages"])]
    tools = [Tool.model_validate(t) for t in json.loads(r["tools"])] if r.get("tools") else []
    return messages, tools, Message.model_validate(json.loads(r["output"]))
