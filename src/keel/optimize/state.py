"""Where an optimization run stands: its row in ``optimize_runs`` and every model call it made.

The optimizer is deterministic given the answers of its model calls (a seeded random
generator picks parents and minibatches), so its state *is* the list of answers: each call is
keyed by what it asked (the candidate's instructions and the item, or the reflection prompt)
and stored the moment it returns. A resumed run replays from the start, finds every answer it
already paid for, and calls a model only for the first question without one: a run killed
with ``kill -9`` repeats at most the one call that was in flight.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from keel.optimize.errors import OptimizeRunNotFound
from keel.store import SQLiteStore

__all__ = ["CallLog", "OptimizeRun", "get_run", "key_of", "list_runs"]


def key_of(*parts: Any) -> str:
    """A stable key for a call: SHA-256 of its parts as JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class OptimizeRun:
    """One ``keel optimize prompt`` run as stored."""

    id: str
    eval_path: str
    eval_spec: dict[str, Any]
    target: str
    options: dict[str, Any]
    """budget, minibatch, seed, reflection model, validation fraction, demos."""
    status: str
    """``running``, ``finished`` or ``failed``."""
    error: str | None
    result: dict[str, Any] | None
    """The report (see :mod:`keel.optimize.report`) once finished."""
    published: str | None
    """What ``keel optimize publish`` made (``workflow@VERSION`` or a file path), if it ran."""
    created_at: float
    updated_at: float
    calls: int
    """Model calls stored so far."""


def _run(row: dict[str, Any], calls: int) -> OptimizeRun:
    return OptimizeRun(id=row["id"], eval_path=row["eval_path"], eval_spec=json.loads(row["eval_spec"]),
                       target=row["target"], options=json.loads(row["options"]), status=row["status"],
                       error=row["error"], result=json.loads(row["result"]) if row["result"] else None,
                       published=row["published"], created_at=row["created_at"], updated_at=row["updated_at"],
                       calls=calls)


def get_run(store: SQLiteStore, run_id: str) -> OptimizeRun:
    """The run with this id or unique id prefix."""
    rows = store.query("SELECT * FROM optimize_runs WHERE id = ? OR id LIKE ? ORDER BY created_at",
                       (run_id, run_id.replace("%", "").replace("_", "") + "%"))
    exact = [r for r in rows if r["id"] == run_id]
    rows = exact or rows
    if len(rows) != 1:
        raise OptimizeRunNotFound(
            f"no optimization run {run_id!r}" if not rows else f"{run_id!r} matches {len(rows)} runs",
            hint="`keel optimize list` shows the runs")
    calls = store.query("SELECT COUNT(*) AS n FROM optimize_calls WHERE run_id = ?", (rows[0]["id"],))[0]["n"]
    return _run(rows[0], calls)


def list_runs(store: SQLiteStore) -> list[OptimizeRun]:
    counts = {r["run_id"]: r["n"] for r in store.query(
        "SELECT run_id, COUNT(*) AS n FROM optimize_calls GROUP BY run_id")}
    return [_run(r, counts.get(r["id"], 0))
            for r in store.query("SELECT * FROM optimize_runs ORDER BY created_at DESC")]


class OutOfBudget(Exception):
    """Internal: the next call would pass the budget (the loop checks before it asks)."""


class CallLog:
    """The memoized model calls of one run, and the budget they spend.

    ``used`` counts calls in the run's deterministic order, answered from the log or not;
    ``made`` counts the calls this process actually sent to a model."""

    def __init__(self, store: SQLiteStore, run_id: str, budget: int) -> None:
        self.store = store
        self.run_id = run_id
        self.budget = budget
        self.used = 0
        self.made = 0
        rows = store.query("SELECT call_key, response FROM optimize_calls WHERE run_id = ?", (run_id,))
        self._answers = {r["call_key"]: json.loads(r["response"]) for r in rows}
        self._seq = len(rows)

    @property
    def remaining(self) -> int:
        return self.budget - self.used

    async def call(self, key: str, kind: str, ask: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """The answer to call ``key``: from the log, or asked now and stored before returning.
        ``ask`` returns a JSON object; ``usage`` in it (input/output tokens) is kept as columns."""
        if self.used >= self.budget:
            raise OutOfBudget
        self.used += 1
        known = self._answers.get(key)
        if known is not None:
            return known
        answer = await ask()
        self.made += 1
        usage = answer.get("usage") or {}
        self._seq += 1
        self.store.execute(
            "INSERT INTO optimize_calls (run_id, seq, call_key, kind, response, input_tokens, output_tokens, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.run_id, self._seq, key, kind, json.dumps(answer, ensure_ascii=False),
             usage.get("input_tokens"), usage.get("output_tokens"), time.time()))
        self._answers[key] = answer
        return answer

    def tokens(self) -> dict[str, int]:
        row = self.store.query(
            "SELECT COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(output_tokens), 0) AS o, COUNT(*) AS n "
            "FROM optimize_calls WHERE run_id = ?", (self.run_id,))[0]
        return {"input_tokens": int(row["i"]), "output_tokens": int(row["o"]), "calls_stored": int(row["n"])}
