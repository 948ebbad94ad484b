"""What ``keel serve`` does with instructions a caller sends in the roles that outrank the user.

A workflow's Agent nodes carry the operator's instructions as the system prompt. A caller of
``/v1/chat/completions`` (``system`` and ``developer`` messages), ``/v1/responses``
(``instructions`` and system/developer input items), the runs API (``input.messages``), the web
UI's chat (``messages``) or an MCP tool call over ``/mcp`` (``arguments.messages``) could
otherwise add instructions of the same rank. ``[serve] caller_system_messages`` decides:

``demote`` (default)  the message becomes user content, prefixed with :data:`DEMOTED_PREFIX`
``accept``            it is passed on as a system message (callers are trusted)
``refuse``            the request is answered 400, naming the field and this setting
"""

from __future__ import annotations

from typing import Any, Literal

from keel.operate.server.errors import ApiError

__all__ = ["DEMOTED_PREFIX", "CallerSystemMessages", "apply_caller_roles", "run_input_with_caller_roles"]

CallerSystemMessages = Literal["demote", "accept", "refuse"]

DEMOTED_PREFIX = "[caller instructions] "
"""Starts the user content a demoted system message becomes, so the model can tell it apart."""

_PRIVILEGED = ("system", "developer")


def apply_caller_roles(messages: list[dict[str, Any]], fields: list[str], mode: str) -> list[dict[str, Any]]:
    """``messages`` (``{"role", "content", ...}``) with system/developer messages treated as ``mode``
    says; ``fields[i]`` names message ``i`` in the request (for a refusal)."""
    out = []
    for m, field in zip(messages, fields, strict=True):
        role = m.get("role")
        if role not in _PRIVILEGED:
            out.append(m)
        elif mode == "refuse":
            raise ApiError(400, f"{field} is a {role} message, and this server does not take system instructions "
                           "from callers", field=field,
                           hint="send it as user content; the operator may allow it with [serve] "
                                'caller_system_messages = "accept" (or "demote") in keel.toml')
        elif mode == "accept":
            out.append({**m, "role": "system"})
        elif isinstance(m.get("content"), str) and m["content"]:
            out.append({"role": "user", "content": DEMOTED_PREFIX + m["content"]})
    return out


def run_input_with_caller_roles(value: Any, mode: str, *, field: str = "body.input") -> Any:
    """A run's input with the system/developer messages of a conversation (``{"messages": [...]}``)
    treated as ``mode`` says; any other input as it is. ``field`` names the input in the request
    (the runs API's ``body.input``, an MCP call's ``arguments``)."""
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        return value
    messages = value["messages"]
    if not all(isinstance(m, dict) for m in messages):
        return value  # the engine names what is wrong with it
    fields = [f"{field}.messages[{i}]" for i in range(len(messages))]
    return {**value, "messages": apply_caller_roles(messages, fields, mode)}
