"""What a run produced: per-item results, summaries per target and grader, comparisons.

Summaries are computed by streaming the stored results, so memory does not grow
with the number of items.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from keel.evals.errors import EvalRunNotFound
from keel.store import SQLiteStore

__all__ = ["Comparison", "GraderSummary", "ItemResult", "RunInfo", "RunSummary", "TargetSummary",
           "compare_runs", "get_run", "iter_results", "list_runs", "summarize"]

BINS = 10


class ItemResult(BaseModel):
    """One item graded for one target."""

    target: str
    idx: int
    status: str
    """``ok`` or ``error`` (the sample or some grader failed)."""
    score: float | None
    """Mean of the graders' scores."""
    passed: bool | None
    """True when every grader with a threshold passed and none errored."""
    sample: dict[str, Any] | None
    grades: list[dict[str, Any]]
    error: str | None
    workflow_run_id: str | None = None
    """The workflow run graded (workflow targets, datasets built from runs): its trace is
    ``keel runs show ID``."""


class GraderSummary(BaseModel):
    name: str
    count: int = 0
    """Items this grader scored."""
    errors: int = 0
    mean: float | None = None
    pass_rate: float | None = None
    """Share of scored items that passed (``None`` for graders without a threshold)."""
    histogram: list[int] = Field(default_factory=lambda: [0] * BINS)
    """Counts of scores in ``BINS`` equal bins over ``[low, high]``."""
    low: float = 0.0
    high: float = 1.0


class TargetSummary(BaseModel):
    target: str
    items: int = 0
    passed: int = 0
    errored: int = 0
    pass_rate: float = 0.0
    """Passed items / all items (errored items count as not passed)."""
    mean_score: float | None = None
    graders: list[GraderSummary] = Field(default_factory=list)


class RunSummary(BaseModel):
    run_id: str
    name: str
    dataset: str
    status: str
    created_at: float
    finished_at: float | None = None
    targets: list[TargetSummary] = Field(default_factory=list)
    skipped_rows: int = 0
    """Rows of the dataset file that could not be read (malformed), so are not items."""
    skipped: list[str] = Field(default_factory=list)
    """The first of them, with their line numbers: ``line 3: not valid JSON: ...``."""

    @property
    def errored(self) -> int:
        return sum(t.errored for t in self.targets)

    @property
    def score(self) -> float:
        """The gate's number: the lowest pass rate among the targets."""
        return min((t.pass_rate for t in self.targets), default=0.0)


@dataclass(frozen=True)
class RunInfo:
    id: str
    name: str
    dataset_id: str
    spec: dict[str, Any]
    status: str
    created_at: float
    finished_at: float | None
    summary: dict[str, Any] | None


def _run_info(row: dict[str, Any]) -> RunInfo:
    return RunInfo(row["id"], row["name"], row["dataset_id"], json.loads(row["spec"]), row["status"],
                   row["created_at"], row["finished_at"], json.loads(row["summary"]) if row["summary"] else None)


def get_run(store: SQLiteStore, run_id: str) -> RunInfo:
    """A run by id or unique id prefix."""
    rows = store.query("SELECT * FROM eval_runs WHERE id LIKE ? ORDER BY created_at DESC LIMIT 2",
                       (run_id.replace("%", "") + "%",))
    if len(rows) != 1:
        raise EvalRunNotFound(
            f"no eval run {run_id!r}" if not rows else f"eval run id prefix {run_id!r} is ambiguous",
            hint="list runs with `keel eval list`",
        )
    return _run_info(rows[0])


def list_runs(store: SQLiteStore, *, limit: int = 20) -> list[RunInfo]:
    return [_run_info(r) for r in store.query("SELECT * FROM eval_runs ORDER BY created_at DESC LIMIT ?", (limit,))]


def iter_results(store: SQLiteStore, run_id: str, *, target: str | None = None, page: int = 1000) -> Iterator[ItemResult]:
    """Stream a run's results, ordered by target then item."""
    last: tuple[str, int] = ("", -1)
    while True:
        sql = ("SELECT * FROM eval_results WHERE run_id = ? AND (target > ? OR (target = ? AND idx > ?))"
               + (" AND target = ?" if target is not None else "") + " ORDER BY target, idx LIMIT ?")
        params: tuple[Any, ...] = (run_id, last[0], last[0], last[1])
        params += ((target,) if target is not None else ()) + (page,)
        rows = store.query(sql, params)
        if not rows:
            return
        for r in rows:
            yield ItemResult(
                target=r["target"], idx=int(r["idx"]), status=r["status"], score=r["score"],
                passed=None if r["passed"] is None else bool(r["passed"]),
                sample=json.loads(r["sample"]) if r["sample"] else None,
                grades=json.loads(r["grades"]), error=r["error"], workflow_run_id=r.get("workflow_run_id"),
            )
        last = (rows[-1]["target"], int(rows[-1]["idx"]))


class _Acc:
    def __init__(self, name: str, low: float, high: float) -> None:
        self.s = GraderSummary(name=name, low=low, high=high)
        self.total = 0.0
        self.with_threshold = 0
        self.passes = 0

    def add(self, grade: dict[str, Any]) -> None:
        if grade.get("error"):
            self.s.errors += 1
            return
        score = grade.get("score")
        if score is None:
            return
        self.s.count += 1
        self.total += score
        span = self.s.high - self.s.low
        b = int((score - self.s.low) / span * BINS) if span > 0 else 0
        self.s.histogram[min(BINS - 1, max(0, b))] += 1
        if grade.get("passed") is not None:
            self.with_threshold += 1
            self.passes += bool(grade["passed"])

    def done(self) -> GraderSummary:
        self.s.mean = self.total / self.s.count if self.s.count else None
        self.s.pass_rate = self.passes / self.with_threshold if self.with_threshold else None
        return self.s


