"""How values cross the CEL boundary, both ways (docs/workflows.md, "CEL values").

Into CEL: JSON numbers are doubles in CEL's JSON mapping, so an integer outside int64
(which CEL's ``int`` cannot hold) goes in as a double instead of failing every
expression that touches it.

Out of CEL: what an expression yields is kept in run state and stored as JSON, so
values JSON cannot hold take their protobuf JSON form (the mapping CEL itself uses):

============  ==========================================  =====================
CEL value     becomes                                     example
============  ==========================================  =====================
bytes         base64 string                               ``"YWI="``
timestamp     RFC 3339 string, UTC                        ``"2024-01-01T00:00:00Z"``
duration      seconds string                              ``"90s"``, ``"1.5s"``
type          the type's name                             ``"int"``, ``"list"``
NaN, ±inf     the strings ``"NaN"``, ``"Infinity"``,      ``"NaN"``
              ``"-Infinity"``
============  ==========================================  =====================
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from typing import Any

__all__ = ["from_cel", "has_wide_ints", "json_safe", "to_cel"]

_INT64 = (-(2**63), 2**63 - 1)
_TYPE_NAMES = {"INT": "int", "UINT": "uint", "DOUBLE": "double", "BOOL": "bool", "STRING": "string",
               "BYTES": "bytes", "NULL": "null_type", "TYPE": "type", "DYN": "dyn",
               "TIMESTAMP": "google.protobuf.Timestamp", "DURATION": "google.protobuf.Duration"}


def _wide(value: int) -> bool:
    return type(value) is int and not _INT64[0] <= value <= _INT64[1]


def has_wide_ints(value: Any) -> bool:
    """Whether ``value`` holds an integer outside int64 anywhere."""
    if isinstance(value, dict):
        return any(has_wide_ints(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_wide_ints(v) for v in value)
    return type(value) is int and _wide(value)


def to_cel(value: Any) -> Any:
    """``value`` with every integer outside int64 turned into a double (JSON's number)."""
    if isinstance(value, dict):
        return {k: to_cel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_cel(v) for v in value]
    if type(value) is int and _wide(value):
        return float(value)
    return value


def _float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _duration(value: dt.timedelta) -> str:
    seconds = value.total_seconds()
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _timestamp(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    text = value.isoformat(timespec="microseconds")
    text = text[:-7] if text.endswith(".000000") else text.rstrip("0")
    return text + "Z"


def _type_name(value: Any) -> str:
    text = str(value)
    head = text.split("<", 1)[0]
    if head == "LIST":
        return "list"
    if head == "MAP":
        return "map"
    return _TYPE_NAMES.get(head, text)


def from_cel(value: Any) -> Any:
    """A CEL result as JSON-able Python (see the table in the module docs)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str | int | bool) else k: from_cel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_cel(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        return _timestamp(value)
    if isinstance(value, dt.timedelta):
        return _duration(value)
    return _type_name(value)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and ±inf as strings, so ``json.dumps`` writes valid JSON."""
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
