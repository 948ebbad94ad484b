"""Reciprocal rank fusion: combine rankings by rank, not by incomparable scores.

``score(d) = sum over signals s of weight_s / (k + rank_s(d))`` with ``k = 60``
(Cormack, Clarke and Büttcher, SIGIR 2009). A document missing from a ranking
gets nothing from it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

__all__ = ["RRF_K", "rrf"]

RRF_K = 60
T = TypeVar("T", bound=Hashable)


def rrf(rankings: Mapping[str, Sequence[T]], *, weights: Mapping[str, float] | None = None,
        k: int = RRF_K) -> list[tuple[T, float]]:
    """Fused ``(item, score)`` pairs, best first; ties keep first-seen order."""
    scores: dict[T, float] = {}
    for name, ranking in rankings.items():
        w = 1.0 if weights is None else weights.get(name, 1.0)
        if w == 0:
            continue
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])
