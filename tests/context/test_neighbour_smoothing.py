"""Neighbourhood smoothing of the fused candidates (``Fusion.neighbours``, decision 0044).

A real collection file (ADI, the test hashing embedder): with ``neighbours=3`` every fused
score must be the default fused score plus half the mean of the 3 nearest candidates' scores
(by their stored vectors), and the ranking must follow those scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keel.context import Collection
from keel.context.bench import ingest_smart
from keel.context.fusion import NEIGHBOUR_WEIGHT, Fusion, smooth
from keel.context.smart import load_smart
from keel.context.tune import CANDIDATES
from keel.errors import UserError
from tests.context._data import dataset


@pytest.fixture
def adi_col(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "home"))
    col = Collection.open("adi", embedder="test-hashing")
    ingest_smart(col, load_smart(dataset("adi")))
    yield col
    col.close()


def expected(col: Collection, query: str, k: int) -> list[tuple[int, float]]:
    """Every default fused candidate, smoothed by hand from the stored vectors."""
    every = col.search(query, k=1000, fusion=Fusion())
    vecs = col.backend.cached_vectors([h.hash for h in every], col.embedder.name)
    v = np.stack([vecs[h.hash] for h in every]).astype(np.float32)
    fused = np.array([h.scores["convex"] for h in every])
    out = []
    for i in range(len(every)):
        sim = v @ v[i]
        sim[i] = -np.inf
        near = np.argsort(-sim, kind="stable")[:k]
        out.append((every[i].chunk_id, fused[i] + NEIGHBOUR_WEIGHT * fused[near].mean()))
    return sorted(out, key=lambda cs: -cs[1])


def test_neighbours_add_half_the_mean_score_of_the_nearest_candidates(adi_col: Collection) -> None:
    changed = 0
    for query in ["computer information retrieval systems", "indexing of documents by citations",
                  "automatic abstracting and extracting"]:
        want = expected(adi_col, query, 3)
        hits = adi_col.search(query, k=10, fusion=Fusion(neighbours=3))
        assert [h.scores["convex"] for h in hits] == pytest.approx([s for _, s in want[:10]], abs=1e-6)
        assert [h.chunk_id for h in hits] == [c for c, _ in want[:10]]
        plain = adi_col.search(query, k=10, fusion=Fusion())
        changed += [h.chunk_id for h in hits] != [h.chunk_id for h in plain]
    assert changed, "smoothing moved no ranking"


def test_smooth_keeps_short_lists_and_input_order_on_ties() -> None:
    assert smooth([("a", 1.0)], np.eye(1), 3) == [("a", 1.0)]
    # two identical scores and symmetric neighbours: the input order stays
    out = smooth([("a", 0.5), ("b", 0.5), ("c", 0.1)], np.eye(3), 1)
    assert [x for x, _ in out][:2] == ["a", "b"]


def test_neighbours_setting_round_trips_and_is_a_tune_candidate() -> None:
    f = Fusion("convex", 0.5, False, neighbours=3)
    assert Fusion.from_json(f.to_json()) == f and f.label() == "convex dense 0.5 + neighbours 3"
    assert Fusion.from_json('{"method": "convex", "dense_weight": 0.5}').neighbours == 0  # older settings
    assert f in CANDIDATES
    with pytest.raises(UserError, match="neighbours"):
        Fusion(neighbours=51)


def test_neighbours_read_the_vectors_from_postgresql(pg_url: str) -> None:
    """With pgvector answering dense search (HNSW), the candidates' vectors come from the store."""
    with Collection.open("adi", embedder="test-hashing", store=pg_url) as col:
        col.hnsw_min = 10  # pgvector's HNSW index, not vectors read into the process
        ingest_smart(col, load_smart(dataset("adi")))
        query = "computer information retrieval systems"
        want = expected(col, query, 3)
        assert not hasattr(col._load().dense, "vectors")
        hits = col.search(query, k=10, fusion=Fusion(neighbours=3))
        assert [h.scores["convex"] for h in hits] == pytest.approx([s for _, s in want[:10]], abs=1e-4)
