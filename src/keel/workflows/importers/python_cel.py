"""Python expressions of an exported ``run_workflow`` as CEL, and the small :mod:`ast` helpers the
readers share.

The export writes Agent Builder's CEL back as Python (``workflow["input_as_text"]``,
``x.output_parsed["kind"] == "refund"``, ``len(...)``, ``.lower()``): :func:`python_to_cel`
turns those back, and raises :class:`Unrecognised` for anything the export does not write, so a
reader can report it instead of guessing.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

__all__ = ["Unrecognised", "call_name", "const", "kw", "python_to_cel"]


class Unrecognised(Exception):
    """A Python expression of a shape the export does not write."""


_PREC = {"?": 0, "||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "in": 3,
         "+": 4, "-": 4, "*": 5, "/": 5, "%": 5}
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in"}
_BIN = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
_METHODS = {"lower": "lowerAscii", "upper": "upperAscii", "startswith": "startsWith", "endswith": "endsWith",
            "strip": "trim"}
_FUNCS = {"len": "size", "str": "string", "int": "int", "float": "double", "bool": "bool"}


def python_to_cel(node: ast.expr, names: dict[str, str]) -> str:
    """A Python expression of the export as CEL. ``names`` maps result variables to the CEL that
    reads that node's output (``input`` or ``nodes.<id>``); ``workflow`` and ``state`` map to
    themselves. Raises :class:`Unrecognised` for anything else."""
    return _cel(node, names)[0]


def _wrap(text: str, prec: int, need: int) -> str:
    return f"({text})" if prec < need else text


def _cel(node: ast.expr, names: dict[str, str]) -> tuple[str, int]:
    top = 9
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            return ("true" if v else "false"), top
        if v is None:
            return "null", top
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False), top
        if isinstance(v, int | float):
            return repr(v), top
        raise Unrecognised(ast.unparse(node))
    if isinstance(node, ast.Name):
        if node.id in ("workflow", "state"):
            return node.id, top
        if node.id in names:
            return names[node.id], top
        raise Unrecognised(node.id)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        base, _ = _cel(node.value, names)
        key = node.slice.value
        if isinstance(key, str) and re.fullmatch(r"[A-Za-z_]\w*", key):
            return f"{base}.{key}", top
        return f"{base}[{json.dumps(key)}]", top
    if isinstance(node, ast.Attribute):  # the TypeScript export reads fields as attributes
        return f"{_cel(node.value, names)[0]}.{node.attr}", top
    if isinstance(node, ast.BoolOp):
        op = "&&" if isinstance(node.op, ast.And) else "||"
        parts = [_wrap(*_cel(v, names), _PREC[op] + 1 if i else _PREC[op]) for i, v in enumerate(node.values)]
        return f" {op} ".join(parts), _PREC[op]
    if isinstance(node, ast.UnaryOp):
        text, prec = _cel(node.operand, names)
        if isinstance(node.op, ast.Not):
            return "!" + _wrap(text, prec, 8), 8
        if isinstance(node.op, ast.USub):
            return "-" + _wrap(text, prec, 8), 8
        raise Unrecognised(ast.unparse(node))
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        op = node.ops[0]
        left, right = _cel(node.left, names), _cel(node.comparators[0], names)
        if isinstance(op, ast.NotIn):
            return f"!({_wrap(*left, 4)} in {_wrap(*right, 4)})", 8
        if type(op) not in _CMP:
            raise Unrecognised(ast.unparse(node))
        sym = _CMP[type(op)]
        return f"{_wrap(*left, 4)} {sym} {_wrap(*right, 4)}", 3
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        sym = _BIN[type(node.op)]
        p = _PREC[sym]
        return f"{_wrap(*_cel(node.left, names), p)} {sym} {_wrap(*_cel(node.right, names), p + 1)}", p
    if isinstance(node, ast.IfExp):
        return (f"{_wrap(*_cel(node.test, names), 1)} ? {_wrap(*_cel(node.body, names), 1)} : "
                f"{_wrap(*_cel(node.orelse, names), 0)}"), 0
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise Unrecognised(ast.unparse(node))
        items = [f"{_cel(k, names)[0]}: {_cel(v, names)[0]}" for k, v in zip(node.keys, node.values, strict=True)]
        return "{" + ", ".join(items) + "}", top
    if isinstance(node, ast.List | ast.Tuple):
        return "[" + ", ".join(_cel(e, names)[0] for e in node.elts) + "]", top
    if isinstance(node, ast.Call) and not node.keywords:
        if isinstance(node.func, ast.Name) and node.func.id in _FUNCS and len(node.args) == 1:
            return f"{_FUNCS[node.func.id]}({_cel(node.args[0], names)[0]})", top
        if isinstance(node.func, ast.Attribute) and node.func.attr in _METHODS:
            target = _wrap(*_cel(node.func.value, names), 9)
            args = ", ".join(_cel(a, names)[0] for a in node.args)
            return f"{target}.{_METHODS[node.func.attr]}({args})", top
    raise Unrecognised(ast.unparse(node))


def kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def const(node: ast.expr | None, default: Any = None) -> Any:
    if node is None:
        return default
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return default


def call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Await):
        node = node.value
    if not isinstance(node, ast.Call):
        return None
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None
