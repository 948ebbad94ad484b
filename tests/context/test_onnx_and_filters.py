"""Issue 18, speed: the ONNX Runtime embedder against torch on real text, and filtered
search (per-field bitmaps, the HNSW graph walked with the filter) against brute force
on Cranfield."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from keel.context import Collection, dense
from keel.context.collection import _rows_mask
from keel.context.embedders import EmbedderError, MiniLMEmbedder, get_embedder
from keel.context.filter_index import FilterIndex
from keel.context.smart import load_smart
from tests.context._data import dataset, needs_minilm

_TEXTS = ["How do I rotate keys?", "a", "Ünïcödé — ‘quotes’ 中文 emoji 🎉", "word " * 400,  # truncated at 256
          "def f(x):\n    return x * 2\n", "   spaces   and\ttabs\n\n\nnewlines   "]


def _cranfield_texts(n: int) -> list[str]:
    data = load_smart(dataset("cranfield"))
    return [f"{d.title}\n{d.text}" for d in data.docs[:n]]


@pytest.mark.slow  # two exports and torch's import: ~15 s on a quiet machine, minutes under a load of 30
@needs_minilm
def test_onnx_embedder_gives_torch_vectors_and_int8_stays_close(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    monkeypatch.setattr(MiniLMEmbedder, "_models", {})
    texts = _TEXTS + _cranfield_texts(10)
    torch_vecs = SentenceTransformer(MiniLMEmbedder.model_path(), device="cpu").encode(
        texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)

    onnx = get_embedder("minilm-onnx")
    assert onnx.name == "minilm:all-MiniLM-L6-v2"  # same vectors, so the same cache key and collections
    ours = onnx.embed(texts)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    cos = (ours * torch_vecs).sum(axis=1)
    assert float(cos.min()) > 1 - 1e-5, cos
    # the graph is written once per user and weights (the shared cache), not under each KEEL_HOME
    from keel.context.onnx_minilm import cache_dir, weights_key

    assert (cache_dir() / f"all-MiniLM-L6-v2-{weights_key(Path(MiniLMEmbedder.model_path()))}.onnx").is_file()
    assert not (Path(os.environ["KEEL_HOME"]) / "models").exists()

    int8 = get_embedder("minilm-int8")
    assert int8.name == "minilm-int8:all-MiniLM-L6-v2"
    q = int8.embed(texts)
    cos8 = (q * torch_vecs).sum(axis=1)
    assert float(cos8.min()) > 0.97 and float(cos8.mean()) > 0.99, cos8
    assert float(cos8.min()) < 1 - 1e-4  # it is a different model: never mixed with the float vectors

    # a collection made with minilm opens with minilm-onnx (same vectors), not with minilm-int8
    with Collection.open("docs", embedder="minilm") as col:
        col.add_records([("a", "", _TEXTS[0], {})])
    with Collection.open("docs", embedder="minilm-onnx") as col:
        assert col.embedder.runtime == "onnx"  # type: ignore[attr-defined]
        assert col.search("rotate keys", k=1)[0].citation.source == "a"
    with pytest.raises(Exception, match="uses the embedder 'minilm:all-MiniLM-L6-v2', not 'minilm-int8'"):
        Collection.open("docs", embedder="minilm-int8")


@needs_minilm
def test_onnx_export_that_fails_says_why_and_keeps_numpy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(MiniLMEmbedder, "_models", {})
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where KEEL_HOME's folders would go")
    monkeypatch.setenv("KEEL_ONNX_CACHE", str(blocker / "onnx"))  # the export cannot create its folder
    emb = MiniLMEmbedder(runtime="onnx")
    v = emb.embed(_TEXTS[:2])
    err = capsys.readouterr().err
    assert "the ONNX embedder could not be prepared" in err and "using the NumPy one (same vectors)" in err
    assert "KEEL_ONNX_CACHE" in err and str(blocker / "onnx") in err  # where, and the fix
    assert "Traceback" not in err
    # plain minilm (auto) keeps NumPy after the same failure: one warning, then the same vectors
    monkeypatch.setattr(MiniLMEmbedder, "_models", {})
    auto = MiniLMEmbedder().embed(_TEXTS * 2)
    err = capsys.readouterr().err
    assert err.count("could not be prepared") == 1
    assert np.allclose(auto, MiniLMEmbedder(runtime="numpy").embed(_TEXTS * 2), atol=1e-6)
    assert np.allclose(v, MiniLMEmbedder(runtime="numpy").embed(_TEXTS[:2]), atol=1e-6)
    # int8 vectors cannot come from NumPy: a clear error instead of a silent switch
    with pytest.raises(EmbedderError, match="int8 ONNX embedder could not be prepared") as exc:
        MiniLMEmbedder(runtime="onnx-int8").embed(_TEXTS[:1])
    assert "minilm embedder" in (exc.value.hint or "")
    with pytest.raises(EmbedderError, match="unknown MiniLM runtime"):
        MiniLMEmbedder(runtime="cuda")


_FILTERS = [
    {"copy": {"$lt": 3}}, {"copy": {"$gte": 2}}, {"group": "g1"}, {"group": {"$in": ["g0", "g3"]}},
    {"group": {"$gt": "g1"}}, {"opt": {"$gte": 500}}, {"opt": {"$nin": [5, 7, 9]}}, {"opt": None},
    {"opt": {"$ne": None}}, {"$or": [{"copy": 1}, {"group": "g2"}]},
    {"$and": [{"copy": {"$ne": 0}}, {"opt": {"$lte": 900}}]}, {"source": "0-7"}, {"flag": True},
]
_SQL_ONLY = [{"mixed": 3}, {"mixed": "s4"}, {"copy": "2"}, {"symbol": "x"}]


def _same_top(got: list[float], want, hits, allowed: np.ndarray, idx, flt) -> None:
    """The scores of the top k equal brute force's (ties may come in any order) and every hit passes."""
    assert np.allclose(np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), atol=1e-5), flt
    assert all(allowed[idx.rows_of([h.chunk_id])[0]] for h in hits), flt


