"""The per-row Pareto front of candidates (GEPA's parent selection)."""

from __future__ import annotations

import random

from keel.evals.datasets import DatasetRow
from keel.optimize.gepa import Candidate, Search


def _search(scores: list[dict[int, float]]) -> Search:
    s = Search.__new__(Search)  # only the front's inputs: candidates and validation rows
    s.val = [DatasetRow(idx=i, item={}) for i in range(len(scores[0]))]
    s.candidates = [Candidate(i, f"c{i}", None, "seed", dict(v)) for i, v in enumerate(scores)]
    s.rng = random.Random(0)
    return s


def test_a_candidate_best_on_one_row_stays_on_the_front_though_its_mean_is_lower():
    s = _search([
        {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0},   # seed: dominated
        {0: 1.0, 1: 1.0, 2: 1.0, 3: 0.0},   # best mean
        {0: 0.0, 1: 0.0, 2: 0.0, 3: 1.0},   # the only one to get row 3 right
    ])
    assert s.front() == {1: 3, 2: 1}
    assert s.best().id == 1
    picks = {s._pick_parent().id for _ in range(50)}
    assert picks == {1, 2}


def test_dominated_candidates_leave_the_front_and_the_seed_wins_a_tie_for_best():
    s = _search([
        {0: 1.0, 1: 0.0},
        {0: 1.0, 1: 1.0},   # best on every row candidate 0 is best on, and more: 0 is dominated
        {0: 1.0, 1: 1.0},   # the same wins as 1: both stay
    ])
    assert s.front() == {1: 2, 2: 2}
    s2 = _search([{0: 0.5}, {0: 0.5}])
    assert s2.best().id == 0
