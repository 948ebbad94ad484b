"""Metadata filters: a small, checked language compiled to SQL.

Python callers pass a filter as a dict, in the style of MongoDB and Chroma::

    {"lang": "python"}                                  equality
    {"start_line": {"$gte": 10, "$lt": 200}}            ranges ($gt $gte $lt $lte $ne)
    {"kind": {"$in": ["code", "markdown"]}}             membership ($in, $nin)
    {"$or": [{"source": "a.md"}, {"year": {"$gte": 2020}}]}   and / or

The CLI's ``--where`` takes the same as JSON, or a shorthand::

    lang = python and (year >= 2020 or kind in [code, markdown])

Fields are the chunk's own (``source``, ``kind``, ``title``, ``anchor``,
``start_line``, ``end_line``, ``signature``; ``symbol`` and ``heading`` match any
entry of the symbol list or heading path) plus every metadata key seen at ingest.
An unknown field, operator or malformed expression raises :class:`FilterError`
naming it.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from keel.errors import UserError
from keel.safeload import load_json

__all__ = ["BUILTIN_FIELDS", "Filter", "FilterError", "compile_filter", "parse_where"]

Filter = dict[str, Any]

BUILTIN_FIELDS = {
    "source": "d.source", "kind": "c.kind", "title": "c.title", "anchor": "c.anchor",
    "start_line": "c.start_line", "end_line": "c.end_line", "signature": "c.signature",
}
_LIST_FIELDS = {"symbol": "c.symbols", "heading": "c.heading_path"}
_OPS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_SHORT_OPS = {"=": "$eq", "==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte",
              "in": "$in", "not in": "$nin"}


class FilterError(UserError):
    """A metadata filter is malformed or names an unknown field."""


def _scalar(v: Any, where: str) -> Any:
    if isinstance(v, bool):
        return int(v)
    if v is None or isinstance(v, int | float | str):
        return v
    raise FilterError(f"filter value for {where} must be a string, number or boolean, got {json.dumps(v)}")


def compile_filter(flt: Filter, known_meta: set[str], *, dialect: str = "sqlite") -> tuple[str, list[Any]]:
    """``(sql, params)``: a boolean SQL expression over ``chunks c JOIN documents d``.

    ``dialect`` ``"sqlite"`` gives ``?`` parameters and ``json_extract`` over JSON text;
    ``"postgresql"`` gives ``%s`` parameters and ``jsonb`` operators (metadata and the
    symbol and heading lists are ``jsonb`` columns there).
    """
    if not isinstance(flt, dict) or not flt:
        raise FilterError(f"a filter must be a non-empty object, got {json.dumps(flt, default=str)}")
    parts: list[str] = []
    params: list[Any] = []
    for key, value in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} needs a non-empty list of filters")
            subs = [compile_filter(v, known_meta, dialect=dialect) for v in value]
            parts.append("(" + f" {key[1:].upper()} ".join(s for s, _ in subs) + ")")
            for _, p in subs:
                params.extend(p)
            continue
        if key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r} at the top level",
                              hint="use $and or $or here, or a field name")
        sql, p = (_pg_field if dialect == "postgresql" else _field)(key, value, known_meta)
        parts.append(sql)
        params.extend(p)
    return "(" + " AND ".join(parts) + ")", params


def _column(field: str, known_meta: set[str]) -> tuple[str, bool]:
    if field in BUILTIN_FIELDS:
        return BUILTIN_FIELDS[field], False
    if field in _LIST_FIELDS:
        return _LIST_FIELDS[field], True
    if field in known_meta:
        return "json_extract(c.meta, ?)", False
    known = sorted({*BUILTIN_FIELDS, *_LIST_FIELDS, *known_meta})
    close = difflib.get_close_matches(field, known, n=1)
    raise FilterError(
        f"unknown filter field {field!r}",
        hint=(f"did you mean {close[0]!r}? " if close else "") + f"fields in this collection: {', '.join(known)}",
    )


def _field(field: str, value: Any, known_meta: set[str]) -> tuple[str, list[Any]]:
    col, is_list = _column(field, known_meta)
    col_params: list[Any] = [f'$."{field}"'] if col.startswith("json_extract") else []
    conds = value if isinstance(value, dict) else {"$eq": value}
    if not conds:
        raise FilterError(f"empty condition for field {field!r}")
    parts, params = [], []
    for op, v in conds.items():
        if op in ("$in", "$nin"):
            if not isinstance(v, list) or not v:
                raise FilterError(f"{op} on {field!r} needs a non-empty list, got {json.dumps(v, default=str)}")
            vals = [_scalar(x, field) for x in v]
            marks = ",".join("?" * len(vals))
            if is_list:
                sql = f"EXISTS (SELECT 1 FROM json_each({col}) WHERE value IN ({marks}))"
                params.extend(vals)
            else:
                sql = f"{col} IN ({marks})"
                params.extend(col_params + vals)
            parts.append(sql if op == "$in" else f"NOT ({sql})")
        elif op in _OPS:
            val = _scalar(v, field)
            if is_list:
                if op not in ("$eq", "$ne"):
                    raise FilterError(f"{field!r} is a list: only equality, $in and $nin apply")
                sql = f"EXISTS (SELECT 1 FROM json_each({col}) WHERE value = ?)"
                parts.append(sql if op == "$eq" else f"NOT {sql}")
                params.append(val)
            elif val is None:
                parts.append(f"{col} IS {'NOT ' if op == '$ne' else ''}NULL")
                params.extend(col_params)
            else:
                parts.append(f"{col} {_OPS[op]} ?")
                params.extend([*col_params, val])
        else:
            raise FilterError(f"unknown filter operator {op!r} on field {field!r}",
                              hint=f"operators: {', '.join([*_OPS, '$in', '$nin'])}")
    return "(" + " AND ".join(parts) + ")", params


def _pg_field(field: str, value: Any, known_meta: set[str]) -> tuple[str, list[Any]]:
    """:func:`_field` for PostgreSQL: metadata compared as ``jsonb`` (numbers as numbers)."""
    col, is_list = _column(field, known_meta)
    is_meta = col.startswith("json_extract")
    conds = value if isinstance(value, dict) else {"$eq": value}
    if not conds:
        raise FilterError(f"empty condition for field {field!r}")
    parts: list[str] = []
    params: list[Any] = []

    def lhs() -> str:
        if is_meta:
            params.append(field)
            return "(c.meta -> %s)"
        return col

    def rhs(v: Any) -> str:
        if is_meta:
            params.append(json.dumps(v))
            return "%s::jsonb"
        params.append(int(v) if isinstance(v, bool) else v)
        return "%s"

    for op, v in conds.items():
        if op in ("$in", "$nin"):
            if not isinstance(v, list) or not v:
                raise FilterError(f"{op} on {field!r} needs a non-empty list, got {json.dumps(v, default=str)}")
            for x in v:
                _scalar(x, field)
            if is_list:
                alts = []
                for x in v:
                    alts.append(f"{col} @> %s::jsonb")
                    params.append(json.dumps([x]))
                sql = "(" + " OR ".join(alts) + ")"
            else:
                left = lhs()
                sql = f"{left} IN ({', '.join(rhs(x) for x in v)})"
            parts.append(sql if op == "$in" else f"NOT COALESCE({sql}, false)")
        elif op in _OPS:
            _scalar(v, field)
            if is_list:
                if op not in ("$eq", "$ne"):
                    raise FilterError(f"{field!r} is a list: only equality, $in and $nin apply")
                params.append(json.dumps([v]))
                parts.append(f"{col} @> %s::jsonb" if op == "$eq" else f"NOT ({col} @> %s::jsonb)")
            elif v is None:
                left = lhs()
                null = f"({left} IS NULL" + (f" OR {left} = 'null'::jsonb)" if is_meta else ")")
                if is_meta:
                    params.append(field)
                parts.append(f"NOT {null}" if op == "$ne" else null)
            else:
                left = lhs()
                parts.append(f"{left} {_OPS[op]} {rhs(v)}")
        else:
            raise FilterError(f"unknown filter operator {op!r} on field {field!r}",
                              hint=f"operators: {', '.join([*_OPS, '$in', '$nin'])}")
    return "(" + " AND ".join(parts) + ")", params


# -- the CLI shorthand ---------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<list>\[[^\]]*\])|(?P<op>not\s+in\b|in\b|==|!=|>=|<=|=|>|<)
    |(?P<kw>and\b|or\b)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<word>[^\s()\[\]=!<>"',]+))""",
    re.X | re.I,
)


