"""The seam between the collection code and where a collection is stored.

:class:`~keel.context.collection.Collection` and :mod:`keel.context.ingest` talk to a
:class:`ContextBackend` only; two implement it:

- :class:`keel.context._embedded.EmbeddedBackend`: SQLite files under
  ``$KEEL_HOME/collections`` (decision 0002);
- :class:`keel.context._postgres.PostgresBackend`: tables in the ``keel_context``
  schema of Keel's PostgreSQL store, dense search by pgvector (decision 0020).

What stays in the engine, the same for both: analysis (:mod:`~keel.context.lexical`),
BM25 scoring (:mod:`~keel.context.bm25`, built in memory from the term counts the
backend stores), fusion, reranking and hits. A backend stores rows, answers filters
in SQL, and offers a dense index (:meth:`ContextBackend.dense_index`): in process
(numpy / hnswlib) or in the database (pgvector).

:func:`open_backend` picks the backend from the store URL (``KEEL_STORE_URL`` or
``store =`` in keel.toml): a ``postgresql://`` URL selects PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from keel.context.filters import Filter

__all__ = ["ChunkRow", "ContextBackend", "DenseSearch", "DocumentRows", "Loaded", "open_backend", "store_url"]


@dataclass
class ChunkRow:
    """One chunk of a document, as stored (JSON fields already encoded)."""

    seq: int
    hash: str
    kind: str
    title: str
    heading_path: str
    anchor: str
    start_line: int
    end_line: int
    symbols: str
    signature: str
    meta: str


@dataclass
class DocumentRows:
    """A document and all its chunks: written (replacing any previous version) in one transaction."""

    abs_path: str
    source: str
    file_hash: str
    size: int
    meta: str
    chunks: list[ChunkRow]
    meta_keys: set[str]
    indexed_at: float | None = None
    """When it was indexed (``None``: now); a copy keeps the original time."""


@dataclass
class Loaded:
    """What the in-memory indexes are built from, at one generation."""

    generation: int
    ids: np.ndarray
    """Chunk ids, ascending; a chunk's position here is its row in the indexes."""
    terms: list[bytes]
    """Packed term counts per row (:func:`keel.context.bm25.pack_terms`)."""
    vectors: np.ndarray | None
    """Row-aligned vectors, or ``None`` when the backend searches vectors itself."""


class DenseSearch(Protocol):
    """A dense index over the rows of one :class:`Loaded` (``DenseIndex`` is one)."""

    n: int

    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...


class ContextBackend(Protocol):
    """Storage of one collection (and the content it shares with the others)."""

    kind: str
    """``"embedded"`` or ``"postgresql"``."""
    name: str

    def close(self) -> None: ...

    # settings and the generation counter
    def get_meta(self, key: str, default: str | None = None) -> str | None: ...
    def set_meta(self, items: Mapping[str, str]) -> None: ...
    def generation(self) -> int: ...

    # ingest: the content-addressed cache, then one transaction per document
    def known_documents(self) -> dict[str, tuple[str, str]]: ...
    def cached_vectors(self, hashes: Sequence[str], model: str) -> dict[str, np.ndarray]: ...
    def put_vectors(self, model: str, items: Sequence[tuple[str, np.ndarray]]) -> None: ...
    def missing_texts(self, hashes: Sequence[str]) -> set[str]: ...
    def put_texts(self, items: Sequence[tuple[str, str, Sequence[str]]], analyzer: str) -> None:
        """Store ``(hash, text, analyzed terms)``: the backend numbers the terms."""
    def missing_terms(self, hashes: Sequence[str], analyzer: str) -> set[str]:
        """Hashes of stored texts with no terms under ``analyzer`` (stored by another analyzer)."""
    def put_terms(self, items: Sequence[tuple[str, Sequence[str]]], analyzer: str) -> None:
        """Store ``(hash, analyzed terms)`` for texts already stored, keyed by hash and ``analyzer``."""
    def stale_chunks(self, analyzer: str, limit: int | None = None) -> list[tuple[str, str, str, str, str]]:
        """``(hash, text, title, heading_path, signature)`` of chunks with no terms under ``analyzer``."""
    def count_stale(self, analyzer: str) -> int:
        """How many distinct texts :meth:`stale_chunks` would return."""
    def replace_document(self, doc: DocumentRows, model: str) -> None: ...
    def remove_documents(self, keys: Sequence[str], *, sources: bool) -> int:
        """Remove by ``abs_path`` (or by ``source`` or ``abs_path`` when ``sources``)."""

    # search
    def load(self, model: str, dim: int, analyzer: str) -> Loaded:
        """Rows with their terms under ``analyzer`` (empty for a text not analysed by it)."""
    def dense_index(self, loaded: Loaded, model: str, dim: int, *, hnsw_min: int) -> DenseSearch: ...

    def snapshot_dir(self) -> Path | None:
        """Where this collection's index snapshots live (:mod:`keel.context.snapshot`), or ``None``."""
        ...
    def lookup_terms(self, terms: Sequence[str]) -> dict[str, int]: ...
    def filter_rows(self, where: Filter | None, *, with_text: bool) -> list[tuple[Any, ...]]:
        """``(chunk id[, text])`` of chunks passing ``where``; a bad filter raises a UserError."""
    def hit_rows(self, ids: Sequence[int]) -> list[tuple[Any, ...]]:
        """``(id, text, source, anchor, start_line, end_line, title, heading_path, kind, symbols,
        signature, meta, hash)`` per chunk id still present."""

    # housekeeping
    def counts(self) -> tuple[int, dict[str, int]]: ...
    def sizes(self) -> tuple[int, int, int]:
        """``(bytes own, bytes hard-linked with forks, bytes of the shared content)``."""
    def sources(self) -> list[str]: ...
    def documents(self) -> list[DocumentRows]:
        """Every document with its chunks (for copies)."""
    def chunk_texts(self) -> list[tuple[str, str, str, str, str, str]]:
        """``(hash, text, source, anchor, title, heading_path)`` of every chunk, in ingest order."""
    def fork(self, name: str) -> None: ...
    def drop(self) -> None: ...


def store_url() -> str | None:
    """The configured store URL (``KEEL_STORE_URL``, else ``store`` in the settings), if any."""
    url = os.environ.get("KEEL_STORE_URL")
    if url:
        return url
    if os.environ.get("KEEL_HOME") and not Path("keel.toml").exists() and not Path(".env").exists():
        return None  # nothing else can set it: skip loading the settings (pydantic) on the CLI path
    try:
        from keel.config import get_settings

        return getattr(get_settings(), "store", None) or None
    except Exception:  # a bad keel.toml is reported by whoever loads it for real
        return None


def is_postgres(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0] in ("postgresql", "postgres")


def open_backend(name: str, *, home: Path | None, create: bool, url: str | None = None) -> ContextBackend | None:
    """The backend holding ``name``, or ``None`` when it does not exist and ``create`` is false."""
    url = url if url is not None else store_url()
    if is_postgres(url):
        from keel.context._postgres import PostgresBackend

        return PostgresBackend.open(url, name, create=create)  # type: ignore[arg-type]
    from keel.context._embedded import EmbeddedBackend

    return EmbeddedBackend.open(name, home=home, create=create)


def list_names(*, home: Path | None, url: str | None = None) -> list[str]:
    url = url if url is not None else store_url()
    if is_postgres(url):
        from keel.context._postgres import list_pg_collections

        return list_pg_collections(url)  # type: ignore[arg-type]
    from keel.context._embedded import list_embedded

    return list_embedded(home)
