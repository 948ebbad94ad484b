"""The pieces of an OpenAI eval and eval run, read as OpenAI defines them.

Shapes follow the Evals API reference and openai-python's ``openai/types/eval*.py``,
``openai/types/evals/*`` and ``openai/types/graders/*``:

- ``data_source_config``: ``custom`` (``item_schema`` when created; ``schema`` when
  retrieved, the run-row schema ``{"item": <item_schema>, "sample": ...}``), ``logs`` and
  ``stored_completions`` (items that live in OpenAI's logs: refused with what to do);
- a run's ``data_source``: ``jsonl`` / ``completions`` / ``responses``, whose ``source`` is
  ``file_content`` (rows inline), ``file_id`` (an uploaded file: mapped to a local one),
  or ``stored_completions`` / ``responses`` (OpenAI's logs: refused);
- ``input_messages``: a ``template`` of messages (text, a typed content part, or a list
  of them) or an ``item_reference`` naming the item field that holds the messages;
- ``sampling_params``: temperature, top_p, seed, max tokens, ``response_format`` (Chat
  Completions) or ``text.format`` (Responses), and function ``tools``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from keel.evals.errors import EvalSpecError

__all__ = [
    "config_item_schema",
    "content_text",
    "input_messages",
    "refuse_unsupported_parts",
    "sampling_options",
    "source_dataset",
]

_TEXT_PARTS = ("input_text", "output_text", "text")
_MEDIA_HINT = ("Keel's evals grade text: put a text description (or transcript) of it in the item, "
               "or grade precomputed samples")
_LOGS_HINT = ("export the items with `openai api chat.completions.list` (or the dashboard's export), "
              "write them as {\"item\": {...}} JSONL lines, and run with --data items.jsonl")


def _unsupported_part(part: Any) -> str | None:
    if isinstance(part, dict) and part.get("type") in ("input_image", "image_url", "input_audio", "input_file"):
        return str(part["type"])
    return None


def content_text(content: Any, where: str) -> str:
    """The text of a message's ``content``: a string, a typed part, or a list of parts."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    texts = []
    for i, part in enumerate(parts):
        kind = _unsupported_part(part)
        if kind:
            raise EvalSpecError(f"{where}: {kind} inputs are not supported", hint=_MEDIA_HINT)
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type", "input_text") in _TEXT_PARTS \
                and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            at = f"[{i}]" if isinstance(content, list) else ""
            raise EvalSpecError(f"{where}{at}: content must be text or {{\"type\": \"input_text\", \"text\": ...}}")
    return "".join(texts)


def refuse_unsupported_parts(grader: Any, where: str) -> None:
    """One line for a judge whose prompt holds an image, audio or a file."""
    if not isinstance(grader, dict):
        return
    for i, m in enumerate(grader.get("input") or [] if isinstance(grader.get("input"), list) else []):
        content = m.get("content") if isinstance(m, dict) else None
        for part in content if isinstance(content, list) else [content]:
            kind = _unsupported_part(part)
            if kind:
                raise EvalSpecError(f"{where}.input[{i}]: {kind} inputs are not supported", hint=_MEDIA_HINT)
    for key, sub in (grader.get("graders") or {}).items() if isinstance(grader.get("graders"), dict) else ():
        refuse_unsupported_parts(sub, f"{where}.graders.{key}")


def config_item_schema(config: Any, where: str) -> dict[str, Any] | None:
    """The JSON schema each item must match, from a ``data_source_config`` as created or retrieved."""
    if not config:
        return None
    if not isinstance(config, dict):
        raise EvalSpecError(f"{where}: data_source_config must be an object")
    kind = config.get("type")
    if kind in ("logs", "stored_completions"):
        raise EvalSpecError(
            f"{where}: data_source_config type {kind!r} reads items from OpenAI's stored logs, which Keel "
            "cannot reach", hint=_LOGS_HINT)
    if kind not in (None, "custom"):
        raise EvalSpecError(f"{where}: unknown data_source_config type {kind!r}", hint="custom, logs or stored_completions")
    if isinstance(config.get("item_schema"), dict):
        return config["item_schema"]
    schema = config.get("schema")
    if isinstance(schema, dict):
        # Retrieved: the schema of a run row; the item's schema is its "item" property.
        item = (schema.get("properties") or {}).get("item")
        return item if isinstance(item, dict) else schema
    return None


