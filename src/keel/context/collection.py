"""A collection: a named, persistent, searchable set of chunks.

>>> from keel.context import Collection
>>> docs = Collection.open("docs")            # created on first use, in KEEL_HOME
>>> docs.add(["./handbook"])                   # incremental: unchanged files cost nothing
>>> hits = docs.search("how do I rotate keys?", where={"kind": "markdown"}, k=10)
>>> hits[0].citation                           # handbook/security.md#rotation (lines 40-58)

Search runs a hybrid first stage (dense + BM25 over the rows allowed by the
metadata filter and regex), fuses the rankings into a candidate pool (200 by
default) with the collection's :class:`~keel.context.fusion.Fusion` (an even convex
combination of normalised scores unless ``keel context tune`` stored another),
optionally reranks, and returns the top ``k``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from keel.context import snapshot
from keel.context._backend import ContextBackend, Loaded, list_names, open_backend
from keel.context._store import CollectionNotFoundError, validate_name
from keel.context.bm25 import DEFAULT_K1, BM25Index
from keel.context.dense import HNSW_MIN
from keel.context.embedders import DEFAULT_EMBEDDER, Embedder, get_embedder
from keel.context.filter_index import FilterIndex
from keel.context.filters import Filter
from keel.context.fusion import DEFAULT_FUSION, DENSE_FEEDBACK_WEIGHT, Fusion, fuse, smooth
from keel.context.lexical import ANALYZER, analyze, is_stemmed
from keel.context.types import Citation, Hit, IngestReport
from keel.context.userregex import RegexError, compile_regex, count_matches
from keel.errors import UserError

if TYPE_CHECKING:
    from keel.context._backend import DenseSearch
    from keel.context.rerank import Reranker

__all__ = ["DEFAULT_POOL", "Collection", "CollectionStats", "RegexError", "SearchMode", "list_collections"]

SearchMode = Literal["dense", "bm25", "hybrid"]
DEFAULT_POOL = 200
_MODES = ("dense", "bm25", "hybrid")


@dataclass
class CollectionStats:
    """What ``keel context stats`` shows."""

    name: str
    documents: int
    chunks: int
    kinds: dict[str, int]
    embedder: str
    generation: int
    bytes_collection: int
    """Bytes only this collection holds (its SQLite file, and index files no fork shares)."""
    bytes_shared: int
    """Size of the content store shared by every collection in this home."""
    parent: str | None = None
    """The collection this one was forked from, if any."""
    created_at: float = 0.0
    bytes_linked: int = 0
    """Index files hard-linked with a fork or parent: on disk once, however many collections use them."""
    backend: str = "embedded"
    """Where the collection is stored: ``embedded`` (SQLite files) or ``postgresql``."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Indexes:
    generation: int
    ids: np.ndarray  # row -> chunk id
    bm25: BM25Index
    dense: DenseSearch

    def rows_of(self, cids: Sequence[int]) -> list[int | None]:
        """The row of each chunk id (``None``: not in this generation); ids are ascending."""
        if not cids or not self.ids.size:
            return [None] * len(cids)
        want = np.asarray(cids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, want), self.ids.size - 1)
        return [int(p) if ok else None for p, ok in zip(pos.tolist(), (self.ids[pos] == want).tolist(), strict=True)]


def _same_vectors(spec: str, recorded: str) -> bool:
    """Whether the embedder string ``spec`` gives the vectors of the embedder named ``recorded``
    (``minilm-onnx`` opens a ``minilm`` collection: another runtime, the same vectors)."""
    from keel.context.embedders import MiniLMEmbedder

    minilm = {"minilm": MiniLMEmbedder.NAME, "minilm-onnx": MiniLMEmbedder.NAME,
              "local:all-MiniLM-L6-v2": MiniLMEmbedder.NAME, "minilm-int8": MiniLMEmbedder.INT8_NAME,
              "minilm-int8v2": MiniLMEmbedder.INT8V2_NAME}
    return minilm.get(spec.strip()) == recorded


def _rows_mask(ids: np.ndarray, cids: np.ndarray) -> np.ndarray:
    """Boolean mask over the rows of ``ids`` (ascending chunk ids) for the chunk ids ``cids``."""
    mask = np.zeros(len(ids), dtype=bool)
    if len(ids) and len(cids):
        pos = np.searchsorted(ids, cids)
        ok = pos < len(ids)
        ok[ok] = ids[pos[ok]] == cids[ok]
        mask[pos[ok]] = True
    return mask


