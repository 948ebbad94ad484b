"""The ``model_calls`` table: one row per attempt at calling a model.

It feeds traces (``trace_id``/``span_id``), cost accounting and the
service-health dashboard (latency, time to first token, status).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

from keel import jsontext
from keel.ids import new_id

__all__ = ["CallStatus", "ModelCallRecord", "ModelCalls", "RowStore"]

CallStatus = Literal["ok", "error", "invalid_output", "cancelled"]


class RowStore(Protocol):
    """The part of a store this repository needs (SQLite today, PostgreSQL later)."""

    def execute(self, sql: str, params: tuple = ()) -> int: ...
    def query(self, sql: str, params: tuple = ()) -> list[dict]: ...


@dataclass(frozen=True)
class ModelCallRecord:
    """One attempt at one model call, as stored."""

    provider: str
    """Provider prefix of the model string, e.g. ``openai``, ``local``, ``scripted``."""
    model: str
    """Model name within the provider, e.g. ``gpt-4.1-mini``."""
    status: CallStatus
    latency_ms: float
    attempt: int = 1
    """1 for the first attempt; retries count up."""
    operation: str = "chat"
    stream: bool = False
    structured: bool = False
    """True when an output schema was requested."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    ttft_ms: float | None = None
    cost_usd: float | None = None
    error_class: str | None = None
    """Class name of the error, e.g. ``RateLimitedError``."""
    error_message: str | None = None
    http_status: int | None = None
    trace_id: str | None = None
    span_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    id: str = field(default_factory=new_id)


_COLUMNS = tuple(ModelCallRecord.__dataclass_fields__)
_INSERT = f"INSERT INTO model_calls ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


class ModelCalls:
    """Insert and read :class:`ModelCallRecord` rows."""

    def __init__(self, store: RowStore) -> None:
        self._store = store

    def record(self, rec: ModelCallRecord) -> None:
        self._store.execute(*self.insert(rec))

    @staticmethod
    def insert(rec: ModelCallRecord) -> tuple[str, tuple]:
        """The SQL and parameters that store ``rec`` (for a caller that batches it in a transaction)."""
        row = {c: getattr(rec, c) for c in _COLUMNS}  # shallow: asdict's deep copy cost a tenth of a run
        row["stream"] = int(rec.stream)
        row["structured"] = int(rec.structured)
        row["tags"] = jsontext.dumps(rec.tags) if rec.tags else None
        return _INSERT, tuple(row[c] for c in _COLUMNS)

    def recent(self, limit: int = 50, *, since: float | None = None) -> list[ModelCallRecord]:
        """Newest first."""
        rows = self._store.query(
            "SELECT * FROM model_calls WHERE started_at >= ? ORDER BY started_at DESC LIMIT ?",
            (since or 0.0, limit),
        )
        return [_from_row(r) for r in rows]

    def for_trace(self, trace_id: str) -> list[ModelCallRecord]:
        rows = self._store.query(
            "SELECT * FROM model_calls WHERE trace_id = ? ORDER BY started_at", (trace_id,)
        )
        return [_from_row(r) for r in rows]


def _from_row(row: dict) -> ModelCallRecord:
    row = dict(row)
    row["stream"] = bool(row["stream"])
    row["structured"] = bool(row["structured"])
    row["tags"] = json.loads(row["tags"]) if row["tags"] else {}
    return ModelCallRecord(**row)
