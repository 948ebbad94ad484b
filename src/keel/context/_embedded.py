"""The embedded context backend: SQLite files under ``$KEEL_HOME/collections``.

The layout and its reasons are in :mod:`keel.context._store` and
docs/decisions/0002-context-storage.md; this module is the SQL the collection code
used to hold, behind :class:`keel.context._backend.ContextBackend`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keel.context._backend import ChunkRow, DenseSearch, DocumentRows, Loaded
from keel.context._store import MMAP_BYTES, CollectionDB, SharedChunks, collections_root
from keel.context.bm25 import pack_terms
from keel.context.dense import DenseIndex
from keel.context.filters import BUILTIN_FIELDS, Filter, compile_filter
from keel.errors import UserError

__all__ = ["EmbeddedBackend", "list_embedded"]

_HIT_COLUMNS = ("c.id, t.text, d.source, c.anchor, c.start_line, c.end_line, c.title, c.heading_path,"
                " c.kind, c.symbols, c.signature, c.meta, c.hash")


def list_embedded(home: Path | None) -> list[str]:
    root = collections_root(home)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "collection.db").is_file())


def _dir_size(path: Path, *, linked: bool | None = None) -> int:
    """Bytes of the files under ``path``; ``linked`` True/False counts only files that
    are / are not hard-linked elsewhere (a fork's index files share their parent's)."""
    if not path.exists():
        return 0
    total = 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            if linked is None or (st.st_nlink > 1) == linked:
                total += st.st_size
    return total


class EmbeddedBackend:
    """One collection's SQLite file, with the home's shared content file attached."""

    kind = "embedded"

    def __init__(self, name: str, directory: Path, db: CollectionDB, shared: SharedChunks) -> None:
        self.name = name
        self.directory = directory
        self.db = db
        self.shared = shared

    @classmethod
    def open(cls, name: str, *, home: Path | None, create: bool) -> EmbeddedBackend | None:
        root = collections_root(home)
        directory = root / name
        if not (directory / "collection.db").is_file() and not create:
            return None
        shared = SharedChunks(root)
        db = CollectionDB(directory)
        db.conn.execute("ATTACH DATABASE ? AS shared", (str(shared.path),))
        db.conn.execute(f"PRAGMA shared.mmap_size={MMAP_BYTES}")
        return cls(name, directory, db, shared)

    def close(self) -> None:
        self.db.close()
        self.shared.close()

    # -- settings ----------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        return self.db.get_meta(key, default)

    def set_meta(self, items: Mapping[str, str]) -> None:
        with self.db.write() as c:
            for k, v in items.items():
                self.db.set_meta(c, k, v)

    def generation(self) -> int:
        return self.db.generation()

    # -- ingest --------------------------------------------------------------------------

    def known_documents(self) -> dict[str, tuple[str, str]]:
        return {r[0]: (r[1], r[2]) for r in self.db.query("SELECT abs_path, file_hash, meta FROM documents")}

    def cached_vectors(self, hashes: Sequence[str], model: str) -> dict[str, np.ndarray]:
        return self.shared.cached_vectors(hashes, model)

    def put_vectors(self, model: str, items: Sequence[tuple[str, np.ndarray]]) -> None:
        with self.shared.write() as c:
            c.executemany("INSERT OR IGNORE INTO vectors (hash, model, vec) VALUES (?, ?, ?)",
                          [(h, model, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for h, v in items])

    def missing_texts(self, hashes: Sequence[str]) -> set[str]:
        return self.shared.missing_texts(hashes)

    def put_texts(self, items: Sequence[tuple[str, str, Sequence[str]]], analyzer: str) -> None:
        with self.shared.write() as c:
            ids = self.shared.term_ids(c, [t for _, _, terms in items for t in terms])
            rows = [(h, text, pack_terms(count_terms(terms, ids)), analyzer) for h, text, terms in items]
            c.executemany("INSERT OR IGNORE INTO texts (hash, text, terms, analyzer) VALUES (?, ?, ?, ?)", rows)

    def missing_terms(self, hashes: Sequence[str], analyzer: str) -> set[str]:
        """Hashes of stored texts that have no terms under ``analyzer`` (stored by another one)."""
        out: set[str] = set()
        for i in range(0, len(hashes), 500):
            part = list(hashes[i : i + 500])
            out.update(r[0] for r in self.shared.query(
                f"SELECT t.hash FROM texts t LEFT JOIN terms m ON m.hash = t.hash AND m.analyzer = ?"
                f" WHERE t.hash IN ({','.join('?' * len(part))}) AND t.analyzer != ? AND m.hash IS NULL",
                [analyzer, *part, analyzer]))
        return out

    def put_terms(self, items: Sequence[tuple[str, Sequence[str]]], analyzer: str) -> None:
        """Store ``(hash, analyzed terms)`` of texts already stored, under ``analyzer``."""
        with self.shared.write() as c:
            ids = self.shared.term_ids(c, [t for _, terms in items for t in terms])
            c.executemany("INSERT OR IGNORE INTO terms (hash, analyzer, terms) VALUES (?, ?, ?)",
                          [(h, analyzer, pack_terms(count_terms(terms, ids))) for h, terms in items])

    _STALE = (" FROM chunks c JOIN shared.texts t ON t.hash = c.hash"
              " LEFT JOIN shared.terms m ON m.hash = c.hash AND m.analyzer = ? WHERE t.analyzer != ? AND m.hash IS NULL")

    def stale_chunks(self, analyzer: str, limit: int | None = None) -> list[tuple[str, str, str, str, str]]:
        """``(hash, text, title, heading_path, signature)``, one per hash, of this collection's chunks
        whose text has no terms under ``analyzer`` (the first ``limit`` chunks' when given)."""
        rows = self.db.query("SELECT c.hash, t.text, c.title, c.heading_path, c.signature" + self._STALE
                             + " ORDER BY c.id" + (f" LIMIT {int(limit)}" if limit else ""), (analyzer, analyzer))
        return list({r[0]: r for r in rows}.values())

    def count_stale(self, analyzer: str) -> int:
        """How many distinct texts :meth:`stale_chunks` would return."""
        return int(self.db.query("SELECT COUNT(DISTINCT c.hash)" + self._STALE, (analyzer, analyzer))[0][0])

    def replace_document(self, doc: DocumentRows, model: str) -> None:
        self.replace_documents([doc], model)

    def replace_documents(self, docs: Sequence[DocumentRows], model: str) -> None:
        """Replace several documents in one transaction (an ingest batch): all of them or none.

        One commit per batch instead of per document: per-document commits were 40% of
        ingest time with vectors given (decision 0038)."""
        with self.db.write() as c:
            for doc in docs:
                self._write_document(c, doc)
            self.db.bump(c)

    def _write_document(self, c: sqlite3.Connection, doc: DocumentRows) -> None:
        c.execute("DELETE FROM documents WHERE abs_path = ?", (doc.abs_path,))
        doc_id = c.execute(
            "INSERT INTO documents (source, abs_path, file_hash, size, indexed_at, meta) VALUES (?, ?, ?, ?, ?, ?)",
            (doc.source, doc.abs_path, doc.file_hash, doc.size,
             time.time() if doc.indexed_at is None else doc.indexed_at, doc.meta)).lastrowid
        c.executemany(
            "INSERT INTO chunks (doc_id, seq, hash, kind, title, heading_path, anchor, start_line, end_line,"
            " symbols, signature, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(doc_id, r.seq, r.hash, r.kind, r.title, r.heading_path, r.anchor, r.start_line, r.end_line,
              r.symbols, r.signature, r.meta) for r in doc.chunks])
        self.db.add_meta_keys(c, doc.meta_keys)

    def remove_documents(self, keys: Sequence[str], *, sources: bool) -> int:
        n = 0
        with self.db.write() as c:
            for k in keys:
                if sources:
                    n += c.execute("DELETE FROM documents WHERE source = ? OR abs_path = ?", (k, k)).rowcount
                else:
                    n += c.execute("DELETE FROM documents WHERE abs_path = ?", (k,)).rowcount
            if n:
                self.db.bump(c)
        return n

    # -- search --------------------------------------------------------------------------

    def load(self, model: str, dim: int, analyzer: str) -> Loaded:
        with self.db.snapshot() as c:
            gen = int(c.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            # a text's terms under the collection's analyzer: stored with the text, or in `terms`
            rows = c.execute(
                "SELECT c.id, CASE WHEN t.analyzer = ? THEN t.terms ELSE m.terms END, v.vec"
                " FROM chunks c JOIN shared.texts t ON t.hash = c.hash"
                " LEFT JOIN shared.terms m ON m.hash = c.hash AND m.analyzer = ?"
                " LEFT JOIN shared.vectors v ON v.hash = c.hash AND v.model = ? ORDER BY c.id",
                (analyzer, analyzer, model),
            ).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        zero = bytes(4 * dim)
        vecs = np.frombuffer(b"".join(r[2] or zero for r in rows), dtype=np.float32).reshape(len(rows), dim) \
            if rows else np.zeros((0, 1), dtype=np.float32)
        return Loaded(gen, ids, [r[1] or b"" for r in rows], vecs)

    def dense_index(self, loaded: Loaded, model: str, dim: int, *, hnsw_min: int) -> DenseSearch:
        assert loaded.vectors is not None
        return DenseIndex(loaded.vectors, cache_dir=self.directory / "index", tag=f"{loaded.generation}:{model}",
                          hnsw_min=hnsw_min)

    def snapshot_dir(self) -> Path | None:
        return self.directory / "index"

    def lookup_terms(self, terms: Sequence[str]) -> dict[str, int]:
        return self.shared.lookup_terms(terms)

    def filter_rows(self, where: Filter | None, *, with_text: bool) -> list[tuple[Any, ...]]:
        sql = "SELECT c.id" + (", t.text" if with_text else "") + " FROM chunks c JOIN documents d ON d.id = c.doc_id"
        if with_text:
            sql += " JOIN shared.texts t ON t.hash = c.hash"
        params: list[Any] = []
        if where is not None:
            cond, params = compile_filter(where, self.db.meta_keys())
            sql += f" WHERE {cond}"
        try:
            return self.db.query(sql, params)
        except sqlite3.Error as e:
            raise UserError(f"filter failed: {e}", hint="check the --where values") from None

    def filter_column(self, field: str) -> list[tuple[int, Any]] | None:
        """``(chunk id, value)`` of one scalar filter field for every chunk (by id), for
        :class:`keel.context.filter_index.FilterIndex`; ``None`` for a field SQL must handle."""
        if field in BUILTIN_FIELDS:
            expr, params = BUILTIN_FIELDS[field], []
        elif field in self.db.meta_keys():
            expr, params = "json_extract(c.meta, ?)", [f'$."{field}"']
        else:
            return None  # unknown here: the SQL path names it in its error
        return self.db.query(f"SELECT c.id, {expr} FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.id",
                             params)

    def hit_rows(self, ids: Sequence[int]) -> list[tuple[Any, ...]]:
        marks = ",".join("?" * len(ids))
        return self.db.query(
            f"SELECT {_HIT_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.doc_id"
            f" JOIN shared.texts t ON t.hash = c.hash WHERE c.id IN ({marks})", list(ids))

    # -- housekeeping ------------------------------------------------------------------

    def counts(self) -> tuple[int, dict[str, int]]:
        docs = self.db.query("SELECT COUNT(*) FROM documents")[0][0]
        return docs, dict(self.db.query("SELECT kind, COUNT(*) FROM chunks GROUP BY kind ORDER BY 2 DESC"))

    def sizes(self) -> tuple[int, int, int]:
        return (_dir_size(self.directory, linked=False), _dir_size(self.directory, linked=True),
                _dir_size(self.shared.path.parent))

    def sources(self) -> list[str]:
        return [r[0] for r in self.db.query("SELECT source FROM documents ORDER BY source")]

    def documents(self) -> list[DocumentRows]:
        docs: dict[int, DocumentRows] = {}
        for did, source, abs_path, fh, size, at, meta in self.db.query(
                "SELECT id, source, abs_path, file_hash, size, indexed_at, meta FROM documents ORDER BY id"):
            docs[did] = DocumentRows(abs_path, source, fh, size, meta, [], set(json.loads(meta)), at)
        for row in self.db.query(
                "SELECT doc_id, seq, hash, kind, title, heading_path, anchor, start_line, end_line, symbols,"
                " signature, meta FROM chunks ORDER BY id"):
            d = docs[row[0]]
            d.chunks.append(ChunkRow(*row[1:]))
            d.meta_keys.update(json.loads(row[11]))
        return list(docs.values())

    def chunk_texts(self) -> list[tuple[str, str, str, str, str, str]]:
        return self.db.query(
            "SELECT c.hash, t.text, d.source, c.anchor, c.title, c.heading_path FROM chunks c"
            " JOIN documents d ON d.id = c.doc_id JOIN shared.texts t ON t.hash = c.hash ORDER BY c.id")

    def fork(self, name: str) -> None:
        """Copy the collection file (SQLite's online backup, consistent even while another
        process writes) and hard-link the derived index files."""
        target = self.directory.parent / name
        if target.exists():
            raise UserError(f"collection {name!r} already exists", hint="pick another name for the fork")
        tmp = self.directory.parent / f".{name}.forking{os.getpid()}"
        tmp.mkdir(parents=True)
        try:
            dst = sqlite3.connect(tmp / "collection.db")
            with self.db.lock:
                self.db.conn.backup(dst, name="main")
            dst.execute("PRAGMA journal_mode=WAL")
            dst.execute("INSERT INTO meta VALUES ('parent', ?) ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                        (self.name,))
            dst.execute("INSERT INTO meta VALUES ('created_at', ?) ON CONFLICT (key) DO UPDATE SET"
                        " value=excluded.value", (str(time.time()),))
            dst.commit()
            dst.close()
            src_index = self.directory / "index"
            if src_index.is_dir():
                (tmp / "index").mkdir()
                for f in src_index.iterdir():
                    if f.is_file() and ".tmp" not in f.name:
                        try:
                            os.link(f, tmp / "index" / f.name)
                        except OSError:
                            shutil.copy2(f, tmp / "index" / f.name)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def drop(self) -> None:
        self.close()
        shutil.rmtree(self.directory)


def count_terms(terms: Sequence[str], ids: Mapping[str, int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for t in terms:
        counts[ids[t]] = counts.get(ids[t], 0) + 1
    return counts
