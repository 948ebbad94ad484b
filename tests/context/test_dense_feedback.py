"""Dense pseudo-relevance feedback in hybrid search (``Fusion.dense_feedback``, decision 0034).

A real collection file (ADI, the test hashing embedder): the second dense pass must use
the query vector moved toward the mean of the first fused ranking's top rows, exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from keel.context import Collection
from keel.context.bench import ingest_smart
from keel.context.fusion import DENSE_FEEDBACK_WEIGHT, Fusion
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


def test_dense_feedback_searches_again_with_the_rocchio_vector(adi_col: Collection) -> None:
    changed = 0
    for query in ["computer information retrieval systems", "indexing of documents by citations",
                  "automatic abstracting and extracting"]:
        qv = adi_col.embedder.embed([query])[0]
        first = adi_col.search(query, k=3, fusion=Fusion())
        vecs = adi_col.backend.cached_vectors([h.hash for h in first], adi_col.embedder.name)
        q2 = qv + DENSE_FEEDBACK_WEIGHT * np.mean([vecs[h.hash] for h in first], axis=0)
        q2 /= np.linalg.norm(q2)
        hits = adi_col.search(query, k=10, fusion=Fusion(dense_feedback=3))
        assert hits and all("convex" in h.scores for h in hits)
        hv = adi_col.backend.cached_vectors([h.hash for h in hits], adi_col.embedder.name)
        for h in hits:
            if "dense" in h.scores:
                assert h.scores["dense"] == pytest.approx(float(hv[h.hash] @ q2), abs=1e-5)
        plain = adi_col.search(query, k=10, fusion=Fusion())
        changed += [h.chunk_id for h in hits] != [h.chunk_id for h in plain]
    assert changed, "feedback moved no ranking"


def test_dense_feedback_setting_round_trips_and_is_a_tune_candidate() -> None:
    f = Fusion("convex", 0.5, False, dense_feedback=3)
    assert Fusion.from_json(f.to_json()) == f and f.label() == "convex dense 0.5 + dense PRF 3"
    assert Fusion.from_json('{"method": "convex", "dense_weight": 0.5}').dense_feedback == 0  # older settings
    assert f in CANDIDATES
    with pytest.raises(UserError, match="dense_feedback"):
        Fusion(dense_feedback=-1)


def test_dense_feedback_reads_the_vectors_from_postgresql(pg_url: str) -> None:
    """With pgvector answering dense search (HNSW), the feedback rows' vectors come from the store."""
    data = load_smart(dataset("adi"))
    with Collection.open("adi", embedder="test-hashing", store=pg_url) as col:
        col.hnsw_min = 10  # pgvector's HNSW index, not vectors read into the process
        ingest_smart(col, data)
        query = "computer information retrieval systems"
        first = col.search(query, k=3, fusion=Fusion())
        assert not hasattr(col._load().dense, "vectors")
        vecs = col.backend.cached_vectors([h.hash for h in first], col.embedder.name)
        q2 = col.embedder.embed([query])[0] + DENSE_FEEDBACK_WEIGHT * np.mean([vecs[h.hash] for h in first], axis=0)
        q2 /= np.linalg.norm(q2)
        hits = col.search(query, k=10, fusion=Fusion(dense_feedback=3))
        hv = col.backend.cached_vectors([h.hash for h in hits], col.embedder.name)
        dense = [h for h in hits if "dense" in h.scores]
        assert dense
        for h in dense:
            assert h.scores["dense"] == pytest.approx(float(hv[h.hash] @ q2), abs=1e-4)
