"""Retrieval evals: IR metrics of a context collection against relevance judgments.

A *gold set* maps each query to the documents (or chunks) that answer it, with a
grade (1 = relevant; higher = more relevant)::

    {"id": "q1", "query": "how do I rotate API keys?", "relevant": {"security.md": 2, "keys.md": 1}}
    {"id": "q2", "query": "reset a password", "relevant": ["accounts.md"]}

Judgments come from a JSONL file like that, a Keel dataset holding the same items
(``keel eval generate-queries`` makes one from your own documents), or a SMART test
collection folder (Cranfield, ADI). Each query is searched in the collection and
the ranking scored with the metrics as ``trec_eval`` defines them (the tests check
every one against ``pytrec_eval``):

==================  =========================================================================
``recall@k``        relevant documents in the top k / all relevant documents (trec ``recall_k``)
``precision@k``     relevant documents in the top k / k (trec ``P_k``)
``mrr@k``, ``mrr``  1 / rank of the first relevant document, 0 if none in the top k
                    (``mrr``: anywhere in the ranking; trec ``recip_rank``)
``ndcg@k``          DCG with linear gains (the grade) and ``log2(rank + 1)`` discount over
                    the ideal DCG of all judged documents, cut at k (trec ``ndcg_cut_k``)
``map@k``, ``map``  mean over relevant documents of the precision at each one's rank, summed
                    over the top k and divided by all relevant (trec ``map_cut_k`` / ``map``)
``hit@k``           1 if any relevant document is in the top k (also called success@k)
==================  =========================================================================

A document is relevant when its grade is at least 1; queries with no relevant
document are skipped (trec_eval's convention). The unit judged is what the
judgment keys name: a chunk's content hash (32 hex digits, as
``generate-queries`` writes; stable across re-ingests and forks), or a source
(the path or record id ingested), in which case a ranking keeps each source once,
at the rank of its best chunk.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from keel.evals.errors import DatasetError, EvalSpecError
from keel.safeload import load_json

__all__ = [
    "DEFAULT_METRICS",
    "GoldQuery",
    "QueryResult",
    "RetrievalReport",
    "evaluate_collection",
    "evaluate_run",
    "load_gold",
    "metric_value",
    "parse_metrics",
]

DEFAULT_METRICS = ("recall@5", "recall@10", "precision@10", "mrr@10", "ndcg@10", "map@10")
METRICS = ("recall", "precision", "mrr", "ndcg", "map", "hit")
_NEED_K = {"recall", "precision", "ndcg", "hit"}
_HASH = re.compile(r"^[0-9a-f]{32}$")

Unit = Literal["auto", "chunk", "source"]


# -- metrics ---------------------------------------------------------------------------


def _relevant(judged: Mapping[str, int]) -> dict[str, int]:
    return {d: g for d, g in judged.items() if g >= 1}


def metric_value(name: str, k: int | None, ranked: Sequence[str], judged: Mapping[str, int]) -> float:
    """One metric for one query: ``ranked`` is best first, without duplicates."""
    rel = _relevant(judged)
    if not rel:
        return 0.0
    top = ranked if k is None else ranked[:k]
    if name == "recall":
        return sum(1 for d in top if d in rel) / len(rel)
    if name == "precision":
        return sum(1 for d in top if d in rel) / (k or len(ranked) or 1)
    if name == "hit":
        return float(any(d in rel for d in top))
    if name == "mrr":
        return next((1.0 / i for i, d in enumerate(top, 1) if d in rel), 0.0)
    if name == "map":
        found, total = 0, 0.0
        for i, d in enumerate(top, 1):
            if d in rel:
                found += 1
                total += found / i
        return total / len(rel)
    if name == "ndcg":
        dcg = sum(rel.get(d, 0) / math.log2(i + 1) for i, d in enumerate(top, 1))
        ideal = sorted(rel.values(), reverse=True)[:k]
        idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, 1))
        return dcg / idcg
    raise EvalSpecError(f"unknown retrieval metric {name!r}", hint=f"use one of {', '.join(METRICS)}")


def parse_metrics(names: Iterable[str]) -> list[tuple[str, str, int | None]]:
    """``["recall@10", "mrr"]`` -> ``[("recall@10", "recall", 10), ("mrr", "mrr", None)]``."""
    out = []
    for raw in names:
        for text in raw.split(","):
            text = text.strip().lower()
            if not text:
                continue
            base, at, k = text.partition("@")
            if base in ("p", "prec"):
                base = "precision"
            if base in ("success",):
                base = "hit"
            if base not in METRICS:
                raise EvalSpecError(f"unknown retrieval metric {text!r}",
                                    hint=f"use {', '.join(m + '@K' for m in METRICS)} (mrr and map also without @K)")
            if at and not (k.isdigit() and int(k) > 0):
                raise EvalSpecError(f"metric {text!r}: K must be a positive whole number", hint="e.g. ndcg@10")
            if not at and base in _NEED_K:
                raise EvalSpecError(f"metric {text!r} needs a cutoff", hint=f"write {base}@10")
            label = f"{base}@{k}" if at else base
            out.append((label, base, int(k) if at else None))
    if not out:
        raise EvalSpecError("no metrics given", hint="e.g. --metric recall@10 --metric ndcg@10")
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class QueryResult:
    """One query's ranking and scores."""

    id: str
    query: str
    ranked: list[str]
    """What was retrieved, best first (chunk hashes or sources: the unit judged)."""
    relevant: dict[str, int]
    scores: dict[str, float]
    latency_ms: float | None = None

    @property
    def first_relevant_rank(self) -> int | None:
        return next((i for i, d in enumerate(self.ranked, 1) if self.relevant.get(d, 0) >= 1), None)


