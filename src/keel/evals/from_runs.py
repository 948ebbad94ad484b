"""Datasets built from stored workflow runs: production traffic becomes test cases.

Each selected run becomes one item and its precomputed sample::

    item   = {"input": <the run's input>, "output": <its output>, "run_id", "workflow",
              "version", "status", "created_at", "error"}
    sample = {"output_text", "output_json", "workflow_run_id", "workflow", "status"}

so an eval with no targets grades the stored outputs and, with trace graders, the
stored traces; and an eval with a workflow target re-runs the same inputs on
another version (``{{item.output}}`` is what the old version answered). The
dataset is versioned like an import: building it again with the same runs
reuses the latest version; new runs make the next one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keel.evals.datasets import DatasetInfo, DatasetRow, Datasets
from keel.evals.errors import DatasetError
from keel.store import SQLiteStore

__all__ = ["RunFilter", "dataset_from_runs", "parse_time", "select_runs"]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, *, now: float | None = None, option: str = "--since") -> float:
    """``7d``/``24h``/``30m`` ago, an ISO date or date-time (local time unless it has an offset),
    or Unix seconds."""
    text = text.strip()
    m = _RELATIVE.match(text)
    if m:
        return (now if now is not None else time.time()) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise DatasetError(f"{option} {text!r} is not a time",
                           hint="write 7d, 24h, 30m, 2026-05-01 or 2026-05-01T09:00") from None


@dataclass(frozen=True)
class RunFilter:
    """Which runs to take; every condition given must hold."""

    workflow: str
    """A workflow name, or ``NAME@VERSION`` for one version."""
    statuses: tuple[str, ...] = ("succeeded",)
    """Run statuses to take (``succeeded``, ``failed``, ``waiting``, ``running``)."""
    since: float | None = None
    """Runs created at or after this Unix time."""
    until: float | None = None
    """Runs created before this Unix time."""
    where: Mapping[str, str] = field(default_factory=dict)
    """Input field (dotted path into a JSON input) -> value, compared as text."""
    tools: tuple[str, ...] = ()
    """Runs whose trace called every one of these tools."""
    limit: int | None = None
    """At most this many runs, the most recent first."""

    @property
    def name(self) -> str:
        return self.workflow.partition("@")[0]

    @property
    def version(self) -> int | None:
        v = self.workflow.partition("@")[2]
        if v and not v.isdigit():
            raise DatasetError(f"invalid workflow version in {self.workflow!r}", hint="write NAME or NAME@VERSION")
        return int(v) if v else None

    def describe(self) -> str:
        parts = [f"runs of {self.workflow}", f"status={','.join(self.statuses)}"]
        if self.since is not None:
            parts.append(f"since={datetime.fromtimestamp(self.since).isoformat(timespec='seconds')}")
        if self.until is not None:
            parts.append(f"until={datetime.fromtimestamp(self.until).isoformat(timespec='seconds')}")
        parts += [f"{k}={v}" for k, v in self.where.items()]
        parts += [f"tool={t}" for t in self.tools]
        if self.limit is not None:
            parts.append(f"limit={self.limit}")
        return " ".join(parts)


def _field(value: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


_MISSING = object()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def select_runs(store: SQLiteStore, f: RunFilter) -> Iterator[Any]:
    """The runs ``f`` selects, oldest first (so item order is stable as runs accumulate)."""
    from keel.workflows import Runs, Versions, WorkflowNotFoundError

    try:
        Versions(store).get(f.name, f.version)
    except WorkflowNotFoundError as e:
        raise DatasetError(e.message, hint=e.hint) from None
    runs = Runs(store)
    picked: list[Any] = []
    for status in f.statuses:
        # Runs.list has no version/time/offset filters: take them all and filter here.
        picked += runs.list(workflow=f.name, status=status, limit=2**62)
    picked.sort(key=lambda r: (r.created_at, r.id))
    out = []
    for r in picked:
        if f.version is not None and r.version != f.version:
            continue
        if f.since is not None and r.created_at < f.since:
            continue
        if f.until is not None and r.created_at >= f.until:
            continue
        if any((v := _field(r.input, k)) is _MISSING or _text(v) != want for k, want in f.where.items()):
            continue
        out.append(r)
    if f.tools:
        from keel.evals.traces import load_trace

        out = [r for r in out if set(f.tools) <= set(load_trace(store, r.id).tools)]
    if f.limit is not None:
        out = out[-f.limit:]
    yield from out


def _row(idx: int, r: Any) -> DatasetRow:
    output = r.output if r.status == "succeeded" else r.error
    if isinstance(output, str):
        text, parsed = output, None
    elif output is None:
        text, parsed = "", None
    else:
        text, parsed = _text(output), output
    item = {"input": r.input, "output": r.output, "run_id": r.id, "workflow": r.workflow, "version": r.version,
            "status": r.status, "created_at": r.created_at, "error": r.error}
    sample = {"output_text": text, "output_json": parsed, "workflow_run_id": r.id,
              "workflow": f"{r.workflow}@{r.version}", "status": r.status}
    return DatasetRow(idx, item, sample, None)


def dataset_from_runs(store: SQLiteStore, name: str, f: RunFilter) -> tuple[DatasetInfo, bool]:
    """Store the runs ``f`` selects as the next version of dataset ``name``.

    Returns the version and whether it was unchanged (the same runs as the latest version).
    No run matching is an error, so a typo in a filter does not make an empty dataset.
    """
    rows = [_row(i, r) for i, r in enumerate(select_runs(store, f))]
    if not rows:
        raise DatasetError(f"no {f.describe()}",
                           hint="loosen the filters (--status, --since, --where), or list runs: `keel runs list`")
    datasets = Datasets(store)
    before = datasets.list()
    info = datasets.import_rows(name, rows, source=f.describe())
    unchanged = any(d.id == info.id for d in before)
    return info, unchanged
