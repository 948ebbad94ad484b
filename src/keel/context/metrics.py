"""Ranking metrics: nDCG@k (graded), Recall@k and MRR@k, as trec_eval defines them.

``ndcg_cut`` uses linear gains (``gain / log2(rank + 1)``), the ideal ranking built
from every judged relevant document, and scores a query with no relevant documents
as 0 (such queries are skipped by :func:`evaluate`, as trec_eval does). The test
suite checks these against ``ranx`` or ``pytrec_eval`` when one is installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["evaluate", "mrr_at", "ndcg_at", "recall_at"]

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Sequence[str]]


def ndcg_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if relevant.get(d, 0) > 0)
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    rel = {d for d, g in relevant.items() if g > 0}
    return len(rel.intersection(ranked[:k])) / len(rel) if rel else 0.0


def mrr_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if relevant.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean ``ndcg@10``, ``recall@100`` and ``mrr@10`` over the queries that have judgments.

    ``run`` maps a query id to its ranked document ids (best first, no duplicates).
    A judged query missing from ``run`` scores 0.
    """
    judged = [q for q, rel in qrels.items() if any(g > 0 for g in rel.values())]
    if not judged:
        return {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    totals = {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for q in judged:
        ranked, rel = run.get(q, ()), qrels[q]
        totals["ndcg@10"] += ndcg_at(ranked, rel, 10)
        totals["recall@100"] += recall_at(ranked, rel, 100)
        totals["mrr@10"] += mrr_at(ranked, rel, 10)
    return {name: round(v / len(judged), 4) for name, v in totals.items()}