@dataclass
class RetrievalReport:
    """Mean metrics over the judged queries, and each query's result."""

    collection: str
    mode: str
    unit: str
    metrics: dict[str, float]
    queries: list[QueryResult] = field(default_factory=list)
    skipped: int = 0
    """Queries with no relevant document (not scored)."""
    depth: int = 0
    latency_ms_p50: float | None = None

    def to_json(self, *, per_query: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"collection": self.collection, "mode": self.mode, "unit": self.unit,
                               "queries": len(self.queries), "skipped": self.skipped, "depth": self.depth,
                               "metrics": self.metrics, "latency_ms_p50": self.latency_ms_p50}
        if per_query:
            out["per_query"] = [{"id": q.id, "query": q.query, "scores": q.scores,
                                 "first_relevant_rank": q.first_relevant_rank, "ranked": q.ranked[:20]}
                                for q in self.queries]
        return out

    def worst(self, metric: str, n: int = 5) -> list[QueryResult]:
        """The ``n`` queries scoring lowest on ``metric`` (what to look at first)."""
        return sorted(self.queries, key=lambda q: (q.scores.get(metric, 0.0), q.id))[:n]


def evaluate_run(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
                 metrics: Sequence[str] = DEFAULT_METRICS) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean and per-query metrics of rankings ``run`` (query id -> ids, best first) against
    ``qrels`` (query id -> id -> grade). Queries with no relevant id are skipped; a judged
    query missing from ``run`` scores 0."""
    parsed = parse_metrics(metrics)
    per_query: dict[str, dict[str, float]] = {}
    for q, judged in qrels.items():
        if not _relevant(judged):
            continue
        ranked = list(dict.fromkeys(run.get(q, ())))
        per_query[q] = {label: metric_value(base, k, ranked, judged) for label, base, k in parsed}
    means = {label: (round(sum(s[label] for s in per_query.values()) / len(per_query), 4) if per_query else 0.0)
             for label, _, _ in parsed}
    return means, per_query


# -- gold sets -------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldQuery:
    """One judged query."""

    id: str
    query: str
    relevant: dict[str, int]
    """Judged id (chunk hash or source) -> grade; grade < 1 is judged not relevant."""


def _relevance(value: Any, where: str) -> dict[str, int]:
    if isinstance(value, str):
        return {value: 1}
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return {str(v): 1 for v in value}
    if isinstance(value, dict):
        out = {}
        for k, g in value.items():
            if isinstance(g, bool) or not isinstance(g, int | float):
                raise DatasetError(f"{where}: the grade of {k!r} is {g!r}, not a number",
                                   hint='write "relevant": {"doc": 1} (grades: 1 relevant, higher more)')
            out[str(k)] = int(g)
        return out
    raise DatasetError(f"{where}: \"relevant\" must be an id, a list of ids or an object id -> grade",
                       hint='e.g. "relevant": ["guide.md"] or {"guide.md": 2}')


def _gold_from_items(items: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[GoldQuery]:
    seen: set[str] = set()
    for n, (where, item) in enumerate(items):
        query = item.get("query", item.get("question"))
        if not isinstance(query, str) or not query.strip():
            raise DatasetError(f"{where}: no \"query\" text", hint='each line needs {"query": ..., "relevant": ...}')
        if "relevant" not in item:
            raise DatasetError(f"{where}: no \"relevant\" judgments",
                               hint='add "relevant": ["DOC"] (the sources or chunk hashes that answer it)')
        qid = str(item.get("id", n + 1))
        if qid in seen:
            raise DatasetError(f"{where}: query id {qid!r} repeats", hint="give each query its own id")
        seen.add(qid)
        yield GoldQuery(qid, query, _relevance(item["relevant"], where))


def load_gold(source: str | Path, *, store: Any = None) -> list[GoldQuery]:
    """Judged queries from a JSONL file, a SMART collection folder, or a Keel dataset
    (``NAME`` or ``NAME@VERSION``; needs ``store``)."""
    path = Path(source)
    if path.is_dir():
        from keel.context.smart import load_smart

        data = load_smart(path)
        return [GoldQuery(q.id, q.text, dict(data.qrels.get(q.id, {}))) for q in data.queries]
    if path.is_file():
        def lines() -> Iterator[tuple[str, dict[str, Any]]]:
            with path.open(encoding="utf-8-sig") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        value = load_json(line, where=f"{path}:{n}")
                    except ValueError as e:
                        raise DatasetError(f"{path}:{n}: not valid JSON: {e}") from None
                    if not isinstance(value, dict):
                        raise DatasetError(f"{path}:{n}: expected a JSON object")
                    yield f"{path}:{n}", value.get("item", value) if isinstance(value.get("item"), dict) else value

        gold = list(_gold_from_items(lines()))
    else:
        if store is None or any(c in str(source) for c in "/\\") or str(source).endswith((".jsonl", ".json")):
            raise DatasetError(f"judgments {source} not found",
                               hint="give a JSONL file, a SMART collection folder, or a dataset NAME[@VERSION]")
        from keel.evals.datasets import Datasets

        datasets = Datasets(store)
        info = datasets.get(str(source))
        gold = list(_gold_from_items((f"{info.ref} item {r.idx}", r.item) for r in datasets.rows(info.id)))
    if not gold:
        raise DatasetError(f"{source}: no judged queries", hint='one JSON object per line: {"query", "relevant"}')
    return gold


# -- evaluating a collection -----------------------------------------------------------


def _unit_of(gold: Sequence[GoldQuery], unit: Unit) -> Literal["chunk", "source"]:
    if unit != "auto":
        return unit
    keys = [k for g in gold for k in g.relevant]
    return "chunk" if keys and all(_HASH.match(k) for k in keys) else "source"


def rank_ids(hits: Sequence[Any], unit: Literal["chunk", "source"]) -> list[str]:
    """A collection's hits as judged ids, best first, each once."""
    ids = (h.hash if unit == "chunk" else h.citation.source for h in hits)
    return list(dict.fromkeys(ids))


