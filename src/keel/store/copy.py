"""``keel store copy``: move an embedded store (``keel.db`` and the collections) to PostgreSQL.

Every table of the source store (``keel_migrations`` aside: the target applies its own) is
read in batches and written to the same table of the target, after the target has been
migrated to the same schema. Then each table is verified: the row count, and a checksum
that does not depend on row order (the sum, modulo 2**256, of a SHA-256 per row over its
values normalised by column type: numbers as floats, text as text, bytes as hex), computed
on both sides from what each database returns.

Collections are copied through the context backends (:mod:`keel.context._backend`): the
shared content (texts, with their BM25 term counts re-keyed to the target's vocabulary, and
vectors), then each document with its chunks, then verified by counts and a checksum of
the chunk rows.

A target that already holds Keel rows (or a collection of the same name) is refused unless
``replace`` is given, which empties those tables (and drops those collections) first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import UserError

__all__ = ["CopyReport", "TableCheck", "copy_store", "table_checksum"]

_BATCH = 2000
_SKIP = {"keel_migrations"}
Progress = Callable[[str, int], None]


class CopyRefused(UserError):
    """The target of ``keel store copy`` is not empty (or not PostgreSQL)."""


@dataclass
class TableCheck:
    """One table (or collection) after the copy: counts and checksums on both sides."""

    name: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass
class CopyReport:
    tables: list[TableCheck] = field(default_factory=list)
    collections: list[TableCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in [*self.tables, *self.collections])

    def to_json(self) -> dict[str, Any]:
        def rows(items: list[TableCheck]) -> list[dict[str, Any]]:
            return [{**t.__dict__, "ok": t.ok} for t in items]

        return {"ok": self.ok, "tables": rows(self.tables), "collections": rows(self.collections)}


def _norm(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if kind == "num" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    return str(value)


def _row_hash(values: Sequence[Any], kinds: Sequence[str]) -> int:
    text = json.dumps([_norm(v, k) for v, k in zip(values, kinds, strict=True)], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def table_checksum(rows: Iterable[Sequence[Any]], kinds: Sequence[str]) -> tuple[int, str]:
    """``(row count, order-independent checksum)`` of ``rows``."""
    n, total = 0, 0
    for r in rows:
        n += 1
        total = (total + _row_hash(r, kinds)) % (1 << 256)
    return n, f"{total:064x}"


def _sqlite_tables(store: Any) -> list[str]:
    rows = store.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                       " ORDER BY name")
    return [r["name"] for r in rows if r["name"] not in _SKIP]


def _pg_columns(store: Any, table: str) -> dict[str, str]:
    rows = store.query("SELECT column_name, data_type FROM information_schema.columns"
                       " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
                       (table,))
    out = {}
    for r in rows:
        t = r["data_type"]
        out[r["column_name"]] = ("num" if t in ("bigint", "integer", "smallint", "double precision", "real",
                                                 "numeric") else "bytes" if t == "bytea" else "text")
    return out


def _source_rows(src: Any, table: str, columns: Sequence[str]) -> Iterable[list[Any]]:
    last = None
    cols = ", ".join(f'"{c}"' for c in columns)
    while True:
        where = "" if last is None else "WHERE rowid > ?"
        rows = src.query(f'SELECT rowid AS "__rowid", {cols} FROM "{table}" {where} ORDER BY rowid LIMIT {_BATCH}',
                         () if last is None else (last,))
        if not rows:
            return
        for r in rows:
            yield [r[c] for c in columns]
        last = rows[-1]["__rowid"]


def _coerce(value: Any, kind: str) -> Any:
    """SQLite lets a column hold any type; PostgreSQL's column type decides."""
    if value is None:
        return None
    if kind == "text" and not isinstance(value, str):
        return value.decode() if isinstance(value, bytes) else str(value)
    if kind == "bytes" and isinstance(value, str):
        return value.encode()
    return value


