"""Safe arithmetic for multi graders' ``calculate_output`` (never ``eval``).

The formula is parsed with :mod:`ast` and only numbers, grader names, ``+ - * /``,
``^`` or ``**`` (power), ``%``, unary minus, parentheses and the functions
``min max abs floor ceil exp sqrt log`` are allowed. Anything else (attribute
access, subscripts, other calls, strings) is rejected when the eval is loaded.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

__all__ = ["FormulaError", "check_formula", "evaluate"]


class FormulaError(ValueError):
    """The formula is malformed, uses something not allowed, or cannot be computed."""


_BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil,
    "exp": math.exp, "sqrt": math.sqrt, "log": math.log,
}


def _parse(formula: str) -> ast.Expression:
    try:
        # OpenAI's formulas write powers as a ^ b; Python's ^ would bind looser than +.
        return ast.parse(formula.strip().replace("^", "**"), mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"formula {formula!r} is not valid arithmetic: {e.msg}") from None


def _names(node: ast.AST, formula: str) -> set[str]:
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            if not isinstance(sub.func, ast.Name) or sub.func.id not in _FUNCTIONS or sub.keywords:
                raise FormulaError(f"formula {formula!r}: only {', '.join(_FUNCTIONS)} may be called")
        elif isinstance(sub, ast.Name):
            if sub.id not in _FUNCTIONS:
                names.add(sub.id)
        elif isinstance(sub, ast.Constant):
            if not isinstance(sub.value, int | float) or isinstance(sub.value, bool):
                raise FormulaError(f"formula {formula!r}: only numbers are allowed, not {sub.value!r}")
        elif isinstance(sub, ast.BinOp):
            if type(sub.op) not in _BINARY:
                raise FormulaError(f"formula {formula!r}: operator {type(sub.op).__name__} is not allowed")
        elif isinstance(sub, ast.UnaryOp):
            if not isinstance(sub.op, ast.USub | ast.UAdd):
                raise FormulaError(f"formula {formula!r}: operator {type(sub.op).__name__} is not allowed")
        elif not isinstance(sub, ast.Expression | ast.Load | ast.operator | ast.unaryop):
            raise FormulaError(f"formula {formula!r}: {type(sub).__name__} is not allowed")
    return names


def check_formula(formula: str, names: set[str] | frozenset[str]) -> None:
    """Raise :class:`FormulaError` unless ``formula`` is allowed and uses only ``names``."""
    unknown = _names(_parse(formula), formula) - set(names)
    if unknown:
        raise FormulaError(
            f"formula {formula!r} names {', '.join(sorted(unknown))}, which is not a sub-grader "
            f"(sub-graders: {', '.join(sorted(names)) or 'none'})"
        )


def evaluate(formula: str, values: Mapping[str, float]) -> float:
    """The formula's value with ``values`` bound to the names."""
    tree = _parse(formula)
    _names(tree, formula)

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise FormulaError(f"formula {formula!r}: no value for {node.id!r}")
            return float(values[node.id])
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 1000:
                raise FormulaError(f"formula {formula!r}: exponent {right} is too large")
            return float(_BINARY[type(node.op)](left, right))
        if isinstance(node, ast.Call):
            return float(_FUNCTIONS[node.func.id](*(ev(a) for a in node.args)))  # type: ignore[attr-defined]
        raise FormulaError(f"formula {formula!r}: {type(node).__name__} is not allowed")  # pragma: no cover

    try:
        result = ev(tree)
    except ZeroDivisionError:
        raise FormulaError(f"formula {formula!r} divides by zero") from None
    except (ValueError, OverflowError, TypeError) as e:
        if isinstance(e, FormulaError):
            raise
        raise FormulaError(f"formula {formula!r} cannot be computed: {e}") from None
    if math.isnan(result) or math.isinf(result):
        raise FormulaError(f"formula {formula!r} gave {result}")
    return result
