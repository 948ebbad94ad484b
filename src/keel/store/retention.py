"""Retention: delete old runs (with their steps, memos, approvals, spans, events, model
calls and the calls' stored messages), request logs and model calls, on SQLite and PostgreSQL alike.

``keel store prune --older-than 30d`` runs :func:`prune` once; ``retention = "30d"`` in
keel.toml (or ``KEEL_RETENTION``) makes ``keel serve`` run it periodically
(:class:`RetentionThread`, every ``KEEL_PRUNE_INTERVAL`` seconds, an hour by default).

What is old:

- a run that *finished* (succeeded, failed or cancelled) before the cutoff, and has no
  pending approval. Runs still in flight (``running``) or waiting (``waiting``, an
  approval days later) are never touched, however old;
- a request log row or a model call that started before the cutoff, a span that started
  before it, an event written before it, unless it belongs to a run that is kept.

Run-linked rows go in batches of :data:`BATCH` runs, one transaction each (children
first, the run last): a crash mid-prune leaves whole runs, and a server answering requests
never waits long for the write lock. ``dry_run`` counts with the same conditions and
deletes nothing.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from keel.errors import UserError

__all__ = ["BATCH", "PruneReport", "RetentionThread", "parse_age", "prune"]

BATCH = 500
_FINISHED = "('succeeded', 'failed', 'cancelled')"
_OLD_RUN = (f"status IN {_FINISHED} AND COALESCE(finished_at, updated_at) < ?"
            " AND NOT EXISTS (SELECT 1 FROM workflow_approvals a WHERE a.run_id = workflow_runs.id"
            " AND a.status = 'pending')")
_RUN_CHILDREN = ("workflow_steps", "workflow_memos", "workflow_approvals", "run_events", "run_queue",
                 "workflow_resume_failures", "model_call_messages")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.I)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str, *, where: str = "--older-than") -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``2w`` or a bare number of days."""
    m = _AGE.match(str(text))
    if not m:
        raise UserError(f"{where}: cannot read {text!r} as an age",
                        hint="write a number and a unit: 30d (days), 12h, 90m, 2w")
    seconds = float(m.group(1)) * _UNITS[(m.group(2) or "d").lower()]
    if seconds <= 0:
        raise UserError(f"{where}: the age must be more than zero, got {text!r}", hint="e.g. 30d")
    return seconds


@dataclass
class PruneReport:
    """What :func:`prune` deleted (or, with ``dry_run``, would delete), per table."""

    cutoff: float
    """Rows older than this (Unix time) were eligible."""
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "dry_run": self.dry_run, "counts": dict(self.counts), "total": self.total}


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _count(store: Any, sql: str, params: Sequence[Any]) -> int:
    row = store.query(sql, params)[0]
    return int(next(iter(row.values())))


def _dry_run(store: Any, cutoff: float) -> dict[str, int]:
    old = f"SELECT id FROM workflow_runs WHERE {_OLD_RUN}"
    old_traces = f"SELECT trace_id FROM workflow_runs WHERE {_OLD_RUN}"
    kept = f"SELECT id FROM workflow_runs WHERE NOT ({_OLD_RUN})"
    kept_traces = f"SELECT trace_id FROM workflow_runs WHERE NOT ({_OLD_RUN})"
    c = cutoff
    counts = {"workflow_runs": _count(store, f"SELECT COUNT(*) AS n FROM workflow_runs WHERE {_OLD_RUN}", [c])}
    for table in _RUN_CHILDREN:
        if table == "run_events":
            continue
        counts[table] = _count(store, f"SELECT COUNT(*) AS n FROM {table} WHERE run_id IN ({old})", [c])
    counts["run_events"] = _count(
        store, f"SELECT COUNT(*) AS n FROM run_events WHERE run_id IN ({old})"
               f" OR (created_at < ? AND run_id NOT IN ({kept}))", [c, c, c])
    counts["trace_spans"] = _count(
        store, f"SELECT COUNT(*) AS n FROM trace_spans WHERE run_id IN ({old}) OR trace_id IN ({old_traces})"
               f" OR (started_at < ? AND trace_id NOT IN ({kept_traces})"
               f" AND (run_id IS NULL OR run_id NOT IN ({kept})))", [c, c, c, c, c])
    counts["model_calls"] = _count(
        store, f"SELECT COUNT(*) AS n FROM model_calls WHERE trace_id IN ({old_traces})"
               f" OR (started_at < ? AND (trace_id IS NULL OR trace_id NOT IN ({kept_traces})))", [c, c, c])
    counts["serve_requests"] = _count(store, "SELECT COUNT(*) AS n FROM serve_requests WHERE started_at < ?", [c])
    return counts