def _target_rows(dst: Any, table: str, columns: Sequence[str]) -> Iterable[list[Any]]:
    cols = ", ".join(f'"{c}"' for c in columns)
    offset = 0
    while True:  # the target is not being written during the copy: offsets are stable
        rows = dst.query(f'SELECT {cols} FROM "{table}" ORDER BY ctid LIMIT {_BATCH} OFFSET {offset}')
        if not rows:
            return
        for r in rows:
            yield [r[c] for c in columns]
        offset += len(rows)


def _check_target_empty(dst: Any, tables: Sequence[str], replace: bool, url_shown: str) -> None:
    busy = [t for t in tables if dst.query(f'SELECT 1 AS x FROM "{t}" LIMIT 1')]
    if busy and not replace:
        raise CopyRefused(
            f"the target store {url_shown} is not empty: {', '.join(busy[:5])}"
            + (f" and {len(busy) - 5} more tables hold rows" if len(busy) > 5 else " hold rows"),
            hint="copy into an empty database, or pass --replace to delete what the target holds first")
    if busy:
        with dst.transaction():
            for t in busy:
                dst.execute(f'DELETE FROM "{t}"')


def copy_store(src: Any, dst: Any, *, home: Path | None, target_url: str, replace: bool = False,
               progress: Progress | None = None, collections: bool = True) -> CopyReport:
    """Copy ``src`` (a SQLite store) into ``dst`` (a migrated PostgreSQL store), then verify."""
    from keel.store.postgres import redact_url

    shown = redact_url(target_url)
    if getattr(dst, "dialect", "") != "postgresql":
        raise CopyRefused(f"the target {shown} is not a PostgreSQL store",
                          hint="pass --to postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    tables = _sqlite_tables(src)
    target_tables = {r["table_name"] for r in dst.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
    missing = [t for t in tables if t not in target_tables]
    if missing:
        raise CopyRefused(f"the target {shown} has no table {missing[0]!r} (the source has a newer schema?)",
                          hint="run the copy with the Keel version that wrote the source store")
    _check_target_empty(dst, tables, replace, shown)
    names = _collection_names(home) if collections else []
    _check_collections(target_url, names, replace, shown)
    report = CopyReport()
    for table in tables:
        kinds = _pg_columns(dst, table)
        columns = [c for c in (r["name"] for r in src.query(f'PRAGMA table_info("{table}")')) if c in kinds]
        col_kinds = [kinds[c] for c in columns]
        marks = ", ".join("?" * len(columns))
        sql = f'INSERT INTO "{table}" ({", ".join(chr(34) + c + chr(34) for c in columns)}) VALUES ({marks})'
        batch: list[list[Any]] = []
        n = 0
        for row in _source_rows(src, table, columns):
            batch.append([_coerce(v, k) for v, k in zip(row, col_kinds, strict=True)])
            if len(batch) >= _BATCH:
                with dst.transaction():
                    dst.executemany(sql, batch)
                n += len(batch)
                batch = []
                if progress:
                    progress(table, n)
        if batch:
            with dst.transaction():
                dst.executemany(sql, batch)
            n += len(batch)
        if progress:
            progress(table, n)
        sn, ssum = table_checksum(_source_rows(src, table, columns), col_kinds)
        tn, tsum = table_checksum(_target_rows(dst, table, columns), col_kinds)
        report.tables.append(TableCheck(table, sn, tn, ssum, tsum))
    for name in names:
        report.collections.append(_copy_collection(name, home, target_url, progress))
    return report


# -- collections -----------------------------------------------------------------------


def _collection_names(home: Path | None) -> list[str]:
    from keel.context._embedded import list_embedded

    return list_embedded(home)


def _check_collections(url: str, names: Sequence[str], replace: bool, shown: str) -> None:
    if not names:
        return
    from keel.context._postgres import PostgresBackend, list_pg_collections

    clash = sorted(set(names) & set(list_pg_collections(url)))
    if clash and not replace:
        raise CopyRefused(f"the target {shown} already has the collections {', '.join(clash)}",
                          hint="pass --replace to drop them first, or drop them with `keel context drop NAME`")
    for name in clash:
        be = PostgresBackend.open(url, name, create=False)
        if be is not None:
            be.drop()


def _chunk_rows(docs: Sequence[Any]) -> Iterable[list[Any]]:
    for d in docs:
        for c in d.chunks:
            yield [d.source, d.abs_path, d.file_hash, c.seq, c.hash, c.kind, c.title, c.anchor, c.start_line,
                   c.end_line, c.signature, json.dumps(json.loads(c.meta), sort_keys=True),
                   json.dumps(json.loads(c.heading_path)), json.dumps(json.loads(c.symbols))]


_CHUNK_KINDS = ["text", "text", "text", "num", "text", "text", "text", "text", "num", "num", "text", "text",
                "text", "text"]


def _copy_collection(name: str, home: Path | None, url: str, progress: Progress | None) -> TableCheck:
    from keel.context._embedded import EmbeddedBackend
    from keel.context._postgres import PostgresBackend
    from keel.context.bm25 import unpack_terms

    src = EmbeddedBackend.open(name, home=home, create=False)
    dst = PostgresBackend.open(url, name, create=True)
    assert src is not None and dst is not None
    try:
        meta = {k: v for k, v in src.db.query("SELECT key, value FROM meta") if k != "generation"}
        dst.set_meta(meta)
        vocab = dict(src.shared.query("SELECT id, term FROM vocab"))
        hashes = [r[0] for r in src.db.query("SELECT DISTINCT hash FROM chunks")]
        for i in range(0, len(hashes), 500):
            part = hashes[i : i + 500]
            marks = ",".join("?" * len(part))
            texts = src.shared.query(f"SELECT hash, text, terms, analyzer FROM texts WHERE hash IN ({marks})", part)
            missing = dst.missing_texts([t[0] for t in texts])
            by_analyzer: dict[str, list[tuple[str, str, list[str]]]] = {}
            for h, text, terms, analyzer in texts:
                if h in missing:
                    words = [vocab[int(t)] for t, n in unpack_terms(terms) for _ in range(int(n))]
                    by_analyzer.setdefault(analyzer, []).append((h, text, words))
            for analyzer, items in by_analyzer.items():
                dst.put_texts(items, analyzer)
            # terms under other analyzers (a re-analysed collection's, decision 0034)
            by_analyzer_terms: dict[str, list[tuple[str, list[str]]]] = {}
            for h, analyzer, terms in src.shared.query(
                    f"SELECT hash, analyzer, terms FROM terms WHERE hash IN ({marks})", part):
                words = [vocab[int(t)] for t, n in unpack_terms(terms) for _ in range(int(n))]
                by_analyzer_terms.setdefault(analyzer, []).append((h, words))
            for analyzer, pairs in by_analyzer_terms.items():
                dst.put_terms(pairs, analyzer)
            for model, in src.shared.query(f"SELECT DISTINCT model FROM vectors WHERE hash IN ({marks})", part):
                have = dst.cached_vectors(part, model)
                vecs = src.shared.cached_vectors(part, model)
                dst.put_vectors(model, [(h, v) for h, v in vecs.items() if h not in have])
        docs = src.documents()
        for n, d in enumerate(docs, 1):
            dst.replace_document(d, src.get_meta("embedder") or "")
            if progress and (n % 200 == 0 or n == len(docs)):
                progress(f"collection {name}", n)
        sn, ssum = table_checksum(_chunk_rows(docs), _CHUNK_KINDS)
        tn, tsum = table_checksum(_chunk_rows(dst.documents()), _CHUNK_KINDS)
        return TableCheck(f"collection {name}", sn, tn, ssum, tsum)
    finally:
        src.close()
        dst.close()