def summarize(store: SQLiteStore, run_id: str) -> RunSummary:
    """Aggregate a run's stored results (streaming)."""
    run = get_run(store, run_id)
    ranges = {g["name"]: tuple(g.get("range") or (0.0, 1.0)) for g in run.spec.get("graders", [])}
    for g in run.spec.get("graders", []):
        if g.get("type") == "text_similarity" and g.get("evaluation_metric") == "cosine":
            ranges[g["name"]] = (-1.0, 1.0)
    from keel.evals.datasets import Datasets

    try:
        dataset = Datasets(store).get(run.dataset_id).ref
    except Exception:
        dataset = run.dataset_id
    summary = RunSummary(run_id=run.id, name=run.name, dataset=dataset, status=run.status,
                         created_at=run.created_at, finished_at=run.finished_at,
                         skipped_rows=int(run.spec.get("_skipped_rows", 0)),
                         skipped=list(run.spec.get("_skipped", [])))
    order = [t for t in run.spec.get("_targets", [])]
    current: TargetSummary | None = None
    accs: dict[str, _Acc] = {}
    score_total = 0.0
    scored = 0

    def close() -> None:
        nonlocal score_total, scored
        if current is None:
            return
        current.pass_rate = current.passed / current.items if current.items else 0.0
        current.mean_score = score_total / scored if scored else None
        current.graders = [a.done() for a in accs.values()]
        summary.targets.append(current)

    for r in iter_results(store, run.id):
        if current is None or r.target != current.target:
            close()
            current = TargetSummary(target=r.target)
            accs = {name: _Acc(name, *ranges.get(name, (0.0, 1.0))) for name in ranges}
            score_total, scored = 0.0, 0
        current.items += 1
        current.passed += bool(r.passed)
        current.errored += r.status == "error"
        if r.score is not None:
            score_total += r.score
            scored += 1
        for g in r.grades:
            acc = accs.get(g["name"])
            if acc is None:
                acc = accs[g["name"]] = _Acc(g["name"], 0.0, 1.0)
            acc.add(g)
    close()
    if order:
        summary.targets.sort(key=lambda t: order.index(t.target) if t.target in order else len(order))
    return summary


class Regression(BaseModel):
    target: str
    idx: int
    before: float | None
    after: float | None
    failed_graders: list[str]
    """Graders that passed before and do not now."""


class TargetComparison(BaseModel):
    target_a: str
    target_b: str
    pass_rate_a: float
    pass_rate_b: float
    delta: float
    """``pass_rate_b - pass_rate_a``: negative is a regression."""
    graders: dict[str, tuple[float | None, float | None]]
    """Mean score per grader, before and after."""
    regressions: int = 0
    improvements: int = 0
    regressed_items: list[Regression] = Field(default_factory=list)
    """The first regressed items (up to ``max_items``)."""


class Comparison(BaseModel):
    run_a: str
    run_b: str
    targets: list[TargetComparison]

    @property
    def worst_delta(self) -> float:
        return min((t.delta for t in self.targets), default=0.0)


def compare_runs(store: SQLiteStore, run_a: str, run_b: str, *, max_items: int = 200) -> Comparison:
    """Compare run B against baseline A, target by target and item by item."""
    a, b = summarize(store, run_a), summarize(store, run_b)
    pairs: list[tuple[TargetSummary, TargetSummary]] = []
    names_b = {t.target: t for t in b.targets}
    for ta in a.targets:
        if ta.target in names_b:
            pairs.append((ta, names_b[ta.target]))
    if not pairs and len(a.targets) == 1 and len(b.targets) == 1:
        pairs = [(a.targets[0], b.targets[0])]
    out = []
    for ta, tb in pairs:
        cmp = TargetComparison(
            target_a=ta.target, target_b=tb.target, pass_rate_a=ta.pass_rate, pass_rate_b=tb.pass_rate,
            delta=tb.pass_rate - ta.pass_rate,
            graders={g.name: (g.mean, next((h.mean for h in tb.graders if h.name == g.name), None)) for g in ta.graders},
        )
        it_b = iter_results(store, b.run_id, target=tb.target)
        rb = next(it_b, None)
        for ra in iter_results(store, a.run_id, target=ta.target):
            while rb is not None and rb.idx < ra.idx:
                rb = next(it_b, None)
            if rb is None or rb.idx != ra.idx:
                continue
            if ra.passed and not rb.passed:
                cmp.regressions += 1
                if len(cmp.regressed_items) < max_items:
                    before = {g["name"]: g.get("passed") for g in ra.grades}
                    failed = [g["name"] for g in rb.grades if before.get(g["name"]) and not g.get("passed")]
                    cmp.regressed_items.append(Regression(target=tb.target, idx=ra.idx, before=ra.score,
                                                          after=rb.score, failed_graders=failed))
            elif rb.passed and not ra.passed:
                cmp.improvements += 1
        out.append(cmp)
    return Comparison(run_a=a.run_id, run_b=b.run_id, targets=out)