def _delete_batched(store: Any, table: str, key: str, cond: str, params: Sequence[Any]) -> int:
    """Delete rows of ``table`` matching ``cond``, :data:`BATCH` * 10 per transaction."""
    total = 0
    while True:
        with store.transaction():
            n = store.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {cond}"
                              f" LIMIT {BATCH * 10})", params)
        total += max(n, 0)
        if n < BATCH * 10:
            return total


def prune(store: Any, *, older_than: float, dry_run: bool = False, now: float | None = None) -> PruneReport:
    """Delete what is older than ``older_than`` seconds (see the module docstring)."""
    cutoff = (time.time() if now is None else now) - older_than
    report = PruneReport(cutoff=cutoff, dry_run=dry_run)
    if dry_run:
        report.counts = _dry_run(store, cutoff)
        return report
    counts = dict.fromkeys(["workflow_runs", *_RUN_CHILDREN, "trace_spans", "model_calls", "serve_requests"], 0)
    while True:
        batch = store.query(f"SELECT id, trace_id FROM workflow_runs WHERE {_OLD_RUN} ORDER BY id LIMIT {BATCH}",
                            [cutoff])
        if not batch:
            break
        ids = [r["id"] for r in batch]
        traces = [r["trace_id"] for r in batch]
        with store.transaction():
            for table in _RUN_CHILDREN:
                counts[table] += store.execute(f"DELETE FROM {table} WHERE run_id IN ({_marks(len(ids))})", ids)
            counts["trace_spans"] += store.execute(
                f"DELETE FROM trace_spans WHERE run_id IN ({_marks(len(ids))})"
                f" OR trace_id IN ({_marks(len(traces))})", [*ids, *traces])
            counts["model_calls"] += store.execute(
                f"DELETE FROM model_calls WHERE trace_id IN ({_marks(len(traces))})", traces)
            # re-checked inside the transaction: a run that changed since the SELECT stays
            counts["workflow_runs"] += store.execute(
                f"DELETE FROM workflow_runs WHERE id IN ({_marks(len(ids))}) AND {_OLD_RUN}", [*ids, cutoff])
    counts["serve_requests"] += _delete_batched(store, "serve_requests", "id", "started_at < ?", [cutoff])
    counts["model_calls"] += _delete_batched(
        store, "model_calls", "id",
        "started_at < ? AND (trace_id IS NULL OR trace_id NOT IN (SELECT trace_id FROM workflow_runs))", [cutoff])
    counts["trace_spans"] += _delete_batched(
        store, "trace_spans", "span_id",
        "started_at < ? AND trace_id NOT IN (SELECT trace_id FROM workflow_runs)"
        " AND (run_id IS NULL OR run_id NOT IN (SELECT id FROM workflow_runs))", [cutoff])
    with store.transaction():
        counts["run_events"] += store.execute(
            "DELETE FROM run_events WHERE created_at < ? AND run_id NOT IN (SELECT id FROM workflow_runs)", [cutoff])
    report.counts = counts
    return report


class RetentionThread:
    """Prunes ``store`` every ``interval`` seconds on a daemon thread (``keel serve``)."""

    def __init__(self, store: Any, *, older_than: float, interval: float = 3600.0) -> None:
        self.store = store
        self.older_than = older_than
        self.interval = interval
        self.runs = 0
        """How many prunes finished (tests wait on it)."""
        self.last: PruneReport | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="keel-retention", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.last = prune(self.store, older_than=self.older_than)
                self.last_error = None
            except Exception as e:  # a busy or unreachable store: the next round tries again
                from keel.secrets import scrub

                self.last_error = scrub(f"{type(e).__name__}: {e}")
            self.runs += 1
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
