"""Traces: every run is a tree of spans, stored in the ``trace_spans`` table.

Span kinds and their attributes follow the OpenTelemetry GenAI semantic
conventions where one exists:

==========  ===================  ====================================================
kind        name                 attributes
==========  ===================  ====================================================
workflow    ``workflow NAME``    ``keel.workflow.name``, ``keel.workflow.version``, ``keel.run.id``
node        ``node ID``          ``keel.node.id``, ``keel.node.type``, ``keel.node.port``;
                                 Agent nodes add ``gen_ai.operation.name=invoke_agent``,
                                 ``gen_ai.agent.name``
agent       ``invoke_agent ID``  ``gen_ai.operation.name=invoke_agent``, ``gen_ai.agent.name``,
                                 ``keel.agent.caller``, ``keel.agent.via`` (``tool`` | ``handoff``):
                                 an agent called as a tool (under its ``tool`` span) or handed
                                 to (under the node span); its model and tool spans go under it
model       ``chat MODEL``       ``gen_ai.operation.name=chat``, ``gen_ai.provider.name``,
                                 ``gen_ai.request.model``, ``gen_ai.response.model``,
                                 ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
                                 ``gen_ai.response.finish_reasons``; a ``router:NAME`` model adds
                                 ``keel.router.name``, ``keel.router.choice``, ``keel.router.reason``
tool        ``execute_tool N``   ``gen_ai.operation.name=execute_tool``, ``gen_ai.tool.name``,
                                 ``gen_ai.tool.call.id``, ``keel.tool.idempotency_key``
==========  ===================  ====================================================

Model-call rows (``model_calls``) carry the same ``trace_id`` and the model span's
``span_id``, so latency, tokens and cost join onto the trace.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from keel import jsontext
from keel.ids import random_hex
from keel.secrets import scrub
from keel.store import SQLiteStore

__all__ = ["Span", "SpanKind", "Spans", "new_id", "stable_span_id"]

SpanKind = Literal["workflow", "node", "agent", "model", "tool"]


def new_id(n: int = 16) -> str:
    return random_hex(min(n, 16))


def stable_span_id(*parts: object) -> str:
    """A span id derived from its parts, so a re-executed step reuses its span id."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:16]


@dataclass
class Span:
    """One timed operation in a trace."""

    trace_id: str
    name: str
    kind: SpanKind
    span_id: str = field(default_factory=lambda: new_id(8))
    parent_id: str | None = None
    run_id: str | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    status: Literal["ok", "error", "unset"] = "unset"
    error: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def end(self, *, error: str | None = None) -> Span:
        self.ended_at = time.time()
        self.status = "error" if error else "ok"
        self.error = scrub(error) if error else error  # a span's error is stored and shown: no secrets
        return self

    @property
    def duration_ms(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at) * 1000


_COLS = ("span_id", "trace_id", "parent_id", "run_id", "name", "kind", "started_at", "ended_at", "status",
         "error", "attributes")
INSERT_SQL = (f"INSERT INTO trace_spans ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))}) "
              "ON CONFLICT (span_id) DO UPDATE SET ended_at = excluded.ended_at, status = excluded.status, "
              "error = excluded.error, attributes = excluded.attributes")


def span_row(span: Span) -> tuple:
    return (span.span_id, span.trace_id, span.parent_id, span.run_id, span.name, span.kind, span.started_at,
            span.ended_at, span.status, span.error, jsontext.dumps(span.attributes, default=str))


class Spans:
    """Write and read spans."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def write(self, span: Span) -> None:
        """Insert ``span``, or update it if a span with its id exists (a re-executed step)."""
        self.store.execute(INSERT_SQL, span_row(span))

    def for_trace(self, trace_id: str) -> list[Span]:
        rows = self.store.query("SELECT * FROM trace_spans WHERE trace_id = ? ORDER BY started_at", (trace_id,))
        return [Span(**{**r, "attributes": json.loads(r["attributes"] or "{}")}) for r in rows]
