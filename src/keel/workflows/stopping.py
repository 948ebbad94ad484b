"""Ending a run from outside its step loop: a cancel, or the recovery loop giving up.

Both write the run's end to the store directly (status, error, no owner), so they hold in
every process: the engine driving the run finds it gone at its next commit or effectful
step (its compare-and-set on ``owner`` fails) and stops there; no process claims it again.

The recovery loop counts failed resumes per run in ``workflow_resume_failures``: a run whose
resume raises the same error :data:`RESUME_ATTEMPTS` times in a row is marked ``failed`` with
that error, instead of being claimed again every few seconds forever.
"""

from __future__ import annotations

import time

from keel.store import SQLiteStore
from keel.workflows.tracing import stable_span_id

__all__ = ["RESUME_ATTEMPTS", "clear_resume_failures", "end_run", "record_resume_failure"]

RESUME_ATTEMPTS = 3
"""Identical failed resumes of a run after which the recovery loop marks it failed."""


def end_run(store: SQLiteStore, run_id: str, *, status: str, error: str, by: str | None = None) -> bool:
    """Finish an unfinished run as ``status`` (``cancelled`` or ``failed``) with ``error``; close its
    pending approvals (as ``cancelled``) and its trace. False if it had finished already."""
    now = time.time()
    with store.transaction():
        changed = store.execute(
            "UPDATE workflow_runs SET status = ?, error = ?, current_node = NULL, owner = NULL,"
            " lease_until = NULL, finished_at = ?, updated_at = ? WHERE id = ? AND status IN ('running', 'waiting')",
            (status, error, now, now, run_id))
        if changed != 1:
            return False
        store.execute("UPDATE workflow_approvals SET status = 'cancelled', decided_at = ?, decided_by = ?,"
                      " comment = ? WHERE run_id = ? AND status = 'pending'", (now, by, error, run_id))
        store.execute("UPDATE trace_spans SET ended_at = ?, status = 'error', error = ? WHERE span_id = ?"
                      " AND ended_at IS NULL", (now, error, stable_span_id(run_id, "root")))
        store.execute("DELETE FROM workflow_resume_failures WHERE run_id = ?", (run_id,))
    return True


def record_resume_failure(store: SQLiteStore, run_id: str, error: str) -> int:
    """Count a failed resume of ``run_id``; the number of identical failures in a row so far."""
    with store.transaction():
        rows = store.query("SELECT error, count FROM workflow_resume_failures WHERE run_id = ?", (run_id,))
        count = rows[0]["count"] + 1 if rows and rows[0]["error"] == error else 1
        store.execute("INSERT INTO workflow_resume_failures (run_id, error, count, updated_at) VALUES (?, ?, ?, ?)"
                      " ON CONFLICT (run_id) DO UPDATE SET error = excluded.error, count = excluded.count,"
                      " updated_at = excluded.updated_at", (run_id, error, count, time.time()))
    return count


def clear_resume_failures(store: SQLiteStore, run_id: str) -> None:
    """Forget the failed resumes of a run that was resumed without raising."""
    store.execute("DELETE FROM workflow_resume_failures WHERE run_id = ?", (run_id,))
