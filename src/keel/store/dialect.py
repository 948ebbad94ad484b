"""SQL dialects: every difference between SQLite and PostgreSQL that Keel's SQL meets, in one place.

Keel's code and migrations are written once, in the portable subset both understand, with
``?`` placeholders. :func:`to_postgres` turns such a statement into PostgreSQL's:

- ``?`` placeholders become ``%s`` (psycopg's), and a literal ``%`` becomes ``%%`` so that
  psycopg does not read it as one; a ``?`` inside a string literal, a quoted identifier or a
  comment stays as it is;
- in DDL: ``INTEGER`` becomes ``BIGINT`` (SQLite's integers are 64-bit; PostgreSQL's
  ``INTEGER`` is 32-bit, and the same value must fit on both), ``REAL`` and ``FLOAT`` become
  ``DOUBLE PRECISION``, ``BLOB`` becomes ``BYTEA``, and ``INTEGER PRIMARY KEY AUTOINCREMENT``
  an identity column;
- ``INSERT OR IGNORE`` becomes ``INSERT ... ON CONFLICT DO NOTHING``. ``INSERT OR REPLACE``
  has no faithful translation without knowing the key (it deletes the old row): it is
  refused here, write ``INSERT ... ON CONFLICT (key) DO UPDATE SET ...``, which both run.

Translations are cached: the code issues the same few hundred statements over and over.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["UnportableSQL", "placeholders_to_pyformat", "to_postgres"]


class UnportableSQL(ValueError):
    """A statement uses SQLite-only SQL that has no faithful PostgreSQL translation."""


_DDL = re.compile(r"^\s*(CREATE\s+TABLE|ALTER\s+TABLE)\b", re.IGNORECASE)
_AUTOINCREMENT = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.IGNORECASE)
_TYPES = (
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\b(REAL|FLOAT)\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
)
_INSERT_OR = re.compile(r"^(\s*)INSERT\s+OR\s+(IGNORE|REPLACE)\b", re.IGNORECASE)


def _segments(sql: str) -> list[tuple[bool, str]]:
    """Split ``sql`` into (is_code, text) pieces; literals, quoted names and comments are not code."""
    out: list[tuple[bool, str]] = []
    i, n, start = 0, len(sql), 0
    while i < n:
        c = sql[i]
        end = -1
        if c in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # '' or "" escapes the quote
                        j += 2
                        continue
                    break
                j += 1
            end = min(j + 1, n)
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            end = n if j < 0 else j
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            end = n if j < 0 else j + 2
        if end < 0:
            i += 1
            continue
        if start < i:
            out.append((True, sql[start:i]))
        out.append((False, sql[i:end]))
        i = start = end
    if start < n:
        out.append((True, sql[start:]))
    return out


def placeholders_to_pyformat(sql: str) -> str:
    """``?`` -> ``%s`` in code, ``%`` -> ``%%`` everywhere (psycopg parses literals for ``%`` too)."""
    parts = []
    for is_code, text in _segments(sql):
        text = text.replace("%", "%%")
        parts.append(text.replace("?", "%s") if is_code else text)
    return "".join(parts)


_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


def _before_returning(segments: list[tuple[bool, str]], clause: str) -> list[tuple[bool, str]]:
    """``clause`` inserted before a ``RETURNING`` (or a final ``;``), else appended."""
    for i in range(len(segments) - 1, -1, -1):
        is_code, text = segments[i]
        if is_code and (m := _RETURNING.search(text)):
            return [*segments[:i], (True, text[:m.start()].rstrip() + clause + " " + text[m.start():]),
                    *segments[i + 1:]]
    last = len(segments) - 1
    if segments and segments[last][0] and segments[last][1].rstrip().endswith(";"):
        text = segments[last][1].rstrip()[:-1].rstrip()
        return [*segments[:last], (True, text + clause + ";")]
    return [*segments, (True, clause)]


@lru_cache(maxsize=4096)
def to_postgres(sql: str) -> str:
    """``sql`` (portable SQL with ``?`` placeholders) as PostgreSQL runs it through psycopg."""
    insert_or = _INSERT_OR.match(sql)
    if insert_or and insert_or.group(2).upper() == "REPLACE":
        raise UnportableSQL(
            "INSERT OR REPLACE is SQLite-only: write INSERT ... ON CONFLICT (key) DO UPDATE SET ..., "
            "which both backends run"
        )
    segments = _segments(sql)
    if insert_or:
        first_code = next(i for i, (code, _) in enumerate(segments) if code)
        segments[first_code] = (True, _INSERT_OR.sub(r"\1INSERT", segments[first_code][1], count=1))
        segments = _before_returning(segments, " ON CONFLICT DO NOTHING")
    if _DDL.match(sql):
        translated = []
        for is_code, text in segments:
            if is_code:
                text = _AUTOINCREMENT.sub("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", text)
                for pattern, replacement in _TYPES:
                    text = pattern.sub(replacement, text)
            translated.append((is_code, text))
        segments = translated
    parts = []
    for is_code, text in segments:
        text = text.replace("%", "%%")
        parts.append(text.replace("?", "%s") if is_code else text)
    return "".join(parts)
