"""The hybrid query and ingest speed-ups of decision 0038, checked for exactness on real
indexes and real SQLite files: BM25's sampled top-k selection returns exactly the brute-force
top k (ties in row order, with and without a filter), an ingest batch commits in one
transaction and all or nothing, and the collection files are read through a memory map."""

from __future__ import annotations

import numpy as np
import pytest

from keel.context import Collection
from keel.context._embedded import EmbeddedBackend
from keel.context.bm25 import BM25Index, pack_terms

EMB = "test-hashing"


def _brute_top(index: BM25Index, terms: list[int], k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    sc = index.scores(terms)
    if allowed is not None:
        sc[~allowed] = 0
    rows = np.flatnonzero(sc > 0)
    rows = rows[np.lexsort((rows, -sc[rows]))][:k]  # a full sort: score, then row
    return rows, sc[rows]


def test_bm25_top_is_the_exact_top_k_with_ties_in_row_order() -> None:
    rng = np.random.default_rng(7)
    vocab = 400
    p = 1.0 / np.arange(1, vocab + 1) ** 1.1
    p /= p.sum()
    distinct = []
    for _ in range(3000):
        t = rng.choice(vocab, size=int(rng.integers(3, 40)), p=p)
        u, c = np.unique(t, return_counts=True)
        distinct.append(pack_terms(dict(zip(u.tolist(), c.tolist(), strict=True))))
    # every text four times, shuffled: equal scores far apart, as replicated chunks have
    blobs = [distinct[i] for i in rng.permutation(np.repeat(np.arange(len(distinct)), 4))]
    index = BM25Index(blobs)
    assert index.n == 12_000
    sampled = 0
    for qi in range(60):
        terms = rng.choice(vocab, size=int(rng.integers(1, 8)), p=p).tolist()
        allowed = None if qi % 3 else rng.random(index.n) < 0.4
        for k in (10, 100):
            rows, scores = index.top(terms, k, allowed)
            want_rows, want_scores = _brute_top(index, terms, k, allowed)
            np.testing.assert_array_equal(rows, want_rows)
            np.testing.assert_array_equal(scores, want_scores)
            sampled += allowed is None and k == 10
    assert sampled == 40  # the sampled-threshold path ran (n > 64 k), not only the plain one
    rows, _ = index.top([], 10)
    assert rows.size == 0


def test_bm25_in_place_kernel_gives_the_sliced_products_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    import keel.context.bm25 as bm25

    rng = np.random.default_rng(3)
    blobs = [pack_terms({int(t): int(c) for t, c in zip(rng.choice(300, 12, replace=False),
                                                         rng.integers(1, 5, 12), strict=True)})
             for _ in range(5000)]
    index = BM25Index(blobs)
    queries = [rng.choice(300, int(rng.integers(1, 9))).tolist() for _ in range(30)]
    index.scores(queries[0])
    index.scores(queries[0])  # the scipy matrix (and its kernel) from the second query on
    if index._kernel is None:
        pytest.skip("this scipy has no csc_matvec kernel: the sliced product is the only path")
    in_place = [index.scores(q) for q in queries] + [index.scores(q, [0.3] * len(q)) for q in queries]
    monkeypatch.setattr(bm25, "USE_KERNEL", False)
    sliced = [index.scores(q) for q in queries] + [index.scores(q, [0.3] * len(q)) for q in queries]
    for a, b in zip(in_place, sliced, strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit: the same additions in the same order
    assert any(a.any() for a in in_place)


def _records(n: int, start: int = 0) -> list[tuple[str, str, str, dict]]:
    return [(f"r{i}", "", f"record {i} about turbulent boundary layers number {i % 7}", {"i": i})
            for i in range(start, start + n)]


def test_ingest_commits_a_batch_in_one_transaction() -> None:
    with Collection.open("batched", embedder=EMB) as col:
        g0 = col.backend.generation()
        report = col.add_records(_records(100))
        assert report.chunks_written == 100 and col.stats().documents == 100
        # batches of 64 records: two commits, not one per record
        assert col.backend.generation() - g0 == 2
        hits = col.search("record 42 turbulent", k=3)
        assert hits and hits[0].citation.source == "r42"


def test_a_failing_batch_leaves_none_of_its_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    with Collection.open("atomic", embedder=EMB) as col:
        col.add_records(_records(10))
        write = EmbeddedBackend._write_document

        def failing(self, c, doc):
            if doc.source == "r15":
                raise OSError("disk full (simulated)")
            write(self, c, doc)

        monkeypatch.setattr(EmbeddedBackend, "_write_document", failing)
        with pytest.raises(OSError, match="disk full"):
            col.add_records(_records(10, start=10))
        monkeypatch.undo()
        assert sorted(col.sources()) == sorted(f"r{i}" for i in range(10))  # the earlier batch, whole
        col.add_records(_records(10, start=10))  # the same ingest again completes it
        assert col.stats().documents == 20


def test_collection_files_are_read_through_a_memory_map() -> None:
    with Collection.open("mapped", embedder=EMB) as col:
        col.add_records(_records(3))
        conn = col.backend.db.conn
        assert conn.execute("PRAGMA main.mmap_size").fetchone()[0] > 0
        assert conn.execute("PRAGMA shared.mmap_size").fetchone()[0] > 0
        assert col.search("record 2", k=1)[0].citation.source == "r2"
