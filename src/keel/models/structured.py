"""JSON-schema checks shared by every provider.

Whatever a provider does to constrain its output (native strict mode, a grammar,
nothing at all), Keel validates the result here, so "parsed" always means
"valid under the schema".
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError as _JsonSchemaError
from jsonschema.exceptions import best_match

from keel.errors import SchemaError
from keel.models.types import Tool, ToolCall
from keel.safeload import load_json

__all__ = [
    "UNPARSEABLE_ARGUMENTS",
    "check_schema",
    "is_strict_compatible",
    "load_schema_file",
    "parse_json",
    "validate_instance",
    "validate_output",
]


def check_schema(schema: Any, *, where: str = "output schema") -> dict[str, Any]:
    """Return ``schema`` if it is a valid JSON Schema (draft 2020-12) object, else raise."""
    if not isinstance(schema, dict):
        raise SchemaError(
            f"{where} must be a JSON object, not {type(schema).__name__}",
            hint='start from {"type": "object", "properties": {...}, "required": [...]}',
        )
    try:
        Draft202012Validator.check_schema(schema)
    except _JsonSchemaError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise SchemaError(
            f"{where} is not a valid JSON Schema at {path}: {e.message}",
            hint="check it against https://json-schema.org/draft/2020-12",
        ) from None
    return schema


def load_schema_file(path: str | Path) -> dict[str, Any]:
    """Read and check a schema file; every failure is a :class:`SchemaError` naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"schema file {p} does not exist", hint="check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SchemaError(f"cannot read schema file {p}: {e}") from None
    try:
        schema = load_json(text, where=f"schema file {p}")
    except json.JSONDecodeError as e:
        raise SchemaError(
            f"{p}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}",
            hint="a schema file holds one JSON object",
        ) from None
    return check_schema(schema, where=f"schema file {p}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str) -> Any:
    """Parse strict JSON (no NaN/Infinity); raises ``ValueError`` with a readable message."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise ValueError("nested too deep to read") from None


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def validate_instance(instance: Any, schema: dict[str, Any]) -> str | None:
    """Return ``None`` if ``instance`` is valid under ``schema``, else the most relevant error."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    path = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {path}: {error.message}"


def validate_output(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """Parse ``text`` and validate it: ``(parsed, None)`` or ``(None, reason)``."""
    try:
        value = parse_json(text.strip())
    except ValueError as e:
        return None, str(e)
    error = validate_instance(value, schema)
    return (value, None) if error is None else (None, error)


UNPARSEABLE_ARGUMENTS = "__keel_unparseable_arguments__"
"""Key under which a provider keeps tool-call arguments that were not a JSON object."""


def validate_tool_call(call: ToolCall, tools: tuple[Tool, ...]) -> str | None:
    """``None`` if ``call`` names a known tool with valid arguments, else the reason."""
    if UNPARSEABLE_ARGUMENTS in call.arguments:
        raw = str(call.arguments[UNPARSEABLE_ARGUMENTS])[:200]
        return f"arguments of tool {call.name!r} are not a JSON object: {raw!r}"
    for tool in tools:
        if tool.name == call.name:
            error = validate_instance(call.arguments, tool.parameters)
            return None if error is None else f"arguments of tool {call.name!r} {error}"
    known = ", ".join(t.name for t in tools) or "none"
    return f"tool {call.name!r} does not exist (tools: {known})"


_STRICT_TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}


def is_strict_compatible(schema: Any) -> bool:
    """True if OpenAI's strict structured-output mode accepts ``schema`` as it is.

    Strict mode wants every object closed (``additionalProperties: false``) with
    all its properties required. Other schemas still go out in JSON-schema mode,
    non-strict, and Keel's own validation catches what the endpoint lets through.
    """
    if isinstance(schema, list):
        return all(is_strict_compatible(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    types = schema.get("type")
    for t in types if isinstance(types, list) else [types]:
        if t is not None and t not in _STRICT_TYPES:
            return False
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if schema.get("additionalProperties", True) is not False:
            return False
        if set(schema.get("required", [])) != set(props):
            return False
    children: list[Any] = []
    for key in ("properties", "$defs", "definitions"):
        children.extend(schema.get(key, {}).values())
    children.extend(schema[key] for key in ("items", "anyOf") if key in schema)
    return all(is_strict_compatible(c) for c in children)
