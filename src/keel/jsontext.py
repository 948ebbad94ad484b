"""JSON text for stored rows (run context, step outputs, span attributes), through orjson.

``dumps`` is ``json.dumps`` for what Keel stores, about five times faster: a served
request writes a dozen such documents, and they were 7 % of its CPU
(``docs/decisions/0010-group-commit.md``). The text is compact UTF-8 JSON; anything
orjson refuses (an int beyond 64 bits, a key type it does not take) goes through
``json.dumps``, so what could be stored before still can. One difference: a NaN or an
infinity is stored as ``null``, as standard JSON (and PostgreSQL) require.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps"]

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(obj: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """``obj`` as JSON text."""
    try:
        return orjson.dumps(obj, default=default, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(obj, default=default)
