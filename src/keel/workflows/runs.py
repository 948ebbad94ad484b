"""Run records: what the store keeps about each run, its steps and its approvals."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from keel.store import SQLiteStore
from keel.workflows.errors import RunNotFoundError

__all__ = ["ApprovalRecord", "RunRecord", "RunResult", "RunStatus", "Runs", "StepRecord", "scope_sql"]

RunStatus = Literal["running", "waiting", "succeeded", "failed", "cancelled"]
"""``cancelled``: stopped by ``keel runs cancel`` / ``POST /v1/runs/{id}/cancel`` (see :meth:`Engine.cancel`)."""


@dataclass(frozen=True)
class RunRecord:
    """One run of one workflow version."""

    id: str
    workflow: str
    version: int
    status: RunStatus
    input: Any
    output: Any
    error: str | None
    current_node: str | None
    """The node to execute next (None once finished)."""
    seq: int
    """Number of completed steps."""
    trace_id: str
    created_at: float
    updated_at: float
    finished_at: float | None
    key_id: str | None = None
    """The ``keel serve`` API key that started the run (None: the CLI, the Python API, open mode)."""
    end_user: str | None = None
    """The end user that key acted for (``X-Keel-User``, a client token's user), if any."""


@dataclass(frozen=True)
class StepRecord:
    """One completed node step: the checkpoint a resumed run continues after."""

    run_id: str
    seq: int
    node_id: str
    node_type: str
    port: str | None
    next_node: str | None
    output: Any
    error: str | None
    started_at: float
    finished_at: float


@dataclass(frozen=True)
class ApprovalRecord:
    """A Human approval node waiting for (or given) an answer."""

    id: str
    run_id: str
    seq: int
    node_id: str
    workflow: str
    status: Literal["pending", "approved", "rejected", "expired", "cancelled"]
    """``cancelled``: its run was cancelled while it waited."""
    message: str
    created_at: float
    expires_at: float | None
    decided_at: float | None
    decided_by: str | None
    comment: str | None
    key: str = ""
    """Which wait of the step this is: ``''`` for a Human approval node, ``tool:...`` for a tool call."""


@dataclass(frozen=True)
class RunResult:
    """Where a run stands after a call returns: finished, failed, or waiting for approval."""

    run_id: str
    status: RunStatus
    output: Any = None
    error: str | None = None
    approval: ApprovalRecord | None = None
    """The pending approval, when ``status == "waiting"``."""
    trace_id: str | None = None
    """The run's trace (its spans and model calls), when the engine returned this result."""

    def to_json(self) -> dict[str, Any]:
        """The document ``keel run --json`` prints."""
        doc: dict[str, Any] = {"run_id": self.run_id, "status": self.status, "output": self.output}
        if self.error:
            doc["error"] = self.error
        if self.approval:
            doc["approval_id"] = self.approval.id
        return doc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


MIN_PREFIX = 8
"""Fewest hex digits a shortened run or approval id may have."""
_HEX = re.compile(r"[0-9a-f]+")


def _by_prefix(store: SQLiteStore, table: str, prefix: str) -> list[dict[str, Any]]:
    """At most two rows of ``table`` whose id starts with ``prefix``; none unless ``prefix`` is
    at least :data:`MIN_PREFIX` lowercase hex digits. A range on the id, not ``LIKE``: ``%`` and
    ``_`` in a caller's id must not become wildcards."""
    if len(prefix) < MIN_PREFIX or not _HEX.fullmatch(prefix):
        return []
    rows = store.query(f"SELECT * FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT 2", (prefix, prefix + "g"))
    return [r for r in rows if r["id"].startswith(prefix)]


def scope_sql(*, workflows: Iterable[str] | None = None, key_id: str | None = None,
              end_user: str | None = None, run_column: str = "id") -> tuple[str, list[str]]:
    """SQL conditions (each begins `` AND ``) and their parameters that keep ``workflow_runs``
    rows to the runs a caller may read: of ``workflows`` (None: any; empty: none) and, with
    ``key_id``, started by that key (for ``end_user``, when given). With ``run_column`` other
    than ``id`` (``run_id`` of ``workflow_approvals``), the key condition is a sub-query on
    the runs. Filtering here, before ``LIMIT``, keeps a caller's list from coming back short.
    """
    sql, params = "", []
    if workflows is not None:
        names = sorted(set(workflows))
        sql += f" AND workflow IN ({', '.join('?' * len(names))})" if names else " AND 0"
        params += names
    if key_id:
        owned = " AND key_id = ?" + (" AND end_user = ?" if end_user else "")
        params += [key_id, end_user] if end_user else [key_id]
        sql += owned if run_column == "id" else f" AND {run_column} IN (SELECT id FROM workflow_runs WHERE 1 = 1{owned})"
    return sql, params


class Runs:
    """Read runs, steps and approvals."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def get(self, run_id: str, *, prefix: bool = True) -> RunRecord:
        """The run ``run_id``; with ``prefix``, also the only run whose id starts with it (at
        least :data:`MIN_PREFIX` hex digits). Raises :class:`RunNotFoundError` otherwise."""
        rows = self.store.query("SELECT * FROM workflow_runs WHERE id = ?", (run_id,))
        if not rows:
            rows = _by_prefix(self.store, "workflow_runs", run_id) if prefix else []
            if len(rows) != 1:
                what = "more than one run has an id starting with" if rows else "no run with id"
                raise RunNotFoundError(f"{what} {run_id!r}",
                                       hint=f"give the full id or a unique prefix of at least {MIN_PREFIX} hex digits; "
                                            "list runs with `keel runs list`")
        return _run(rows[0])

    def list(self, *, workflow: str | None = None, status: str | None = None, limit: int = 50,
             key_id: str | None = None, end_user: str | None = None,
             workflows: Iterable[str] | None = None) -> list[RunRecord]:
        """Runs, newest first; ``key_id`` / ``end_user``: only those that key (for that user)
        started; ``workflows``: only runs of these (:func:`scope_sql`), before ``limit``."""
        sql, params = "SELECT * FROM workflow_runs WHERE 1 = 1", []
        if workflow:
            sql += " AND workflow = ?"
            params.append(workflow)
        scope, scope_params = scope_sql(workflows=workflows, key_id=key_id, end_user=end_user)
        sql += scope
        params += scope_params
        if status:
            sql += " AND status = ?"
            params.append(status)
        rows = self.store.query(sql + " ORDER BY created_at DESC LIMIT ?", (*params, limit))
        return [_run(r) for r in rows]

    def steps(self, run_id: str) -> list[StepRecord]:
        rows = self.store.query("SELECT * FROM workflow_steps WHERE run_id = ? ORDER BY seq", (run_id,))
        return [StepRecord(**{**r, "output": _loads(r["output"])}) for r in rows]

    def approvals(self, *, status: str | None = "pending", run_id: str | None = None, key_id: str | None = None,
                  end_user: str | None = None, workflows: Iterable[str] | None = None) -> list[ApprovalRecord]:
        """Approvals, oldest first; ``key_id`` / ``end_user``: only of runs that key (for that
        user) started; ``workflows``: only of these workflows (:func:`scope_sql`)."""
        sql, params = "SELECT * FROM workflow_approvals WHERE 1 = 1", []
        scope, scope_params = scope_sql(workflows=workflows, key_id=key_id, end_user=end_user, run_column="run_id")
        sql += scope
        params += scope_params
        if status:
            sql += " AND status = ?"
            params.append(status)
        if run_id:
            sql += " AND run_id = ?"
            params.append(run_id)
        return [ApprovalRecord(**r) for r in self.store.query(sql + " ORDER BY created_at", tuple(params))]

    def approval(self, approval_id: str, *, prefix: bool = True) -> ApprovalRecord | None:
        """The approval ``approval_id``; with ``prefix``, also the only one whose id starts with
        it (at least :data:`MIN_PREFIX` hex digits). None otherwise."""
        rows = self.store.query("SELECT * FROM workflow_approvals WHERE id = ?", (approval_id,))
        if not rows:
            rows = _by_prefix(self.store, "workflow_approvals", approval_id) if prefix else []
            if len(rows) != 1:
                return None
        return ApprovalRecord(**rows[0])


def _run(r: dict[str, Any]) -> RunRecord:
    return RunRecord(
        id=r["id"], workflow=r["workflow"], version=r["version"], status=r["status"], input=_loads(r["input"]),
        output=_loads(r["output"]), error=r["error"], current_node=r["current_node"], seq=r["seq"],
        trace_id=r["trace_id"], created_at=r["created_at"], updated_at=r["updated_at"],
        finished_at=r["finished_at"], key_id=r.get("key_id"), end_user=r.get("end_user"))
