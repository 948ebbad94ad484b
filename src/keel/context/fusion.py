"""Fusion: combine the dense and BM25 rankings of one query into one.

Two methods, picked per collection by :class:`Fusion` (``keel context tune`` chooses
on the user's own gold set; decision 0025 has the measurements):

- :func:`rrf`, reciprocal rank fusion: ``sum over signals s of weight_s / (k + rank_s(d))``
  with ``k = 60`` (Cormack, Clarke and Büttcher, SIGIR 2009). Ranks only, so it needs
  no calibration, but a signal's confidence (a clear winner vs a flat list) is lost.
- :func:`convex`, a convex combination of min-max normalised scores
  (Bruch, Gai and Ingber, "An Analysis of Fusion Functions for Hybrid Retrieval",
  TOIS 2023): ``sum of weight_s * (score_s(d) - min_s) / (max_s - min_s)`` over each
  signal's candidate list. A document missing from a list gets 0 from it.

:func:`smooth` re-scores a fused list by the cluster hypothesis (a row near high-scoring rows
is likely relevant too): a ``keel context tune`` candidate (:attr:`Fusion.neighbours`), not the
default, since it lifted Cranfield and lowered the Agents SDK docs (decision 0044).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, TypeVar

import numpy as np

from keel.errors import UserError

__all__ = ["DEFAULT_FUSION", "DENSE_FEEDBACK_WEIGHT", "NEIGHBOUR_WEIGHT", "RRF_K", "Fusion", "convex", "fuse", "rrf",
           "smooth"]

RRF_K = 60
DENSE_FEEDBACK_WEIGHT = 0.5
"""Rocchio's beta for :attr:`Fusion.dense_feedback`: the feedback rows' mean vector counts half the query's."""
NEIGHBOUR_WEIGHT = 0.5
"""For :attr:`Fusion.neighbours`: the share of the neighbours' mean fused score a row gains."""
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


def convex(scores: Mapping[str, Mapping[T, float]], *, weights: Mapping[str, float] | None = None
           ) -> list[tuple[T, float]]:
    """Fused ``(item, score)`` pairs, best first, from each signal's ``item -> score``."""
    fused: dict[T, float] = {}
    for name, sc in scores.items():
        w = 1.0 if weights is None else weights.get(name, 1.0)
        if w == 0 or not sc:
            continue
        lo, hi = min(sc.values()), max(sc.values())
        span = hi - lo
        for item, v in sc.items():
            # a list of equal scores (one candidate, or ties) counts fully, as its maximum
            fused[item] = fused.get(item, 0.0) + w * ((v - lo) / span if span > 0 else 1.0)
    return sorted(fused.items(), key=lambda kv: -kv[1])


def smooth(fused: Sequence[tuple[T, float]], vectors: np.ndarray, k: int, *,
           weight: float = NEIGHBOUR_WEIGHT) -> list[tuple[T, float]]:
    """``fused`` re-scored, best first: each item's score plus ``weight`` times the mean score of
    the ``k`` items of the list whose ``vectors`` (one per item, in order) are nearest to its own
    by dot product. Equal scores keep the input order."""
    n = len(fused)
    k = min(k, n - 1)
    if k < 1:
        return list(fused)
    sc = np.fromiter((s for _, s in fused), dtype=np.float64, count=n)
    v = np.asarray(vectors, dtype=np.float32)
    sim = v @ v.T
    np.fill_diagonal(sim, -np.inf)
    near = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    new = sc + weight * sc[near].mean(axis=1)
    return [(fused[i][0], float(new[i])) for i in np.lexsort((np.arange(n), -new))]


@dataclass(frozen=True)
class Fusion:
    """How a collection's hybrid search combines dense and BM25 (stored with the collection)."""

    method: Literal["rrf", "convex"] = "convex"
    """``rrf`` (ranks) or ``convex`` (min-max normalised scores)."""
    dense_weight: float = 0.5
    """Share of the dense signal, 0-1; BM25 gets the rest."""
    feedback: bool = False
    """RM3 pseudo-relevance feedback on the BM25 half (:meth:`keel.context.bm25.BM25Index.expand`)."""
    source: str = "default"
    """Where the setting came from: ``default``, or the gold set ``keel context tune`` used."""
    dense_feedback: int = 0
    """Dense pseudo-relevance feedback (Rocchio): the mean vector of the top ``dense_feedback`` rows of
    the fused ranking joins the query vector (weight :data:`DENSE_FEEDBACK_WEIGHT`), the dense search
    runs again and the signals are fused again; 0 is off (decision 0034)."""
    neighbours: int = 0
    """Neighbourhood smoothing (:func:`smooth`): each fused row gains :data:`NEIGHBOUR_WEIGHT` times the
    mean fused score of its ``neighbours`` nearest rows among the fused candidates (by their vectors);
    0 is off (decision 0044)."""

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "convex"):
            raise UserError(f"unknown fusion method {self.method!r}", hint="use rrf or convex")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise UserError(f"fusion dense_weight {self.dense_weight} is outside 0-1")
        if not isinstance(self.dense_feedback, int) or not 0 <= self.dense_feedback <= 50:
            raise UserError(f"fusion dense_feedback {self.dense_feedback!r} is not a row count of 0-50")
        if not isinstance(self.neighbours, int) or not 0 <= self.neighbours <= 50:
            raise UserError(f"fusion neighbours {self.neighbours!r} is not a row count of 0-50")

    @property
    def weights(self) -> dict[str, float]:
        return {"dense": self.dense_weight, "bm25": 1.0 - self.dense_weight}

    def label(self) -> str:
        return (f"{self.method} dense {self.dense_weight:g}" + (" + RM3" if self.feedback else "")
                + (f" + dense PRF {self.dense_feedback}" if self.dense_feedback else "")
                + (f" + neighbours {self.neighbours}" if self.neighbours else ""))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Fusion:
        """The stored setting; missing or unreadable (written by a newer Keel) is the default."""
        if not text:
            return DEFAULT_FUSION
        try:
            raw = json.loads(text)
            known = {k: raw[k] for k in ("method", "dense_weight", "feedback", "source", "dense_feedback", "neighbours") if k in raw}
            return cls(**known)
        except (ValueError, TypeError, UserError):
            return DEFAULT_FUSION


DEFAULT_FUSION = Fusion()
"""The default for every collection until ``keel context tune`` stores another: an even convex
combination of min-max normalised scores, no feedback. It beat RRF on Cranfield and ADI and
never fell below the better single signal (decision 0025)."""


def fuse(fusion: Fusion, rankings: Mapping[str, Sequence[T]], scores: Mapping[str, Mapping[T, float]],
         *, weights: Mapping[str, float] | None = None) -> list[tuple[T, float]]:
    """Combine the signals with ``fusion``; explicit ``weights`` override its dense/BM25 split."""
    if fusion.method == "convex":
        return convex({n: scores[n] for n in rankings}, weights=weights or fusion.weights)
    # RRF's weights are scaled so an even split is 1 and 1: the scores stay 1/(k + rank)
    w = weights or {n: 2 * v for n, v in fusion.weights.items()}
    return rrf(rankings, weights=w)
