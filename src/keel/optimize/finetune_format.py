"""OpenAI's fine-tuning JSONL formats: lines built from Keel's messages, and checked line by line.

**Chat (supervised)**, one conversation per line::

    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}],
     "tools": [{"type": "function", "function": {"name", "description", "parameters"}}],
     "parallel_tool_calls": false}

The last message is the assistant's (the part trained on); assistant tool calls are
``{"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}`` and each is
answered by a ``tool`` message with its ``tool_call_id``.

**Preference (DPO)**, a prompt and two answers::

    {"input": {"messages": [...], "tools": [...], "parallel_tool_calls": false},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

OpenAI's DPO takes text answers only: each output is exactly one assistant message with content
and no tool calls, and the input ends with a user message.

:func:`check_chat_line` and :func:`check_preference_line` return the first problem of a line (or
``None``), so an export refuses a file before writing it and ``keel distill train`` refuses a file
it did not write.
"""

from __future__ import annotations

import json
from typing import Any

from keel.models import Message, Tool

__all__ = ["chat_line", "check_chat_line", "check_preference_line", "message_json", "preference_line",
           "tools_json"]

_ROLES = ("system", "developer", "user", "assistant", "tool")


def message_json(m: Message) -> dict[str, Any]:
    """One message in Chat Completions' shape."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.role == "assistant" and m.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                             for c in m.tool_calls]
        if not m.content:
            out["content"] = None
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    if m.name and m.role in ("system", "developer", "user", "assistant"):
        out["name"] = m.name
    return out


def tools_json(tools: tuple[Tool, ...] | list[Tool]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


def chat_line(messages: list[Message], output: Message, tools: tuple[Tool, ...] | list[Tool]) -> dict[str, Any]:
    line: dict[str, Any] = {"messages": [message_json(m) for m in [*messages, output]]}
    if tools:
        line["tools"] = tools_json(tools)
        line["parallel_tool_calls"] = False
    return line


def preference_line(messages: list[Message], preferred: Message, rejected: Message,
                    tools: tuple[Tool, ...] | list[Tool]) -> dict[str, Any]:
    inp: dict[str, Any] = {"messages": [message_json(m) for m in messages]}
    if tools:
        inp["tools"] = tools_json(tools)
        inp["parallel_tool_calls"] = False
    return {"input": inp, "preferred_output": [message_json(preferred)],
            "non_preferred_output": [message_json(rejected)]}


def _check_tools(line: dict[str, Any]) -> tuple[str | None, set[str]]:
    tools = line.get("tools", [])
    if not isinstance(tools, list):
        return "tools must be a list", set()
    names: set[str] = set()
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
            return f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{...}}}}", names
        if not isinstance(fn.get("name"), str) or not fn["name"]:
            return f"tools[{i}].function.name must be a non-empty string", names
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            return f"tools[{i}].function.parameters must be a JSON schema object", names
        names.add(fn["name"])
    if "parallel_tool_calls" in line and not isinstance(line["parallel_tool_calls"], bool):
        return "parallel_tool_calls must be true or false", names
    return None, names


def _check_messages(messages: Any, where: str, tool_names: set[str]) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"{where} must be a non-empty list of messages"
    pending: set[str] = set()
    for i, m in enumerate(messages):
        at = f"{where}[{i}]"
        if not isinstance(m, dict):
            return f"{at} must be an object"
        role = m.get("role")
        if role not in _ROLES:
            return f"{at}.role must be one of {', '.join(_ROLES)}, not {role!r}"
        content = m.get("content")
        calls = m.get("tool_calls")
        if role == "assistant" and calls:
            if not isinstance(calls, list):
                return f"{at}.tool_calls must be a list"
            for j, c in enumerate(calls):
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(c.get("id"), str) or c.get("type") != "function":
                    return f"{at}.tool_calls[{j}] must have an id, type \"function\" and a function"
                if tool_names and fn.get("name") not in tool_names:
                    return f"{at}.tool_calls[{j}] calls {fn.get('name')!r}, which is not in tools"
                try:
                    json.loads(fn.get("arguments", ""))
                except (TypeError, json.JSONDecodeError):
                    return f"{at}.tool_calls[{j}].function.arguments must be a JSON text"
                pending.add(c["id"])
            if content is not None and not isinstance(content, str):
                return f"{at}.content must be a string or null"
        elif not isinstance(content, str) or (role != "tool" and not content.strip()):
            return f"{at}.content must be a non-empty string"
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                return f"{at} answers no earlier tool call (tool_call_id {m.get('tool_call_id')!r})"
            pending.discard(m["tool_call_id"])
        if "weight" in m and (role != "assistant" or m["weight"] not in (0, 1)):
            return f"{at}.weight must be 0 or 1, on an assistant message"
    return None


def check_chat_line(line: Any) -> str | None:
    """The first way ``line`` breaks OpenAI's chat fine-tuning format, or ``None``."""
    if not isinstance(line, dict) or "messages" not in line:
        return "a line must be an object with messages"
    extra = set(line) - {"messages", "tools", "parallel_tool_calls", "functions"}
    if extra:
        return f"unknown field(s): {', '.join(sorted(extra))}"
    problem, names = _check_tools(line)
    if problem:
        return problem
    problem = _check_messages(line["messages"], "messages", names)
    if problem:
        return problem
    if line["messages"][-1].get("role") != "assistant":
        return "the last message must be the assistant's (the answer trained on)"
    return None


def check_preference_line(line: Any) -> str | None:
    """The first way ``line`` breaks OpenAI's preference (DPO) fine-tuning format, or ``None``."""
    if not isinstance(line, dict):
        return "a line must be an object"
    missing = [k for k in ("input", "preferred_output", "non_preferred_output") if k not in line]
    if missing:
        return f"missing {', '.join(missing)}"
    extra = set(line) - {"input", "preferred_output", "non_preferred_output"}
    if extra:
        return f"unknown field(s): {', '.join(sorted(extra))}"
    inp = line["input"]
    if not isinstance(inp, dict):
        return "input must be an object with messages"
    problem, names = _check_tools(inp)
    if problem:
        return f"input.{problem}"
    problem = _check_messages(inp.get("messages"), "input.messages", names)
    if problem:
        return problem
    if inp["messages"][-1].get("role") != "user":
        return "input.messages must end with a user message"
    texts = []
    for key in ("preferred_output", "non_preferred_output"):
        out = line[key]
        if (not isinstance(out, list) or len(out) != 1 or not isinstance(out[0], dict)
                or out[0].get("role") != "assistant"):
            return f"{key} must be a list of exactly one assistant message"
        if out[0].get("tool_calls") or not isinstance(out[0].get("content"), str) or not out[0]["content"].strip():
            return f"{key}[0] must have text content and no tool calls (DPO takes text answers only)"
        texts.append(out[0]["content"])
    if texts[0] == texts[1]:
        return "preferred_output and non_preferred_output are the same text"
    return None
