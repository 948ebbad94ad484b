"""Retrieval quality on a test collection with relevance judgments.

:func:`run_bench` ingests a SMART-format collection (one chunk per document) into
a collection named after it (``bench-<dataset>``, reused across runs: the second
run embeds nothing), runs every query in each mode, and scores the rankings with
:func:`keel.context.metrics.evaluate`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.context.collection import Collection, SearchMode
from keel.context.metrics import evaluate
from keel.context.smart import SmartCollection, load_smart

__all__ = ["BenchResult", "run_bench"]


@dataclass
class BenchResult:
    """Scores per mode, shaped like ``keel context bench --json``."""

    dataset: str
    docs: int
    queries: int
    modes: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    """Median query latency per mode (query embedding included)."""
    ingest_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "docs": self.docs, "queries": self.queries, "modes": self.modes}


def ingest_smart(col: Collection, data: SmartCollection, *, progress: bool = False) -> float:
    t = time.perf_counter()
    col.add_records([(d.id, d.title, d.text, {}) for d in data.docs], progress=progress)
    return time.perf_counter() - t


def run_bench(dataset: str | Path, *, modes: Sequence[SearchMode] = ("dense", "bm25", "hybrid"),
              collection: str | None = None, embedder: str | None = None, progress: bool = False,
              rerank: str | None = None, k: int = 100) -> BenchResult:
    """Benchmark each mode (and ``hybrid+rerank`` when ``rerank`` names a model)."""
    import statistics

    data = load_smart(dataset)
    name = collection or f"bench-{data.name}".lower()
    col = Collection.open(name, embedder=embedder)
    try:
        seconds = ingest_smart(col, data, progress=progress)
        result = BenchResult(dataset=data.name, docs=len(data.docs), queries=len(data.queries),
                             ingest_seconds=seconds)
        qvecs = col.embedder.embed([q.text for q in data.queries])
        runs: list[tuple[str, SearchMode, str | None]] = [(m, m, None) for m in modes]
        if rerank:
            runs.append(("hybrid+rerank", "hybrid", rerank))
        for label, mode, rr in runs:
            run: dict[str, list[str]] = {}
            lat = []
            for q, qv in zip(data.queries, qvecs, strict=True):
                t = time.perf_counter()
                hits = col.search(q.text, mode=mode, k=k, query_vector=qv, rerank=rr)
                lat.append((time.perf_counter() - t) * 1000)
                run[q.id] = list(dict.fromkeys(h.citation.source for h in hits))
            result.modes[label] = evaluate(run, data.qrels)
            result.latency_ms[label] = round(statistics.median(lat), 2)
        return result
    finally:
        col.close()
