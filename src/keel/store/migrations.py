"""Versioned schema migrations, applied in order, each exactly once.

Rules, so that PostgreSQL can back the same schema (see docs/store.md):
- append new migrations at the end; never edit or reorder a released one;
- portable SQL only: TEXT, BIGINT, DOUBLE PRECISION, BOOLEAN-as-INTEGER; ids are
  TEXT (UUIDs or ULIDs made by Keel), never autoincrement; times are epoch seconds
  as DOUBLE PRECISION; JSON is TEXT.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration"]


@dataclass(frozen=True)
class Migration:
    name: str
    """Unique, stable name; recorded in ``keel_migrations`` once applied."""
    statements: tuple[str, ...]


MIGRATIONS: list[Migration] = [
    Migration(
        "0001_model_calls",
        (
            """
            CREATE TABLE model_calls (
                id TEXT PRIMARY KEY,
                started_at DOUBLE PRECISION NOT NULL,
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                operation TEXT NOT NULL,
                status TEXT NOT NULL,
                error_class TEXT,
                error_message TEXT,
                http_status BIGINT,
                attempt BIGINT NOT NULL,
                stream INTEGER NOT NULL,
                structured INTEGER NOT NULL,
                input_tokens BIGINT,
                output_tokens BIGINT,
                cached_tokens BIGINT,
                reasoning_tokens BIGINT,
                latency_ms DOUBLE PRECISION NOT NULL,
                ttft_ms DOUBLE PRECISION,
                cost_usd DOUBLE PRECISION,
                trace_id TEXT,
                span_id TEXT,
                tags TEXT
            )
            """,
            "CREATE INDEX model_calls_started_at ON model_calls (started_at)",
            "CREATE INDEX model_calls_model ON model_calls (provider, model, started_at)",
            "CREATE INDEX model_calls_trace ON model_calls (trace_id)",
        ),
    ),
]
