"""On-disk layout of collections (see docs/decisions/0002-context-storage.md)::

    $KEEL_HOME/collections/
        .shared/chunks.db          content-addressed: chunk text, BM25 terms (per analyzer), vectors
        <name>/collection.db       documents and chunk rows (metadata, citations)
        <name>/index/              derived indexes (HNSW); rebuilt from the files above

Both files are SQLite in WAL mode: readers keep a consistent snapshot while one
writer commits, and a ``kill -9`` loses at most the transaction in flight. The
shared file only ever gains rows keyed by content hash, so it is written first
(a crash leaves unreferenced rows, never a dangling reference); a document's
chunk rows commit in one transaction in the collection file, so a document is
either entirely in the index or not at all.

Because chunk content lives in the shared file, a fork copies only the small
collection file and hard-links the derived index files.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from keel.errors import StoreError, UserError

__all__ = ["CollectionDB", "CollectionNotFoundError", "SharedChunks", "collections_root", "validate_name"]

_BUSY_MS = 30_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CollectionNotFoundError(UserError):
    """The named collection does not exist."""


def collections_root(home: Path | None = None) -> Path:
    if home is None:
        env = os.environ.get("KEEL_HOME")
        if env:  # the environment wins over .env and keel.toml: no need to load the settings (pydantic)
            home = Path(env).expanduser()
        else:
            from keel.config import get_settings

            home = get_settings().home
    return Path(home) / "collections"


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise UserError(
            f"invalid collection name {name!r}",
            hint="use letters, digits, '.', '_' or '-' (up to 64 characters), starting with a letter or digit",
        )
    return name


MMAP_BYTES = 1 << 30
"""Pages read through a memory map (up to this much of each file) instead of a ``pread`` each:
fetching a 100-hit search's rows took half the time at 100k chunks (decision 0038)."""


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
    except (sqlite3.DatabaseError, OSError) as e:
        raise StoreError(f"cannot open {path}: {e}",
                         hint="check that KEEL_HOME is writable; move a damaged file aside") from None
    return conn


class _DB:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = _connect(path)
        self.lock = threading.RLock()

    def close(self) -> None:
        self.conn.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction (``BEGIN IMMEDIATE``: take the write lock up front)."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        with self.lock:
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")


class SharedChunks(_DB):
    """The content-addressed file shared by all collections of one home."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / ".shared" / "chunks.db")
        with self.write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS texts (hash TEXT PRIMARY KEY, text TEXT NOT NULL,"
                      " terms BLOB NOT NULL, analyzer TEXT NOT NULL)")
            c.execute("CREATE TABLE IF NOT EXISTS vectors (hash TEXT NOT NULL, model TEXT NOT NULL,"
                      " vec BLOB NOT NULL, PRIMARY KEY (hash, model))")
            c.execute("CREATE TABLE IF NOT EXISTS vocab (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE)")
            # terms of a text under another analyzer than the one it was first stored with
            # (texts.analyzer): a collection re-analysed on open (keel.context.reanalyze) or a
            # text shared with a collection of another analyzer (decision 0034)
            c.execute("CREATE TABLE IF NOT EXISTS terms (hash TEXT NOT NULL, analyzer TEXT NOT NULL,"
                      " terms BLOB NOT NULL, PRIMARY KEY (hash, analyzer))")

    def missing_texts(self, hashes: Sequence[str]) -> set[str]:
        have: set[str] = set()
        for i in range(0, len(hashes), 500):
            part = hashes[i : i + 500]
            rows = self.query(f"SELECT hash FROM texts WHERE hash IN ({','.join('?' * len(part))})", part)
            have.update(r[0] for r in rows)
        return set(hashes) - have

    def cached_vectors(self, hashes: Sequence[str], model: str) -> dict[str, np.ndarray]:
        """The embedding cache: vectors already computed for these hashes with this model."""
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(hashes), 500):
            part = list(hashes[i : i + 500])
            rows = self.query(
                f"SELECT hash, vec FROM vectors WHERE model = ? AND hash IN ({','.join('?' * len(part))})",
                [model, *part])
            out.update((h, np.frombuffer(v, dtype=np.float32)) for h, v in rows)
        return out

    def term_ids(self, c: sqlite3.Connection, terms: Sequence[str]) -> dict[str, int]:
        """Ids of ``terms``, adding new ones (call inside :meth:`write`)."""
        uniq = list(dict.fromkeys(terms))
        c.executemany("INSERT OR IGNORE INTO vocab (term) VALUES (?)", [(t,) for t in uniq])
        out: dict[str, int] = {}
        for i in range(0, len(uniq), 500):
            part = uniq[i : i + 500]
            out.update(c.execute(f"SELECT term, id FROM vocab WHERE term IN ({','.join('?' * len(part))})",
                                 part).fetchall())
        return out

    def lookup_terms(self, terms: Sequence[str]) -> dict[str, int]:
        if not terms:
            return {}
        return dict(self.query(f"SELECT term, id FROM vocab WHERE term IN ({','.join('?' * len(terms))})",
                               list(terms)))


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS documents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        abs_path TEXT NOT NULL UNIQUE,
        file_hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        indexed_at REAL NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}')""",
    """CREATE TABLE IF NOT EXISTS chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        heading_path TEXT NOT NULL,
        anchor TEXT NOT NULL,
        start_line INTEGER NOT NULL,
        end_line INTEGER NOT NULL,
        symbols TEXT NOT NULL,
        signature TEXT NOT NULL,
        meta TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id)",
    "CREATE INDEX IF NOT EXISTS documents_source ON documents (source)",
    "CREATE INDEX IF NOT EXISTS chunks_hash ON chunks (hash)",
    "CREATE TABLE IF NOT EXISTS meta_keys (key TEXT PRIMARY KEY)",
)


class CollectionDB(_DB):
    """One collection's own file: documents, chunk rows, settings, a generation counter."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory / "collection.db")
        with self.write() as c:
            for stmt in _SCHEMA:
                c.execute(stmt)
            c.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            c.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (str(time.time()),))

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_meta(self, c: sqlite3.Connection, key: str, value: str) -> None:
        c.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                  (key, value))

    def generation(self) -> int:
        return int(self.get_meta("generation", "0") or 0)

    def bump(self, c: sqlite3.Connection) -> None:
        """Mark a change; readers compare generations to refresh their in-memory indexes."""
        c.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def meta_keys(self) -> set[str]:
        return {r[0] for r in self.query("SELECT key FROM meta_keys")}

    def add_meta_keys(self, c: sqlite3.Connection, keys: set[str]) -> None:
        c.executemany("INSERT OR IGNORE INTO meta_keys VALUES (?)", [(k,) for k in keys])


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
