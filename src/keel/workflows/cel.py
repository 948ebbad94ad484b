"""CEL (Common Expression Language) for conditions, transforms and templates.

Backed by ``cel-expr-python``, the CEL project's Python binding of cel-cpp (see
docs/decisions/0003-cel.md). Expressions are parsed *and type-checked* when a
workflow is validated, so syntax errors, undeclared variables and type errors
such as ``'a' + 1`` are reported before any run starts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from keel.workflows.cel_values import from_cel, has_wide_ints, to_cel

__all__ = ["VARIABLES", "WORKFLOW_NAMES", "CelError", "Expression", "compile_expression", "parsed_fields", "referenced"]

VARIABLES: tuple[str, ...] = ("input", "input_as_text", "state", "nodes", "workflow")
"""Top-level names every expression may use (see :mod:`keel.workflows.spec`)."""
WORKFLOW_NAMES: tuple[str, ...] = ("input", "input_as_text", "name", "run_id")
"""Keel's own names under ``workflow.``; the fields of a JSON input (Agent Builder's
``workflow.<field>``) come next to them."""

_ERROR_RE = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")
_STRING_RE = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_PATH_RE = re.compile(r"^\s*[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*\s*$")
_REF_RE = re.compile(r"(?<![\w.])(state|nodes|workflow)\s*\.\s*([A-Za-z_]\w*)")
_HAS_RE = re.compile(r"(?<![\w.])has\s*\([^()]*\)")
_PARSED_RE = re.compile(
    r"(?<![\w.])(?:input|nodes\s*\.\s*([A-Za-z_]\w*))\s*\.\s*output_parsed\s*\.\s*([A-Za-z_]\w*)")


class CelError(Exception):
    """An expression does not compile, or failed to evaluate. ``column`` is 1-based."""

    def __init__(self, message: str, *, column: int | None = None,
                 more: tuple[tuple[str, int | None], ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.more = more
        """Further ``(message, column)`` problems of the same expression, after the first."""


@functools.cache
def _env() -> Any:
    from cel_expr_python import cel
    from cel_expr_python.ext import ext_math, ext_strings

    dyn = cel.Type.DYN
    return cel.NewEnv(
        variables={"input": dyn, "input_as_text": cel.Type.STRING, "state": dyn, "nodes": dyn,
                   "workflow": dyn},
        extensions=[ext_strings.ExtStrings(), ext_math.ExtMath()],
    )


def _error_type() -> Any:
    from cel_expr_python import cel

    return cel.Type.ERROR


@dataclass(frozen=True)
class Expression:
    """A compiled, checked expression; evaluate it as often as needed (thread-safe)."""

    source: str
    _program: Any
    _path: tuple[str, ...] | None = None
    """For a plain path such as ``input.output_text``: its names, read without CEL when they
    lead through maps to a scalar (the common case, and CEL would convert every variable)."""

    def evaluate(self, variables: dict[str, Any]) -> Any:
        """The expression's value as JSON-able Python (None, bool, int, float, str, list, dict);
        bytes, timestamps, durations, types, NaN and infinities as :func:`from_cel` maps them."""
        if self._path is not None:
            value: Any = variables
            for name in self._path:
                if not isinstance(value, dict) or name not in value:
                    break
                value = value[name]
            else:
                if value is None or isinstance(value, (str, bool)) or (
                        type(value) is int and -2**63 <= value < 2**63):
                    return value
                if isinstance(value, float):
                    return from_cel(value)
        try:
            value = self._program.eval(data=variables)
        except Exception as e:  # conversion of an unsupported Python value
            if not has_wide_ints(variables):
                raise CelError(f"cannot evaluate {self.source!r}: {e}") from None
            value = None
        # An integer outside int64 makes cel-cpp refuse the whole variable; JSON numbers are
        # doubles in CEL's JSON mapping, so it goes in as one (checked only on failure: walking
        # every variable on each evaluation would cost every run).
        if (value is None or value.type() == _error_type()) and has_wide_ints(variables):
            try:
                value = self._program.eval(data=to_cel(variables))
            except Exception as e:
                raise CelError(f"cannot evaluate {self.source!r}: {e}") from None
        if value.type() == _error_type():
            raise CelError(f"{self.source!r} failed: {value.plain_value()}")
        return from_cel(value.plain_value())


def compile_expression(source: str) -> Expression:
    """Parse and type-check ``source``; raise :class:`CelError` with the column of the problem."""
    if not source.strip():
        raise CelError("the expression is empty")
    try:
        program = _env().compile(source)
    except Exception as e:
        text = str(e)
        found = [(m.group(3).replace(" (in container '')", ""), int(m.group(2)))
                 for m in _ERROR_RE.finditer(text)]
        if not found:
            raise CelError(text.splitlines()[0]) from None
        (message, column), *more = found
        raise CelError(message, column=column, more=tuple(more)) from None
    path = tuple(part.strip() for part in source.split(".")) if _PATH_RE.match(source) else None
    return Expression(source, program, path if path and path[0] in VARIABLES else None)


def referenced(source: str) -> list[tuple[str, str]]:
    """``(root, name)`` pairs for ``state.<name>``, ``nodes.<name>`` and ``workflow.<name>`` references in ``source``
    (string literals ignored), so validation can check the names exist."""
    return _REF_RE.findall(_STRING_RE.sub('""', source))


def parsed_fields(source: str) -> list[tuple[str | None, str]]:
    """``(node_id, field)`` for ``nodes.<id>.output_parsed.<field>``, and ``(None, field)`` for
    ``input.output_parsed.<field>``, in ``source`` (string literals and ``has()`` arguments ignored)."""
    # has(x.output_parsed.f) asks whether the field is there: legal CEL even when a strict
    # schema lacks it (it is then false), so its argument is no reference to check.
    # So is reading it where has() guards it (``has(x.f) ? x.f : d``): fields the expression
    # tests with has() are left out everywhere in it.
    text = _STRING_RE.sub('""', source)
    guarded = {(node or None, f) for m in _HAS_RE.finditer(text) for node, f in _PARSED_RE.findall(m.group())}
    return [(node or None, f) for node, f in _PARSED_RE.findall(_HAS_RE.sub("true", text))
            if (node or None, f) not in guarded]
