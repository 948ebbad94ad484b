"""Retrieval quality on a test collection with relevance judgments.

:func:`run_bench` ingests a SMART-format collection (one chunk per document) into
a collection named after it (``bench-<dataset>``, reused across runs: the second
run embeds nothing), runs every query in each mode, and scores the rankings with
:func:`keel.context.metrics.evaluate`. The modes (every one is reported):

- ``dense``, ``bm25``: each signal alone;
- ``bm25+rm3``: BM25 with RM3 pseudo-relevance feedback;
- ``hybrid``: what a search does by default here (the collection's fusion:
  :data:`~keel.context.fusion.DEFAULT_FUSION` unless ``keel context tune`` stored one);
- ``hybrid-rrf``: reciprocal rank fusion of the same two rankings, for comparison;
- ``hybrid+rerank`` when a reranker model is given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.context.collection import Collection, SearchMode
from keel.context.fusion import Fusion
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
    fusion: str = ""
    """The fusion the ``hybrid`` mode used (the collection's)."""

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "docs": self.docs, "queries": self.queries, "modes": self.modes,
                "fusion": self.fusion, "latency_ms": self.latency_ms}


def ingest_smart(col: Collection, data: SmartCollection, *, progress: bool = False) -> float:
    t = time.perf_counter()
    col.add_records([(d.id, d.title, d.text, {}) for d in data.docs], progress=progress)
    return time.perf_counter() - t


def run_bench(dataset: str | Path, *, modes: Sequence[str] = ("dense", "bm25", "bm25+rm3", "hybrid", "hybrid-rrf"),
              collection: str | None = None, embedder: str | None = None, progress: bool = False,
              rerank: str | None = None, k: int = 100) -> BenchResult:
    """Benchmark each mode (see the module docstring; ``hybrid+rerank`` when ``rerank`` names a model)."""
    import statistics

    data = load_smart(dataset)
    name = collection or f"bench-{data.name}".lower()
    col = Collection.open(name, embedder=embedder)
    try:
        seconds = ingest_smart(col, data, progress=progress)
        own = col.fusion
        result = BenchResult(dataset=data.name, docs=len(data.docs), queries=len(data.queries),
                             ingest_seconds=seconds, fusion=own.label())
        qvecs = col.embedder.embed([q.text for q in data.queries])
        variants: dict[str, tuple[SearchMode, Fusion]] = {
            "dense": ("dense", own), "bm25": ("bm25", own), "bm25+rm3": ("bm25", Fusion(feedback=True)),
            "hybrid": ("hybrid", own), "hybrid-rrf": ("hybrid", Fusion("rrf", 0.5))}
        runs: list[tuple[str, SearchMode, Fusion, str | None]] = [(m, *variants[m], None) for m in modes]
        if rerank:
            runs.append(("hybrid+rerank", "hybrid", own, rerank))
        for label, mode, fusion, rr in runs:
            run: dict[str, list[str]] = {}
            lat = []
            for q, qv in zip(data.queries, qvecs, strict=True):
                t = time.perf_counter()
                hits = col.search(q.text, mode=mode, k=k, query_vector=qv, rerank=rr, fusion=fusion)
                lat.append((time.perf_counter() - t) * 1000)
                run[q.id] = list(dict.fromkeys(h.citation.source for h in hits))
            result.modes[label] = evaluate(run, data.qrels)
            result.latency_ms[label] = round(statistics.median(lat), 2)
        return result
    finally:
        col.close()