def _loads(text: str) -> Any:
    """``json.loads``, without the parser for the empty list and object most hits carry
    (three per hit: a tenth of a 100-hit search at 100k chunks went to them; decision 0038)."""
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return json.loads(text)


def list_collections(home: Path | None = None, *, store: str | None = None) -> list[str]:
    """Names of the collections in the configured store (or ``store``, a store URL)."""
    return list_names(home=home, url=store)


class Collection:
    """A named collection, in ``$KEEL_HOME/collections/`` or in the PostgreSQL store.
    Open with :meth:`open`."""

    hnsw_min: int = HNSW_MIN
    """Chunk count from which dense search uses the HNSW graph instead of exact search."""
    snapshot_min: int = snapshot.SNAPSHOT_MIN
    """Chunk count from which a build saves its index arrays for the next open (decision 0045)."""

    def __init__(self, name: str, backend: ContextBackend, embedder: Embedder, *,
                 home: Path | None = None, store: str | None = None) -> None:
        self.name = name
        self.backend = backend
        self.embedder = embedder
        self._home = home
        self._store = store
        self._indexes: _Indexes | None = None
        self._filters: tuple[int, FilterIndex] | None = None
        self._fusion: Fusion | None = None

    @property
    def db(self):  # the embedded backend's SQLite file (tests and tools that inspect it)
        return self.backend.db  # type: ignore[attr-defined]

    @property
    def directory(self) -> Path:
        return self.backend.directory  # type: ignore[attr-defined]

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, name: str, *, home: Path | None = None, create: bool = True,
             embedder: str | Embedder | None = None, store: str | None = None) -> Collection:
        """Open ``name``, creating it when ``create`` (the embedder is fixed at creation).

        ``embedder`` may be an embedder string (see :mod:`keel.context.embedders`) or
        an object; when omitted, the collection's recorded embedder is used. ``store``
        is a store URL (default: ``KEEL_STORE_URL`` or ``store`` in keel.toml); a
        ``postgresql://`` URL keeps the collection in PostgreSQL.
        """
        validate_name(name)
        db = open_backend(name, home=home, create=create, url=store)
        if db is None:
            existing = list_collections(home, store=store)
            raise CollectionNotFoundError(
                f"no collection named {name!r}",
                hint=f"create it with `keel context add {name} PATH...`"
                + (f"; existing: {', '.join(existing)}" if existing else ""),
            )
        recorded = db.get_meta("embedder")
        analyzer = db.get_meta("analyzer")
        if analyzer is not None and analyzer != ANALYZER:
            if is_stemmed(analyzer) and not is_stemmed(ANALYZER):
                db.close()
                raise UserError(
                    f"collection {name!r} was indexed with the {analyzer!r} analyzer; this process has {ANALYZER!r}",
                    hint="install PyStemmer (pip install 'keel[context]') or re-create the collection",
                )
            # an older Keel's analyzer (or an unstemmed one): terms under ours, old terms kept (decision 0034)
            from keel.context.reanalyze import reanalyze

            try:
                reanalyze(db, name)
            except BaseException:
                db.close()
                raise
        emb_obj = embedder if embedder is not None and not isinstance(embedder, str) else None
        wanted = embedder.name if emb_obj is not None else embedder  # type: ignore[union-attr]
        if recorded is None:
            spec = wanted or DEFAULT_EMBEDDER
            emb = emb_obj or get_embedder(spec)
            db.set_meta({"embedder": emb.name, "embedder_spec": spec if isinstance(spec, str) else emb.name,
                         "analyzer": ANALYZER})
        else:
            if wanted is not None and wanted not in (recorded, db.get_meta("embedder_spec")) \
                    and not _same_vectors(wanted, recorded):
                db.close()
                raise UserError(
                    f"collection {name!r} uses the embedder {recorded!r}, not {wanted!r}",
                    hint="omit --embedder, or fork/re-create the collection to change embedders",
                )
            emb = emb_obj or get_embedder(wanted if wanted is not None and _same_vectors(wanted, recorded)
                                          else db.get_meta("embedder_spec") or recorded)
        return cls(name, db, emb, home=home, store=store)

    def close(self) -> None:
        self.backend.close()

    @property
    def fusion(self) -> Fusion:
        """How hybrid search fuses dense and BM25 here: stored by ``keel context tune``, else the default.

        Read once per index load (another process's ``tune`` is seen after the next write
        or when the collection is reopened), so a search costs no extra round trip."""
        if self._fusion is None:
            self._fusion = Fusion.from_json(self.backend.get_meta("fusion"))
        return self._fusion

    def set_fusion(self, fusion: Fusion | None) -> None:
        """Store ``fusion`` for this collection (``None``: back to the default)."""
        self.backend.set_meta({"fusion": (fusion or DEFAULT_FUSION).to_json()})
        self._fusion = fusion or DEFAULT_FUSION

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------

    def add(self, paths: Iterable[str | os.PathLike[str]], *, metadata: Mapping[str, Any] | None = None,
            progress: bool | str = False, max_bytes: int | None = None, follow_symlinks: bool = False) -> IngestReport:
        """Ingest files and directories (see :mod:`keel.context.ingest`)."""
        from keel.context.ingest import ingest_paths

        return ingest_paths(self, [Path(p) for p in paths], metadata=dict(metadata or {}),
                            progress=progress, max_bytes=max_bytes, follow_symlinks=follow_symlinks)

    def add_records(self, records: Sequence[tuple[str, str, str, Mapping[str, Any]]], *,
                    progress: bool = False) -> IngestReport:
        """Ingest ``(id, title, text, metadata)`` records, one chunk each (test collections, rows)."""
        from keel.context.ingest import ingest_records

        return ingest_records(self, records, progress=progress)

    def remove(self, sources: Iterable[str]) -> int:
        """Remove documents by source path; returns how many were removed."""
        return self.backend.remove_documents(list(sources), sources=True)

    # -- indexes ---------------------------------------------------------------------

    def _load(self) -> _Indexes:
        gen = self.backend.generation()
        if self._indexes is not None and self._indexes.generation == gen:
            return self._indexes
        self._fusion = None
        folder = self.backend.snapshot_dir()
        snap = None
        if folder is not None:
            snap = snapshot.load(folder, snapshot.tag(gen, self.embedder.name, ANALYZER, DEFAULT_K1, 0.75))
        if snap is not None:  # the arrays of an earlier build, memory-mapped (decision 0045)
            loaded = Loaded(gen, snap.ids, [], snap.vectors)
            bm25 = snap.bm25
        else:
            loaded = self.backend.load(self.embedder.name, self.embedder.dim, ANALYZER)
            bm25 = BM25Index(loaded.terms)
            loaded.terms = []  # the rows' bytes: BM25 holds what it needs
            if folder is not None and loaded.ids.size >= self.snapshot_min:
                snapshot.save(folder, snapshot.tag(loaded.generation, self.embedder.name, ANALYZER, DEFAULT_K1, 0.75),
                              loaded.ids, loaded.vectors, bm25)
        dense = self.backend.dense_index(loaded, self.embedder.name, self.embedder.dim, hnsw_min=self.hnsw_min)
        self._indexes = _Indexes(loaded.generation, loaded.ids, bm25, dense)
        return self._indexes

    def _allowed(self, idx: _Indexes, where: Filter | None, regex: str | None) -> tuple[np.ndarray | None,
                                                                                          dict[int, int]]:
        """Row mask for the filter and regex (``None`` = all rows), and regex match counts."""
        if where is None and regex is None:
            return None, {}
        if regex is None and where is not None:  # a bitmap from the per-field indexes, when they can answer
            fmask = self._filter_index(idx).mask(where)
            if fmask is not None:
                return fmask, {}
        pattern = compile_regex(regex) if regex is not None else None
        rows = self.backend.filter_rows(where, with_text=pattern is not None)
        counts: dict[int, int] = {}
        if pattern is not None:  # within a time budget: a catastrophic pattern is refused, not run for ever
            counts = dict(count_matches(pattern, ((r[0], r[1]) for r in rows)))
        cids = np.fromiter(counts if pattern is not None else (r[0] for r in rows), dtype=np.int64)
        return _rows_mask(idx.ids, cids), counts

    def _filter_index(self, idx: _Indexes) -> FilterIndex:
        """The per-field filter indexes of this generation (:mod:`keel.context.filter_index`)."""
        if self._filters is None or self._filters[0] != idx.generation:
            read = getattr(self.backend, "filter_column", None)

            def column(field: str) -> list[Any] | None:
                pairs = read(field) if read is not None else None
                if pairs is None:
                    return None
                values: list[Any] = [None] * len(idx.ids)
                if not pairs or not len(idx.ids):
                    return values
                cids = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
                pos = np.searchsorted(idx.ids, cids)
                for j in np.flatnonzero((pos < len(idx.ids)) & (idx.ids[np.minimum(pos, len(idx.ids) - 1)] == cids)):
                    values[pos[j]] = pairs[j][1]
                return values

            self._filters = (idx.generation, FilterIndex(len(idx.ids), column, string_order=getattr(
                self.backend, "filter_string_order", True)))
        return self._filters[1]

    # -- searching -------------------------------------------------------------------

    def search(self, query: str, *, mode: SearchMode = "hybrid", k: int = 10, where: Filter | None = None,
               regex: str | None = None, pool: int = DEFAULT_POOL, weights: Mapping[str, float] | None = None,
               rerank: Reranker | str | None = None, rerank_depth: int | None = None,
               query_vector: np.ndarray | None = None, fusion: Fusion | None = None) -> list[Hit]:
        """The top ``k`` chunks for ``query``.

        ``mode`` picks the first-stage signals; ``where`` is a metadata filter
        (:mod:`keel.context.filters`); ``regex`` keeps only chunks that match it
        (and, with an empty query, ranks them by match count). ``pool`` is the
        candidate pool size after fusion; ``weights`` weighs the fused signals
        (``{"dense": ..., "bm25": ...}``; by default the fusion's own split). ``fusion`` overrides the
        collection's stored :attr:`fusion` (method, dense share, RM3 feedback). ``rerank`` is a
        :class:`~keel.context.rerank.Reranker` or a model string for the LLM
        reranker; it sees the top ``rerank_depth`` candidates (default: its own).
        """
        if mode not in _MODES:
            raise UserError(f"unknown search mode {mode!r}", hint=f"use one of {', '.join(_MODES)}")
        if k < 1 or pool < 1:
            raise UserError("k and pool must be at least 1")
        idx = self._load()
        allowed, regex_counts = self._allowed(idx, where, regex)
        pool = max(pool, k)
        fusion = fusion or self.fusion
        rankings: dict[str, list[int]] = {}
        scores: dict[str, dict[int, float]] = {}
        if query.strip():
            if mode in ("dense", "hybrid") and idx.dense.n:
                qv = query_vector if query_vector is not None else self.embedder.embed([query])[0]
                rows, sc = idx.dense.search(qv, pool, allowed)
                rankings["dense"] = [int(r) for r in rows]
                scores["dense"] = dict(zip(rankings["dense"], map(float, sc), strict=True))
            if mode in ("bm25", "hybrid"):
                words = analyze(query)
                known = self.backend.lookup_terms(list(dict.fromkeys(words)))
                # repeats count (query term frequency, as Lucene and bm25s score it)
                term_ids = [known[w] for w in words if w in known]
                qweights = None
                if fusion.feedback:
                    term_ids, qweights = idx.bm25.expand(term_ids)
                top, sc = idx.bm25.top(term_ids, pool, allowed, weights=qweights)
                rankings["bm25"] = top.tolist()
                scores["bm25"] = dict(zip(rankings["bm25"], sc.tolist(), strict=True))
        elif regex_counts:
            order = sorted(regex_counts.items(), key=lambda kv: -kv[1])[:pool]
            found = idx.rows_of([cid for cid, _ in order])
            rankings["regex"] = [r for r in found if r is not None]
            scores["regex"] = {r: float(n) for r, (_, n) in zip(found, order, strict=True) if r is not None}
        if len(rankings) == 1:
            name, ranking = next(iter(rankings.items()))
            fused = [(r, scores[name][r]) for r in ranking]
        else:
            fused = fuse(fusion, rankings, scores, weights=weights)[:pool]
            if fusion.dense_feedback and "dense" in rankings and fused:
                # Rocchio on the dense query from the fused ranking's top rows, then fuse again
                fb = self._row_vectors(idx, [r for r, _ in fused[: fusion.dense_feedback]])
                if fb is not None:
                    q2 = np.asarray(qv, dtype=np.float32) + DENSE_FEEDBACK_WEIGHT * fb.mean(axis=0)
                    q2 /= float(np.linalg.norm(q2)) or 1.0
                    rows, sc = idx.dense.search(q2, pool, allowed)
                    rankings["dense"] = [int(r) for r in rows]
                    scores["dense"] = dict(zip(rankings["dense"], map(float, sc), strict=True))
                    fused = fuse(fusion, rankings, scores, weights=weights)[:pool]
            if fusion.neighbours and fused:
                # the cluster hypothesis over every fused candidate, then the pool (decision 0044)
                every = fuse(fusion, rankings, scores, weights=weights)
                vecs = self._row_vectors(idx, [r for r, _ in every])
                if vecs is not None and len(vecs) == len(every):
                    fused = smooth(every, vecs, fusion.neighbours)[:pool]
        depth = len(fused) if rerank is None else (rerank_depth or getattr(rerank, "depth", 50))
        hits = self._hits(idx, fused[: max(k, depth) if rerank is not None else k], rankings, scores,
                          fusion.method)
        if rerank is not None:
            from keel.context.rerank import get_reranker

            reranker = get_reranker(rerank) if isinstance(rerank, str) else rerank
            # candidates beyond the reranker's depth keep their first-stage order after it
            hits = reranker.rerank(query, hits[:depth]) + hits[depth:]
        return hits[:k]

    def _row_vectors(self, idx: _Indexes, rows: list[int]) -> np.ndarray | None:
        """Vectors of index ``rows``: from the in-process index, else from the store (pgvector)."""
        vectors = getattr(idx.dense, "vectors", None)
        if vectors is not None and len(vectors) == len(idx.ids):
            return np.asarray(vectors[rows], dtype=np.float32)
        hashes = {r[0]: r[12] for r in self.backend.hit_rows([int(idx.ids[r]) for r in rows])}
        cached = self.backend.cached_vectors(list(set(hashes.values())), self.embedder.name)
        found = [cached[hashes[int(idx.ids[r])]] for r in rows if hashes.get(int(idx.ids[r])) in cached]
        return np.stack(found).astype(np.float32) if found else None

    def _hits(self, idx: _Indexes, fused: list[tuple[int, float]], rankings: Mapping[str, list[int]],
              scores: Mapping[str, Mapping[int, float]], method: str = "rrf") -> list[Hit]:
        if not fused:
            return []
        ids = [int(idx.ids[r]) for r, _ in fused]
        rows = self.backend.hit_rows(ids)
        by_id = {r[0]: r for r in rows}
        rank_of = {name: {row: i + 1 for i, row in enumerate(rk)} for name, rk in rankings.items()}
        hits = []
        for row, score in fused:
            cid = int(idx.ids[row])
            r = by_id.get(cid)
            if r is None:  # removed since the index was loaded
                continue
            meta = _loads(r[11])
            meta.update(kind=r[8], symbols=_loads(r[9]), signature=r[10])
            hits.append(Hit(
                chunk_id=cid, text=r[1], score=float(score), hash=r[12],
                citation=Citation(source=r[2], anchor=r[3], start_line=r[4], end_line=r[5], title=r[6],
                                  heading_path=tuple(_loads(r[7]))),
                scores={n: s[row] for n, s in scores.items() if row in s} | (
                    {method: float(score)} if len(rankings) > 1 else {}),
                ranks={n: rk[row] for n, rk in rank_of.items() if row in rk},
                meta=meta,
            ))
        return hits

    # -- housekeeping ----------------------------------------------------------------

    def stats(self) -> CollectionStats:
        docs, kinds = self.backend.counts()
        own, linked, shared = self.backend.sizes()
        return CollectionStats(
            name=self.name, documents=docs, chunks=sum(kinds.values()), kinds=kinds,
            embedder=self.embedder.name, generation=self.backend.generation(),
            bytes_collection=own, bytes_linked=linked, bytes_shared=shared,
            parent=self.backend.get_meta("parent"), created_at=float(self.backend.get_meta("created_at") or 0),
            backend=self.backend.kind,
        )

    def sources(self) -> list[str]:
        return self.backend.sources()

    def chunk_texts(self) -> list[tuple[str, str, str, str, str, str]]:
        """``(hash, text, source, anchor, title, heading_path JSON)`` of every chunk, in ingest order."""
        return self.backend.chunk_texts()

    def fork(self, name: str) -> Collection:
        """A copy-on-write fork named ``name``: a snapshot now, independent afterwards.

        Chunk text, terms and vectors are shared (content-addressed); embedded, only the
        collection file is copied (SQLite's online backup, consistent even while another
        process writes) and the derived index files are hard-linked; in PostgreSQL the
        chunk rows are copied in one transaction.
        """
        validate_name(name)
        self.backend.fork(name)
        return Collection.open(name, home=self._home, create=False, embedder=self.embedder, store=self._store)

    def drop(self) -> None:
        """Delete this collection (its shared chunk content stays for other collections)."""
        self.backend.drop()

