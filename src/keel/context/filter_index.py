"""Per-field filter indexes: a metadata filter answered as a row bitmap in NumPy.

A filtered search used to ask SQL for the ids passing the filter on every query
(``json_extract`` over every chunk: 20-30 ms at 100k chunks) and then map ids to
rows one by one in Python. Here each field a filter names is read once per
collection generation into a column aligned with the index rows (numbers as
float64 with NaN for missing, strings as integer codes into a sorted vocabulary),
and a filter becomes NumPy comparisons over those columns: a boolean row mask
(the "bitmap") that the dense and BM25 searches take as their ``allowed`` rows.

The result must be exactly SQL's (:func:`keel.context.filters.compile_filter`),
so only what compares the same in both is answered here: a column whose values
are all numbers or all strings, compared with a value of the same kind, and the
list fields (``symbol``, ``heading``) not at all. Anything else returns ``None``
and the caller asks SQL, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keel.context.filters import _LIST_FIELDS, Filter

__all__ = ["FieldColumn", "FilterIndex"]

_CMP = {"$eq": np.equal, "$ne": np.not_equal, "$gt": np.greater, "$gte": np.greater_equal,
        "$lt": np.less, "$lte": np.less_equal}


class FieldColumn:
    """One field's values, row-aligned: ``kind`` is ``"num"``, ``"str"``, ``"null"`` or ``"mixed"``."""

    def __init__(self, values: Sequence[Any]) -> None:
        n = len(values)
        self.present = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        kinds = {("str" if isinstance(v, str) else "num" if isinstance(v, int | float) else "other")
                 for v in values if v is not None}
        self.kind = "null" if not kinds else kinds.pop() if len(kinds) == 1 else "mixed"
        if self.kind == "num":
            vals = np.array([v if v is not None else np.nan for v in values], dtype=np.float64)
            # integers beyond float64's exact range would compare differently from SQLite's
            if np.nanmax(np.abs(vals)) > 2**53:
                self.kind = "mixed"
            self.values = vals
        elif self.kind == "str":
            self.vocab, codes = np.unique(np.array([v if v is not None else "" for v in values], dtype=object),
                                          return_inverse=True)
            self.codes = codes.astype(np.int32)
            self.code_of = {s: i for i, s in enumerate(self.vocab.tolist())}
        elif self.kind == "other":
            self.kind = "mixed"

    def compare(self, op: str, value: Any, *, string_order: bool = True) -> np.ndarray | None:
        """Rows where ``field op value`` holds as SQLite would answer it, or ``None`` if unsure.

        ``string_order`` False: ``<``, ``>``... on strings are left to SQL (PostgreSQL orders
        text by the database's collation, not by code point)."""
        if isinstance(value, bool):
            value = int(value)
        if value is None:  # compile_filter: $ne None is IS NOT NULL, any other operator IS NULL
            return self.present.copy() if op == "$ne" else ~self.present
        is_num = isinstance(value, int | float)
        if self.kind == "null":
            return np.zeros(self.present.size, dtype=bool)  # NULL compared with anything is not true
        if self.kind == "num" and is_num:
            with np.errstate(invalid="ignore"):
                return _CMP[op](self.values, float(value)) & self.present
        if self.kind == "str" and isinstance(value, str):
            if op in ("$eq", "$ne"):
                code = self.code_of.get(value)
                eq = self.codes == code if code is not None else np.zeros(self.codes.size, dtype=bool)
                return (eq if op == "$eq" else ~eq) & self.present
            if not string_order:
                return None
            # Python compares str by code point, which is SQLite's BINARY order of UTF-8 bytes
            ok = np.fromiter((bool(_CMP[op](s, value)) for s in self.vocab.tolist()), dtype=bool,
                             count=self.vocab.size)
            return ok[self.codes] & self.present
        return None

    def member(self, values: list[Any]) -> np.ndarray | None:
        """Rows whose value is one of ``values`` (``$in``), or ``None`` if unsure."""
        out = np.zeros(self.present.size, dtype=bool)
        for v in values:
            if v is None:  # "x IN (NULL)" is never true
                continue
            m = self.compare("$eq", v)
            if m is None:
                return None
            out |= m
        return out


class FilterIndex:
    """Filter masks over the rows of one loaded index generation.

    ``read_column(field)`` returns the field's value for every row (``None`` where
    missing) or ``None`` when the backend cannot read it; columns are read on the
    first filter that names the field and kept for this generation. ``string_order``
    False leaves ordering comparisons of strings to SQL (PostgreSQL's collation).
    """

    def __init__(self, n: int, read_column: Callable[[str], list[Any] | None], *, string_order: bool = True) -> None:
        self.n = n
        self._read = read_column
        self.string_order = string_order
        self._columns: dict[str, FieldColumn | None] = {}

    def column(self, field: str) -> FieldColumn | None:
        if field not in self._columns:
            values = self._read(field)
            self._columns[field] = FieldColumn(values) if values is not None else None
        return self._columns[field]

    def mask(self, flt: Filter) -> np.ndarray | None:
        """The rows passing ``flt``, or ``None`` when SQL must answer it (see the module docstring)."""
        if not isinstance(flt, dict) or not flt:
            return None  # compile_filter reports the error
        out = np.ones(self.n, dtype=bool)
        for key, value in flt.items():
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    return None
                subs = [self.mask(v) for v in value]
                if any(s is None for s in subs):
                    return None
                combined = subs[0].copy()
                for s in subs[1:]:
                    if key == "$and":
                        combined &= s
                    else:
                        combined |= s
                out &= combined
                continue
            if key.startswith("$") or key in _LIST_FIELDS:
                return None
            m = self._field(key, value)
            if m is None:
                return None
            out &= m
        return out

    def _field(self, field: str, value: Any) -> np.ndarray | None:
        conds = value if isinstance(value, dict) else {"$eq": value}
        if not conds:
            return None
        col = self.column(field)
        if col is None or col.kind == "mixed":
            return None
        out = np.ones(self.n, dtype=bool)
        for op, v in conds.items():
            if op in ("$in", "$nin"):
                if not isinstance(v, list) or not v or any(not _is_scalar(x) or x is None for x in v):
                    return None  # NULL in the list: SQL's three-valued IN answers; let SQL do it
                m = col.member(v)
                if m is None:
                    return None
                # NOT (x IN (...)) is NULL, so false, where x is NULL
                m = m if op == "$in" else ~m & col.present
            elif op in _CMP:
                if not _is_scalar(v):
                    return None
                m = col.compare(op, v, string_order=self.string_order)
                if m is None:
                    return None
            else:
                return None
            out &= m
        return out


def _is_scalar(v: Any) -> bool:
    """A value the bitmaps answer exactly as SQL would: not an integer a float cannot hold."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53:
        return False
    return v is None or isinstance(v, bool | int | float | str)