def _value(tok: str) -> Any:
    if tok[:1] in "\"'":
        return tok[1:-1]
    for conv in (int, float):
        try:
            return conv(tok)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(tok.lower(), tok)


def parse_where(text: str) -> Filter:
    """Parse a ``--where`` string: JSON (starting with ``{``) or the shorthand."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return load_json(text, where="--where")
        except json.JSONDecodeError as e:
            raise FilterError(f"--where is not valid JSON: {e.msg} at column {e.colno}") from None
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if not text[pos:].strip():
                break
            raise FilterError(f"cannot parse --where at column {pos + 1}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind).strip(), pos + 1))
        pos = m.end()
    if not tokens:
        raise FilterError("--where is empty")
    i = 0

    def peek() -> tuple[str, str, int] | None:
        return tokens[i] if i < len(tokens) else None

    def take(kind: str | None = None) -> tuple[str, str, int]:
        nonlocal i
        tok = peek()
        if tok is None:
            raise FilterError(f"--where ends too early: {text!r}", hint="e.g. lang = python and year >= 2020")
        if kind and tok[0] != kind:
            raise FilterError(f"--where: expected {kind} at column {tok[2]}, got {tok[1]!r}")
        i += 1
        return tok

    def parse_or() -> Filter:
        items = [parse_and()]
        while (t := peek()) and t[0] == "kw" and t[1].lower() == "or":
            take()
            items.append(parse_and())
        return items[0] if len(items) == 1 else {"$or": items}

    def parse_and() -> Filter:
        items = [parse_term()]
        while (t := peek()) and t[0] == "kw" and t[1].lower() == "and":
            take()
            items.append(parse_term())
        return items[0] if len(items) == 1 else {"$and": items}

    def parse_term() -> Filter:
        t = peek()
        if t and t[0] == "lp":
            take()
            inner = parse_or()
            take("rp")
            return inner
        fld = take("word")[1]
        op_tok = take("op")
        op = _SHORT_OPS[re.sub(r"\s+", " ", op_tok[1].lower())]
        if op in ("$in", "$nin"):
            v = take()
            if v[0] != "list":
                raise FilterError(f"--where: {op_tok[1]} needs a list like [a, b] at column {v[2]}")
            vals = [_value(x.strip()) for x in v[1][1:-1].split(",") if x.strip()]
            return {fld: {op: vals}}
        v = take()
        if v[0] not in ("word", "str"):
            raise FilterError(f"--where: expected a value at column {v[2]}, got {v[1]!r}")
        return {fld: {op: _value(v[1])}}

    result = parse_or()
    if i != len(tokens):
        raise FilterError(f"--where: unexpected {tokens[i][1]!r} at column {tokens[i][2]}")
    return result
