"""An in-memory BM25 index over a collection's chunks (Lucene's formula).

It is derived data: built from the term counts stored with each chunk (so
building needs no re-tokenising) as a column-sorted sparse matrix of
precomputed BM25 weights, one column per term. A query adds up the columns of
its terms: one sparse matrix-vector product (scipy; numpy alone is the fallback).
The first query of an index adds up posting lists with numpy; the scipy matrix is
built from the second on, so a one-shot ``keel context search`` does not pay
scipy's half-second import and a long-lived server still gets its speed.
Measured against SQLite FTS5's ``bm25()`` in docs/decisions/0002-context-storage.md.

:meth:`BM25Index.expand` is RM3 pseudo-relevance feedback (Lavrenko and Croft's
relevance model mixed with the query, as Anserini does): the terms that weigh most
in the top few documents of a first pass join the query with weights. Why ``k1``
is 1.5 and when feedback is used: docs/decisions/0025-lexical-and-fusion.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["DEFAULT_K1", "BM25Index", "pack_terms", "unpack_terms"]

USE_KERNEL = True
"""Score with scipy's CSC kernel (``y += A x``) on each posting list in place, when scipy has it
(loaded with the scipy matrix, from an index's second query); ``False``: the sliced product."""

DEFAULT_K1 = 1.5
"""bm25s's default; Lucene's 1.2 scored lower on both Cranfield and ADI (decision 0025)."""


def pack_terms(term_ids: dict[int, int]) -> bytes:
    """Encode ``term id -> count`` as little-endian uint32 pairs."""
    arr = np.array(sorted(term_ids.items()), dtype=np.uint32).reshape(-1, 2)
    return arr.tobytes()


def unpack_terms(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint32).reshape(-1, 2)


class BM25Index:
    """BM25 with ``k1`` and ``b`` (defaults 1.5 and 0.75, as bm25s; Lucene's ``k1`` is 1.2)."""

    def __init__(self, blobs: list[bytes], *, k1: float = DEFAULT_K1, b: float = 0.75) -> None:
        """``blobs[row]`` holds the packed term counts of the chunk at position ``row``."""
        self.n = len(blobs)
        self._csc = None
        self._kernel = None
        self._queries = 0
        arrays = [unpack_terms(bl) for bl in blobs]
        lens = np.fromiter((a.shape[0] for a in arrays), dtype=np.int64, count=self.n)
        # each row's (term, count) pairs, rows in order (a CSR of the counts): feedback reads a top
        # row's terms here. One array, not a bytes object per row (decision 0045)
        self.row_ptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(lens, out=self.row_ptr[1:])
        if self.n == 0 or lens.sum() == 0:
            self.row_pairs = np.zeros((0, 2), dtype=np.uint32)
            self.terms = np.zeros(0, dtype=np.uint32)
            self.indptr = np.zeros(1, dtype=np.int64)
            self.rows = np.zeros(0, dtype=np.int32)
            self.weights = np.zeros(0, dtype=np.float32)
            return
        pairs = self.row_pairs = np.concatenate(arrays)
        del arrays
        rows = np.repeat(np.arange(self.n, dtype=np.int32), lens)
        tids, tf = pairs[:, 0], pairs[:, 1].astype(np.float32)
        dl = np.bincount(rows, weights=tf, minlength=self.n).astype(np.float32)
        avgdl = float(dl.mean()) or 1.0
        order = np.argsort(tids, kind="stable")
        tids, tf, rows = tids[order], tf[order], rows[order]
        self.terms, starts, df = np.unique(tids, return_index=True, return_counts=True)
        self.indptr = np.append(starts, len(tids)).astype(np.int64)
        idf = np.log1p((self.n - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = k1 * (1 - b + b * dl[rows] / avgdl)
        self.weights = (np.repeat(idf, df) * tf * (k1 + 1) / (tf + norm)).astype(np.float32)
        self.rows = rows

    ARRAYS = ("terms", "indptr", "rows", "weights", "row_ptr", "row_pairs")
    """What an index is made of: :meth:`arrays` gives them, :meth:`from_arrays` takes them back."""

    def arrays(self) -> dict[str, np.ndarray]:
        """The index's arrays by name (to save them: :mod:`keel.context.snapshot`)."""
        return {name: getattr(self, name) for name in self.ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> BM25Index:
        """An index made of arrays :meth:`arrays` gave (memory-mapped ones work: nothing is copied)."""
        index = cls.__new__(cls)
        for name in cls.ARRAYS:
            setattr(index, name, arrays[name])
        index.n = int(index.row_ptr.size) - 1
        index._csc, index._kernel, index._queries = None, None, 0
        return index

    def _matrix(self):
        """The scipy CSC matrix of the weights (built on the second query), or ``None``."""
        self._queries += 1
        if self._csc is None and self._queries > 1:
            try:
                import scipy.sparse as sp
            except ImportError:  # numpy alone works, about 3x slower on long posting lists
                self._csc = False
            else:
                self._csc = sp.csc_matrix((self.weights, self.rows, self.indptr), shape=(self.n, self.terms.size))
                try:
                    from scipy.sparse._sparsetools import csc_matvec
                except ImportError:  # a scipy that moved its private kernel: the sliced product
                    csc_matvec = None
                self._kernel = csc_matvec
        return None if self._csc is False else self._csc

    def scores(self, term_ids: list[int], weights: list[float] | None = None) -> np.ndarray:
        """BM25 score of every row for a query made of ``term_ids`` (repeats count), each
        term's column scaled by ``weights`` when given (feedback queries)."""
        out = np.zeros(self.n, dtype=np.float32)
        if not term_ids or self.terms.size == 0:
            return out
        q = np.asarray(term_ids, dtype=np.uint32)
        w = np.ones(q.size, dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
        pos = np.searchsorted(self.terms, q)
        found = (pos < self.terms.size) & (self.terms[np.minimum(pos, self.terms.size - 1)] == q)
        csc = self._matrix()
        if csc is not None:
            cols = pos[found]
            if cols.size == 0:
                return out
            kernel = self._kernel if USE_KERNEL else None
            if kernel is not None:
                # scipy's kernel on each posting list in place: the same sums in the same order as
                # csc[:, cols] @ w, without copying the lists into a new matrix first (a third
                # less time at 100k chunks; decision 0038)
                for c, wt in zip(cols.tolist(), w[found], strict=True):
                    s, e = int(self.indptr[c]), int(self.indptr[c + 1])
                    kernel(self.n, 1, np.array([0, e - s], dtype=np.int32), self.rows[s:e], self.weights[s:e],
                            np.array([wt], dtype=np.float32), out)
                return out
            return np.asarray(csc[:, cols] @ w[found], dtype=np.float32)
        for p, wt in zip(pos[found], w[found], strict=True):
            s, e = self.indptr[p], self.indptr[p + 1]
            out[self.rows[s:e]] += wt * self.weights[s:e]
        return out

    def expand(self, term_ids: list[int], *, fb_docs: int = 10, fb_terms: int = 10,
               original_weight: float = 0.5) -> tuple[list[int], list[float]]:
        """RM3: ``(term ids, weights)`` of the query mixed with its relevance model.

        The relevance model weighs each term of the top ``fb_docs`` rows by its share of
        the row's length times the row's share of their scores; its ``fb_terms`` best
        terms are mixed with the query's own term distribution, ``original_weight`` to
        the query. A query that matches nothing comes back unchanged.
        """
        if not term_ids:
            return list(term_ids), [1.0] * len(term_ids)
        first = self.scores(term_ids)
        k = min(fb_docs, self.n)
        top = np.argpartition(first, self.n - k)[self.n - k:] if self.n > k else np.arange(self.n)
        top = top[first[top] > 0]
        if top.size == 0:
            return list(term_ids), [1.0] * len(term_ids)
        share = first[top] / first[top].sum()
        model: dict[int, float] = {}
        for row, s in zip(top.tolist(), share.tolist(), strict=True):
            pairs = self.row_pairs[self.row_ptr[row]:self.row_ptr[row + 1]]
            tf = pairs[:, 1].astype(np.float64)
            for t, p in zip(pairs[:, 0].tolist(), (tf / (tf.sum() or 1.0) * s).tolist(), strict=True):
                model[t] = model.get(t, 0.0) + p
        mixed: dict[int, float] = {}
        for t in term_ids:  # the query's own distribution: repeats weigh more
            mixed[t] = mixed.get(t, 0.0) + original_weight / len(term_ids)
        best = sorted(model.items(), key=lambda kv: (-kv[1], kv[0]))[:fb_terms]
        mass = sum(p for _, p in best) or 1.0  # the kept terms renormalised, as Anserini's RM3 does
        for t, p in best:
            mixed[t] = mixed.get(t, 0.0) + (1 - original_weight) * p / mass
        return list(mixed), list(mixed.values())

    def top(self, term_ids: list[int], k: int, allowed: np.ndarray | None = None, *,
            weights: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, scores)`` of the ``k`` best-scoring rows with a score above 0, best first
        (equal scores: lower row first).

        ``allowed`` is a boolean row mask. Selection is linear in the rows: a strided sample
        of ``sqrt(k * n)`` scores gives a lower bound of the ``k``-th best (the sample's own
        ``k``-th best), only the rows at or above it are partitioned, and the ``k`` survivors
        are sorted. At a million chunks a Cranfield query matches ~60% of the rows, and
        partitioning them all took longer than scoring them (decision 0038).
        """
        sc = self.scores(term_ids, weights)
        if allowed is not None:
            sc[~allowed] = 0
        cand = None
        if k > 0 and sc.size > 64 * k:
            sample = sc[:: max(1, int(sc.size / np.sqrt(k * sc.size)))]
            if sample.size > k:
                floor = np.partition(sample, sample.size - k)[sample.size - k]
                if floor > 0:  # at least k rows score this much: the top k are among them
                    cand = np.flatnonzero(sc >= floor)
        if cand is None:
            # select among the rows that score at all: argpartition over an array of mostly equal
            # zeros (a filter zeroes 93% of 100k rows) took 14 ms of a 6 ms query (decision 0026)
            cand = np.flatnonzero(sc > 0)
        return _select(cand, sc[cand], k)


def _select(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``rows`` (ascending) by ``scores``, best first; equal scores in row
    order, so the same scores always give the same rows, however they were narrowed."""
    if k <= 0:
        return rows[:0], scores[:0]
    if rows.size > k:
        kth = np.partition(scores, scores.size - k)[scores.size - k]
        gt = np.flatnonzero(scores > kth)
        eq = np.flatnonzero(scores == kth)[: k - gt.size]
        sel = np.concatenate([gt, eq])
        rows, scores = rows[sel], scores[sel]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]