def evaluate_collection(collection: Any, gold: Sequence[GoldQuery], *,
                        metrics: Sequence[str] = DEFAULT_METRICS, mode: str = "hybrid", unit: Unit = "auto",
                        depth: int | None = None, where: Any = None, rerank: str | None = None,
                        progress: Any = None) -> RetrievalReport:
    """Search ``collection`` (a :class:`keel.context.Collection`) for every judged query and
    score the rankings. ``depth`` is how many chunks each search returns (default: enough
    for the largest cutoff, at least 100, so uncut ``mrr``/``map`` see a deep ranking)."""
    parsed = parse_metrics(metrics)
    cutoffs = [k for _, _, k in parsed if k is not None]
    depth = depth or max([100, *cutoffs])
    if depth < max(cutoffs, default=1):
        raise EvalSpecError(f"--depth {depth} is below the largest cutoff @{max(cutoffs)}",
                            hint="raise --depth or lower the cutoffs")
    chosen = _unit_of(gold, unit)
    judged = [g for g in gold if _relevant(g.relevant)]
    # Source-level judgments need several chunks per source: search deeper, then dedupe.
    search_k = depth if chosen == "chunk" else depth * 3
    vectors = None
    if mode in ("dense", "hybrid") and judged:
        vectors = collection.embedder.embed([g.query for g in judged])
    results: list[QueryResult] = []
    latencies: list[float] = []
    for i, g in enumerate(judged):
        started = time.perf_counter()
        hits = collection.search(g.query, mode=mode, k=search_k, where=where, rerank=rerank,
                                 query_vector=None if vectors is None else vectors[i])
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = rank_ids(hits, chosen)[:depth]
        scores = {label: metric_value(base, k, ranked, g.relevant) for label, base, k in parsed}
        results.append(QueryResult(g.id, g.query, ranked, dict(g.relevant), scores, round(latencies[-1], 2)))
        if progress is not None:
            progress(i + 1, len(judged))
    means = {label: (round(sum(r.scores[label] for r in results) / len(results), 4) if results else 0.0)
             for label, _, _ in parsed}
    return RetrievalReport(collection=collection.name, mode=mode + ("+rerank" if rerank else ""), unit=chosen,
                           metrics=means, queries=results, skipped=len(gold) - len(judged), depth=depth,
                           latency_ms_p50=round(statistics.median(latencies), 2) if latencies else None)