def rows_file(rows: list[Any], cache: Path, prefix: str) -> str:
    """``rows`` as a JSONL file in ``cache``, named by its content (written once, atomically)."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    path = cache / f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.jsonl"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return str(path)


def source_dataset(source: Any, where: str, *, files: dict[str, str], cache: Path) -> str | None:
    """A dataset file for a run's ``source``: inline rows written once to ``cache``, a ``file_id``
    through ``files``, a ``file_path`` as it is; ``None`` when there is no source."""
    if not source:
        return None
    if not isinstance(source, dict):
        raise EvalSpecError(f"{where}: data_source.source must be an object")
    kind = source.get("type")
    if kind == "file_content":
        rows = source.get("content")
        if not isinstance(rows, list):
            raise EvalSpecError(f"{where}: data_source.source.content must be a list of {{\"item\": ...}} rows")
        return rows_file(rows, cache, "inline")
    if kind == "file_id":
        file_id = source.get("id")
        if file_id in files:
            return files[file_id]
        raise EvalSpecError(
            f"{where}: the run reads OpenAI file {file_id!r}, which is not mapped to a local file",
            hint=f"download it (`openai api files.content -i {file_id} > items.jsonl`) and pass "
                 f"--file {file_id}=items.jsonl")
    if kind == "file_path":
        return str(source.get("path"))
    if kind in ("stored_completions", "responses"):
        raise EvalSpecError(
            f"{where}: data_source.source type {kind!r} reads OpenAI's stored logs, which Keel cannot reach",
            hint=_LOGS_HINT)
    raise EvalSpecError(f"{where}: unknown data_source.source type {kind!r}",
                        hint="file_content, file_id, stored_completions or responses")


def input_messages(spec: Any, where: str) -> tuple[list[dict[str, str]] | None, str | None]:
    """``(template messages, None)`` or ``(None, item reference)`` from ``input_messages``."""
    if not isinstance(spec, dict):
        raise EvalSpecError(f"{where}: data_source.input_messages must be an object")
    if spec.get("type") == "item_reference":
        ref = spec.get("item_reference")
        if not isinstance(ref, str) or not ref.startswith("item."):
            raise EvalSpecError(f"{where}: input_messages.item_reference must name an item field, e.g. \"item.messages\"")
        return None, ref
    template = spec.get("template")
    if spec.get("type") != "template" or not isinstance(template, list):
        raise EvalSpecError(f"{where}: data_source.input_messages must be {{\"type\": \"template\", \"template\": "
                            "[...]}} or {\"type\": \"item_reference\", \"item_reference\": \"item.<field>\"}")
    messages = []
    for i, m in enumerate(template):
        at = f"{where}: data_source.input_messages.template[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise EvalSpecError(f"{at} needs a role (system, developer, user or assistant)")
        messages.append({"role": m["role"], "content": content_text(m.get("content", ""), at + ".content")})
    return messages, None


def _schema_of(fmt: Any, where: str) -> dict[str, Any] | None:
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "object"}
    if fmt["type"] == "json_schema":
        # Chat Completions nest it ({"json_schema": {"name", "schema"}}); Responses do not.
        inner = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt
        if isinstance(inner.get("schema"), dict):
            return inner["schema"]
    raise EvalSpecError(f"{where}: unsupported output format {fmt!r}", hint="text, json_object or json_schema")


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise EvalSpecError(f"{where}: tool type {kind!r} is one of OpenAI's hosted tools, which Keel cannot run",
                            hint="remove it from sampling_params.tools, or describe it as a function tool")
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool  # Chat vs Responses shape
    if not isinstance(fn.get("name"), str):
        raise EvalSpecError(f"{where}: a function tool needs a name")
    return {"name": fn["name"], "description": fn.get("description") or "",
            "parameters": fn.get("parameters") or {"type": "object", "properties": {}}}


def sampling_options(params: Any, where: str) -> dict[str, Any]:
    """ModelTarget fields from ``sampling_params`` (``reasoning_effort`` is not portable: ignored)."""
    if not params:
        return {}
    if not isinstance(params, dict):
        raise EvalSpecError(f"{where}: sampling_params must be an object")
    at = f"{where}: sampling_params"
    out: dict[str, Any] = {k: params[k] for k in ("temperature", "top_p", "seed") if params.get(k) is not None}
    for key in ("max_completion_tokens", "max_completions_tokens", "max_tokens", "max_output_tokens"):
        if params.get(key) is not None:
            out["max_tokens"] = params[key]
    fmt = params.get("response_format")
    if fmt is None and isinstance(params.get("text"), dict):
        fmt = params["text"].get("format")
    schema = _schema_of(fmt, at + (".response_format" if "response_format" in params else ".text.format"))
    if schema is not None:
        out["output_schema"] = schema
    tools = params.get("tools") or []
    if tools:
        out["tools"] = [_tool(t, f"{at}.tools[{i}]") for i, t in enumerate(tools)]
    return out