def _records(texts: list[str], copies: int) -> list[tuple[str, str, str, dict]]:
    recs = []
    for r in range(copies):
        for i, t in enumerate(texts):
            n = r * len(texts) + i
            meta = {"copy": r, "group": f"g{n % 4}", "flag": n % 3 == 0, "mixed": n if n % 2 else f"s{n}"}
            if n % 5:
                meta["opt"] = n
            recs.append((f"{r}-{i}", "", t if r == 0 else f"{t} [copy {r}]", meta))
    return recs


def test_filter_bitmaps_equal_sql_and_filtered_search_equals_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = _cranfield_texts(400)
    with Collection.open("filters", embedder="test-hashing") as col:
        col.hnsw_min = 600  # an HNSW graph, as a large collection has
        col.add_records(_records(texts, 4))  # 1,600 chunks
        idx = col._load()
        assert idx.dense._hnsw is not None
        fidx = col._filter_index(idx)
        for flt in _FILTERS + _SQL_ONLY:
            sql = _rows_mask(idx.ids, np.array([r[0] for r in col.backend.filter_rows(flt, with_text=False)],
                                               dtype=np.int64))
            fast = fidx.mask(flt)
            if flt in _SQL_ONLY:
                assert fast is None, flt  # mixed types, a string against numbers, list fields: SQL answers
            else:
                assert fast is not None and (fast == sql).all(), (flt, int(sql.sum()), None if fast is None
                                                                  else int(fast.sum()))
                assert 0 < sql.sum() < len(idx.ids), flt  # each filter keeps some rows and drops some

        vecs = idx.dense.vectors
        queries = ["boundary layer transition", "heat transfer in hypersonic flow", "buckling of cylinders"]
        for flt in _FILTERS[:6] + _SQL_ONLY[:1]:
            allowed = _rows_mask(idx.ids, np.array([r[0] for r in col.backend.filter_rows(flt, with_text=False)],
                                                   dtype=np.int64))
            for qtext in queries:
                qv = col.embedder.embed([qtext])[0]
                # dense, narrow enough to be scored exactly: brute force's scores, each hit allowed
                monkeypatch.setattr(dense, "EXACT_MAX", 10**9)
                hits = col.search(qtext, mode="dense", k=10, where=flt)
                sc = np.where(allowed, vecs @ qv, -np.inf)
                want = np.sort(sc)[::-1][: min(10, int(allowed.sum()))]
                _same_top([h.score for h in hits], want, hits, allowed, idx, flt)
                for h in hits:
                    assert abs(h.score - float(vecs[idx.rows_of([h.chunk_id])[0]] @ qv)) < 1e-5
                # BM25: brute force is the unfiltered scores of every row, masked
                hits = col.search(qtext, mode="bm25", k=10, where=flt)
                every = col.search(qtext, mode="bm25", k=len(idx.ids), pool=len(idx.ids))
                want_b = [h.score for h in every if allowed[idx.rows_of([h.chunk_id])[0]]][:10]
                _same_top([h.score for h in hits], want_b, hits, allowed, idx, flt)
                # broad filters walk the HNSW graph with the bitmap: only allowed rows, recall as unfiltered
                monkeypatch.setattr(dense, "EXACT_MAX", 10)
                hits = col.search(qtext, mode="dense", k=10, where=flt)
                assert all(allowed[idx.rows_of([h.chunk_id])[0]] for h in hits)
                found = sum(1 for h in hits if h.score >= want[-1] - 1e-6)
                assert found >= min(8, want.size), (flt, qtext, found)
                # hybrid through the bitmap equals hybrid through SQL (the previous path)
                monkeypatch.setattr(dense, "EXACT_MAX", 10**9)
                fast_h = [h.chunk_id for h in col.search(qtext, k=10, where=flt)]
                with monkeypatch.context() as m:
                    m.setattr(FilterIndex, "mask", lambda self, f: None)
                    sql_h = [h.chunk_id for h in col.search(qtext, k=10, where=flt)]
                assert fast_h == sql_h and fast_h, (flt, qtext)

        # a write moves the generation: the next filter reads the columns again
        col.add_records([("new", "", "boundary layer transition at high speed", {"copy": 99, "group": "g1"})])
        hits = col.search("boundary layer", where={"copy": 99}, k=5)
        assert [h.citation.source for h in hits] == ["new"]
        assert col._filter_index(col._load()) is not fidx


def test_filter_bitmaps_leave_to_sql_what_they_cannot_answer_exactly() -> None:
    """Found in review: ``x NOT IN (1, NULL)`` is never true in SQL, while the bitmap kept every
    row but 1; and an operand past 2**53 compared as a rounded float."""
    index = FilterIndex(4, lambda field: [1, 2, None, 3] if field == "n" else None)
    assert index.mask({"n": {"$nin": [1, None]}}) is None
    assert index.mask({"n": {"$in": [1, None]}}) is None
    assert index.mask({"n": {"$lt": 2**53 + 1}}) is None
    assert index.mask({"n": {"$nin": [1]}}).tolist() == [False, True, False, True]
    assert index.mask({"n": {"$lt": 3}}).tolist() == [True, True, False, False]
