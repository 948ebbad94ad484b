"""``{{item.field}}`` / ``{{sample.output_text}}`` templates, with OpenAI's semantics.

A reference is a namespace (``item`` or ``sample``) and a path of keys and list
indexes: ``{{ item.answer }}``, ``{{ sample.output_json.steps[0].name }}``,
``{{ item.tags.1 }}``. Strings are substituted as they are; other values as
compact JSON. A template that is one whole reference (``"{{item.score}}"``) can
also be resolved to the raw value with :func:`resolve`. A reference to a field
that is not there raises :class:`TemplateError` naming the field and what is
there instead, so the item is recorded with that reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from keel.evals.errors import TemplateError

__all__ = ["has_references", "references", "render", "resolve"]

_REF = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def references(template: str) -> list[str]:
    """The references a template makes, e.g. ``["item.answer", "sample.output_text"]``."""
    return [m.group(1) for m in _REF.finditer(template)]


def has_references(template: str) -> bool:
    return _REF.search(template) is not None


def _split(ref: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    for m in _PART.finditer(ref):
        if m.start() != pos and ref[pos:m.start()] != ".":
            raise TemplateError(f"malformed reference {{{{{ref}}}}}", hint="write {{item.field}} or {{sample.output_json.a[0]}}")
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not parts or pos != len(ref):
        raise TemplateError(f"malformed reference {{{{{ref}}}}}", hint="write {{item.field}} or {{sample.output_json.a[0]}}")
    return parts


def resolve(ref: str, namespaces: Mapping[str, Any]) -> Any:
    """The value a reference such as ``item.answer`` points at, or :class:`TemplateError`."""
    parts = _split(ref.strip())
    head = parts[0]
    if head not in namespaces:
        raise TemplateError(
            f"{{{{{ref}}}}}: unknown namespace {head!r}",
            hint=f"references start with {' or '.join(sorted(namespaces))}, e.g. {{{{item.answer}}}}",
        )
    value = namespaces[head]
    walked = str(head)
    for part in parts[1:]:
        if isinstance(value, str) and walked == "sample.output_json":
            value = None  # the output was not JSON: fall through to the error below
        if isinstance(value, Mapping):
            key = str(part)
            if key not in value:
                keys = ", ".join(sorted(map(str, value))[:12]) or "none"
                raise TemplateError(
                    f"{{{{{ref}}}}}: {walked} has no field {key!r} (fields: {keys})",
                    hint="fix the template or add the field to the dataset",
                )
            value = value[key]
        elif isinstance(value, list) and (isinstance(part, int) or str(part).isdigit()):
            index = int(part)
            if index >= len(value):
                raise TemplateError(f"{{{{{ref}}}}}: {walked} has only {len(value)} elements")
            value = value[index]
        else:
            what = "null" if value is None else type(value).__name__
            raise TemplateError(
                f"{{{{{ref}}}}}: {walked} is {what}, so it has no field {part!r}",
                hint="sample.output_json is set only when the output is JSON" if walked.startswith("sample.output_json") else None,
            )
        walked += f".{part}"
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render(template: str, namespaces: Mapping[str, Any]) -> str:
    """Substitute every ``{{...}}`` reference; text without references is returned unchanged."""
    if "{{" not in template:
        return template
    return _REF.sub(lambda m: _text(resolve(m.group(1), namespaces)), template)
