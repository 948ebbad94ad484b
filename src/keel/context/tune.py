"""``keel context tune``: pick a collection's fusion on the user's own gold set.

Every candidate :class:`~keel.context.fusion.Fusion` (RRF and convex combination, at
three dense shares, with and without RM3 feedback on the BM25 half) runs every judged
query of the gold set; the one with the best mean nDCG@10 is stored with the
collection (its ``fusion`` setting), and hybrid search uses it from then on.

Two guards against tuning on noise (decision 0025):

- a gold set with fewer than :data:`MIN_QUERIES` judged queries is refused with a
  clear message, and the previous setting is kept;
- a candidate replaces the current default only when it beats it by at least
  :data:`MIN_GAIN` nDCG@10; otherwise the default is kept (and said so).

Gold sets are what :func:`keel.evals.retrieval.load_gold` reads: a JSONL file, a
SMART collection folder, or a Keel dataset; ``keel eval generate-queries`` writes one
from the collection's own chunks (generative benchmarking).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from keel.context.fusion import DEFAULT_FUSION, Fusion
from keel.errors import UserError

__all__ = ["CANDIDATES", "MIN_GAIN", "MIN_QUERIES", "TuneResult", "tune_fusion"]

MIN_QUERIES = 20
"""Fewer judged queries than this cannot tell the candidates apart (one query moves the mean by 5%)."""
MIN_GAIN = 0.005
"""nDCG@10 a candidate must add over the default to replace it."""

CANDIDATES: tuple[Fusion, ...] = (
    *(Fusion(method, w, fb) for method in ("rrf", "convex") for w in (0.3, 0.5, 0.7) for fb in (False, True)),
    Fusion("convex", 0.5, False, dense_feedback=3), Fusion("convex", 0.5, True, dense_feedback=3),
    Fusion("convex", 0.5, False, neighbours=3),
)
"""RRF and convex at three dense shares, with and without RM3; the even convex with dense
feedback from the top 3 (decision 0034: it helped every collection measured, by 0.002-0.009);
and the even convex smoothed over each row's 3 nearest candidates (decision 0044: Cranfield
+0.025, the Agents SDK docs -0.025, so a collection's own gold set decides)."""


@dataclass
class TuneResult:
    """What ``keel context tune`` measured and decided."""

    collection: str
    queries: int
    """Judged queries used."""
    previous: Fusion
    chosen: Fusion
    scores: list[tuple[Fusion, float]] = field(default_factory=list)
    """Mean nDCG@10 per candidate, best first."""
    stored: bool = False

    @property
    def default_score(self) -> float:
        return next(s for f, s in self.scores if _same(f, DEFAULT_FUSION))

    def to_json(self) -> dict[str, Any]:
        return {"collection": self.collection, "queries": self.queries, "stored": self.stored,
                "previous": self.previous.label(), "chosen": self.chosen.label(),
                "scores": [{"fusion": f.label(), "method": f.method, "dense_weight": f.dense_weight,
                            "feedback": f.feedback, "dense_feedback": f.dense_feedback,
                            "neighbours": f.neighbours, "ndcg@10": s}
                           for f, s in self.scores]}


def _same(a: Fusion, b: Fusion) -> bool:
    return ((a.method, a.dense_weight, a.feedback, a.dense_feedback, a.neighbours)
            == (b.method, b.dense_weight, b.feedback, b.dense_feedback, b.neighbours))


def tune_fusion(collection: Any, gold: Sequence[Any], *, source: str = "gold set", store: bool = True,
                candidates: Sequence[Fusion] = CANDIDATES,
                progress: Callable[[int, int], None] | None = None) -> TuneResult:
    """Score each candidate on ``gold`` (``GoldQuery`` items) and store the best with ``collection``.

    Raises a :class:`~keel.errors.UserError` (the stored setting untouched) when the gold
    set has fewer than :data:`MIN_QUERIES` judged queries.
    """
    from keel.evals.retrieval import _unit_of, metric_value, rank_ids

    previous = collection.fusion
    judged = [g for g in gold if any(v > 0 for v in g.relevant.values())]
    if len(judged) < MIN_QUERIES:
        raise UserError(
            f"{source} has {len(judged)} judged quer{'y' if len(judged) == 1 else 'ies'}; tuning needs at least "
            f"{MIN_QUERIES} to tell the fusions apart. The collection keeps its fusion ({previous.label()})",
            hint="add judged queries, or make a gold set from the collection with `keel eval generate-queries`")
    unit = _unit_of(judged, "auto")
    k = 10 if unit == "chunk" else 30  # source judgments: several chunks per source, deduped after
    vectors = collection.embedder.embed([g.query for g in judged])
    cands = list(candidates)
    if not any(_same(c, DEFAULT_FUSION) for c in cands):
        cands.insert(0, DEFAULT_FUSION)
    scores: list[tuple[Fusion, float]] = []
    for i, cand in enumerate(cands):
        total = 0.0
        for g, v in zip(judged, vectors, strict=True):
            hits = collection.search(g.query, mode="hybrid", k=k, query_vector=v, fusion=cand)
            total += metric_value("ndcg", 10, rank_ids(hits, unit)[:10], g.relevant)
        scores.append((cand, round(total / len(judged), 4)))
        if progress is not None:
            progress(i + 1, len(cands))
    scores.sort(key=lambda fs: -fs[1])
    default_score = next(s for f, s in scores if _same(f, DEFAULT_FUSION))
    best, best_score = scores[0]
    chosen = best if best_score >= default_score + MIN_GAIN else DEFAULT_FUSION
    chosen = replace(chosen, source=source if not _same(chosen, DEFAULT_FUSION) else "default")
    result = TuneResult(collection.name, len(judged), previous, chosen, scores)
    if store:
        collection.set_fusion(chosen)
        result.stored = True
    return result
