"""Python function tools for Agent nodes.

A tool is a plain function (sync or async) with type-annotated parameters; its
JSON schema comes from the annotations and its description from the docstring
(parameters' descriptions from its ``Args:`` or ``:param x:`` lines). Every call's
arguments are validated and converted by the signature before the function runs; invalid
ones go back to the model as ``error: invalid arguments ...``. ``@keel.tool`` is
:func:`function_tool` under its short name.
A parameter annotated :class:`ToolContext` is not shown to the model: Keel fills
it in with the run id and an **idempotency key** that stays the same if the call
is retried after a crash. Tools with side effects should use the key to do their
effect at most once (e.g. ``INSERT ... ON CONFLICT DO NOTHING``, or the
``Idempotency-Key`` header of a payment API).

Agent nodes name tools either by import path (``myapp.tools:refund``, which any
process can resolve, so a resumed run finds its tools; modules are also looked up in
the current directory) or by a name registered with :func:`function_tool`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from keel.models import Tool

__all__ = ["FunctionTool", "ToolContext", "ToolNotFound", "function_tool", "resolve_tool", "tool"]


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call it serves."""

    run_id: str
    node_id: str
    idempotency_key: str
    """Stable across retries of the same call: the same key means the same call."""
    call_id: str
    """The model's id for this tool call."""


class ToolNotFound(LookupError):
    """The tool reference names no registered tool and no importable function."""


@dataclass(frozen=True)
class FunctionTool:
    """A Python function the model may call."""

    name: str
    fn: Callable[..., Any]
    tool: Tool
    """Name, description and JSON schema of the parameters, as sent to the model."""
    context_param: str | None
    """Name of the parameter that receives a :class:`ToolContext`, if any."""
    args_model: type[BaseModel] | None = None
    """The arguments as a pydantic model (from the signature): a call's arguments are validated and
    converted with it (``date``, ``Literal``, nested models...) before the function sees them."""

    async def call(self, arguments: dict[str, Any], ctx: ToolContext) -> Any:
        kwargs = dict(arguments)
        if self.args_model is not None:
            try:
                parsed = self.args_model.model_validate(kwargs)
            except ValidationError as e:  # back to the model, which can correct its call
                problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                                     for err in e.errors())
                return f"error: invalid arguments for tool {self.name}: {problems}"
            kwargs = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        if self.context_param:
            kwargs[self.context_param] = ctx
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        # A blocking tool runs in a thread so that other runs go on meanwhile.
        result = await asyncio.to_thread(self.fn, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


_registry: dict[str, FunctionTool] = {}


def _make(fn: Callable[..., Any], name: str | None = None, description: str | None = None) -> FunctionTool:
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    context_param = None
    for pname, param in inspect.signature(fn).parameters.items():
        annotation = hints.get(pname, Any)
        if annotation is ToolContext:
            context_param = pname
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, default)
    model = create_model(f"{fn.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    summary, params = _docstring(inspect.getdoc(fn) or "")
    for pname, prop in schema.get("properties", {}).items():
        prop.pop("title", None)
        if pname in params and "description" not in prop:
            prop["description"] = params[pname]
    tool_name = name or fn.__name__
    doc = description if description is not None else summary
    return FunctionTool(tool_name, fn, Tool(name=tool_name, description=doc, parameters=schema), context_param,
                        model)


_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?):\s*$")
_PARAM = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX = re.compile(r"^:param\s+(?:[\w\[\], |]+\s+)?(\w+):\s*(.*)$")


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description of a tool and of each parameter, from a Google-style (``Args:`` section,
    ``name: text`` or ``name (type): text`` lines, continuation lines indented) or Sphinx-style
    (``:param name: text``) docstring. The summary is the docstring without those sections."""
    summary: list[str] = []
    params: dict[str, str] = {}
    section = current = None
    for line in doc.splitlines():
        head = _SECTION.match(line.strip()) if not line.startswith((" ", "\t")) else None
        if head:
            section, current = head.group(1).lower(), None
            continue
        sphinx = _SPHINX.match(line.strip())
        if sphinx:
            current = sphinx.group(1)
            params[current] = sphinx.group(2).strip()
            section = "sphinx"
            continue
        if section in ("args", "arguments", "parameters", "params"):
            m = _PARAM.match(line)
            if m and len(line) - len(line.lstrip()) <= 4:
                current = m.group(1).lstrip("*")
                params[current] = m.group(2).strip()
            elif line.strip() and current:
                params[current] = f"{params[current]} {line.strip()}".strip()
        elif section is None:
            summary.append(line)
        elif section == "sphinx" and line.strip() and current:
            params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(summary).strip(), params


def function_tool(fn: Callable[..., Any] | None = None, *, name: str | None = None,
                  description: str | None = None) -> Any:
    """Register ``fn`` as a tool Agent nodes can name (decorator, with or without arguments)."""

    def register(f: Callable[..., Any]) -> Callable[..., Any]:
        t = _make(f, name, description)
        _registry[t.name] = t
        return f

    return register(fn) if fn is not None else register


tool = function_tool
"""``@keel.tool``: make a Python function a tool Agent nodes can name (by its import path or its
name). Its JSON schema comes from the type hints, its description and the parameters'
descriptions from the docstring (Google ``Args:`` or Sphinx ``:param x:``), and every call's
arguments are validated and converted by the signature's types before the function runs; invalid
ones go back to the model as ``error: invalid arguments ...`` so it can correct the call::

    @keel.tool
    def convert(amount: float, currency: Literal["EUR", "USD"], on: date | None = None) -> str:
        \"\"\"Convert an amount to another currency.

        Args:
            amount: the amount, in the source currency
            currency: the currency to convert to
            on: the day of the rate (default: today)
        \"\"\"
"""


def _import(module_name: str) -> Any:
    """Import ``module_name`` from sys.path, else from the current directory (a project's own
    tools module, as ``python -m`` and uvicorn's ``--app-dir`` would find it)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        cwd = os.getcwd()
        if e.name != module_name.split(".")[0] or cwd in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_name)


def resolve_tool(ref: str, extra: dict[str, Callable[..., Any]] | None = None) -> FunctionTool:
    """The tool ``ref`` names: a name in ``extra`` or the registry, or ``module:function``."""
    if extra and ref in extra:
        return _make(extra[ref], ref)
    if ref in _registry:
        return _registry[ref]
    module_name, sep, attr = ref.partition(":")
    if not sep:
        raise ToolNotFound(f"no tool registered as {ref!r}")
    try:
        fn = getattr(_import(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ToolNotFound(f"cannot import {ref!r}: {e}") from None
    if not callable(fn):
        raise ToolNotFound(f"{ref!r} is not a function")
    # A decorated function keeps its registered name; otherwise the tool is named after it.
    for t in _registry.values():
        if t.fn is fn:
            return t
    return _make(fn)
