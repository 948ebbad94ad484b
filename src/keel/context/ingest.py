"""Ingest: files and directories in, chunks with vectors and terms out, atomic
commits (each file complete or absent).

- Directories are walked recursively; hidden entries and ``__pycache__``,
  ``node_modules``, ``.venv`` and the like are not entered. Symlinks that lead out
  of the folder, symlink loops and anything but regular files (FIFOs, devices) are
  skipped with the reason (:mod:`keel.context.files`).
- A file whose bytes (and user metadata) did not change since the last ingest is
  not even parsed. A changed file is re-chunked; chunks whose text is unchanged
  reuse their cached vectors (keyed by content hash and embedder).
- Files that were under an ingested directory and are gone leave the index.
- Bad files (binary, empty, not UTF-8, too large, unsupported) are skipped and
  reported with the reason; the rest continue.
- Embedding is batched across files (it is the slow part), then the batch's files
  are committed together in one transaction (on PostgreSQL too): a crash,
  even ``kill -9``, leaves every document either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from keel.context._backend import ChunkRow, DocumentRows
from keel.context._store import dumps
from keel.context.files import gather, read_file
from keel.context.lexical import ANALYZER, analyze
from keel.context.parse import DEFAULT_MAX_BYTES, SkipFile, check_type, chunk_data
from keel.context.progress import IngestProgress, ProgressMode
from keel.context.progress import progress as _progress
from keel.context.types import ChunkDraft, IngestReport, SkippedFile, content_hash
from keel.errors import UserError

if TYPE_CHECKING:
    from keel.context.collection import Collection

__all__ = ["IngestInterrupted", "embed_text", "ingest_paths", "ingest_records"]

_EMBED_BATCH = 64  # chunks gathered across files before they are embedded and their files committed
_KEEP_EVERY = 32  # vectors are kept (committed to the cache) at least every this many chunks


class IngestInterrupted(UserError):
    """Ctrl-C during an ingest: what was kept, and how to resume.

    Not a ``KeyboardInterrupt``: the CLI (typer) turns those into a silent exit 130,
    and this message is the point.
    """

    exit_code = 130


def embed_text(d: ChunkDraft) -> str:
    """The text that is embedded and BM25-indexed: the chunk with its context on top.

    Headings (or module and symbol for code) are prepended, so "Configuration" under
    "Agents" is findable by "agent configuration". The chunk's own text is what
    is shown and cited.
    """
    path = " > ".join(p for p in d.heading_path if p) or d.title
    head = path
    if d.signature and d.signature not in d.text[:300]:
        head = f"{head}\n{d.signature}" if head else d.signature
    return f"{head}\n\n{d.text}" if head and not d.text.startswith(head) else d.text


@dataclass
class _Pending:
    abs_path: str
    source: str
    file_hash: str
    size: int
    drafts: list[ChunkDraft]
    hashes: list[str]
    texts: list[str]  # embed texts
    meta: dict[str, Any]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def _embed_missing(col: Collection, batch: list[_Pending], report: IngestReport, bar: IngestProgress) -> None:
    """Compute vectors for chunk hashes the cache lacks, and store text, terms and vectors.

    Vectors are committed to the cache every ``_KEEP_EVERY`` chunks (or the embedder's
    batch size, if larger), so an interrupted ingest keeps nearly all its embedding work.
    """
    backend, model = col.backend, col.embedder.name
    by_hash: dict[str, str] = {}
    for p in batch:
        by_hash.update(zip(p.hashes, p.texts, strict=True))
    hashes = list(by_hash)
    have_vec = set(backend.cached_vectors(hashes, model))
    need_vec = [h for h in hashes if h not in have_vec]
    need_text = backend.missing_texts(hashes)
    step = max(_KEEP_EVERY, int(getattr(col.embedder, "batch_size", 0) or 0))
    for i in range(0, len(need_vec), step):
        part = need_vec[i : i + step]
        t = time.monotonic()
        vecs = col.embedder.embed([by_hash[h] for h in part])
        report.embed_seconds += time.monotonic() - t
        backend.put_vectors(model, [(h, np.ascontiguousarray(v, dtype=np.float32))
                                    for h, v in zip(part, vecs, strict=True)])
        report.chunks_embedded += len(part)
        bar.embedded(len(part))
    body: dict[str, str] = {}
    for p in batch:
        for h, d in zip(p.hashes, p.drafts, strict=True):
            body[h] = d.text
    if need_text:
        backend.put_texts([(h, body[h], analyze(by_hash[h])) for h in need_text], ANALYZER)
    # texts stored earlier by another analyzer (another collection's): their terms under this one
    other = backend.missing_terms([h for h in hashes if h not in need_text], ANALYZER)
    if other:
        backend.put_terms([(h, analyze(by_hash[h])) for h in other], ANALYZER)


def _document(p: _Pending) -> DocumentRows:
    """One pending document's rows, as the backend stores them."""
    rows = []
    keys: set[str] = set()
    for seq, (d, h) in enumerate(zip(p.drafts, p.hashes, strict=True)):
        meta = {**d.meta, **p.meta}
        keys.update(meta)
        rows.append(ChunkRow(seq, h, d.kind, d.title, dumps(list(d.heading_path)), d.anchor, d.start_line,
                             d.end_line, dumps(list(d.symbols)), d.signature, dumps(meta)))
    return DocumentRows(p.abs_path, p.source, p.file_hash, p.size, dumps(p.meta), rows, keys)


def _commit(col: Collection, batch: list[_Pending]) -> None:
    """Replace the batch's documents: in one transaction when the backend can (both do:
    decisions 0038 and 0033), else one transaction per document. Either way a crash leaves each
    document complete or absent."""
    docs = [_document(p) for p in batch]
    many = getattr(col.backend, "replace_documents", None)
    if many is not None:
        many(docs, col.embedder.name)
        return
    for d in docs:
        col.backend.replace_document(d, col.embedder.name)


def _flush(col: Collection, batch: list[_Pending], report: IngestReport, bar: IngestProgress) -> None:
    if not batch:
        return
    _embed_missing(col, batch, report, bar)
    _commit(col, batch)
    for p in batch:
        report.files_indexed += 1
        report.chunks_written += len(p.drafts)
        bar.advance(1, len(p.drafts))
    batch.clear()


def _ingest_files(col: Collection, files: list[tuple[Path, str]], known: dict[str, tuple[str, str]],
                  meta_json: str, metadata: Mapping[str, Any], seen: set[str], report: IngestReport,
                  bar: IngestProgress, limit: int) -> None:
    """Read, chunk, embed and commit ``files`` (``(path, real path)`` pairs), in batches."""
    batch: list[_Pending] = []
    pending_chunks = 0
    for f, abs_path in files:
        if abs_path in seen:
            continue  # the same file again (a symlink to a file in the folder)
        report.files_seen += 1
        seen.add(abs_path)
        try:
            check_type(f)
            data = read_file(abs_path, max_bytes=limit)
            size = len(data)
            file_hash = hashlib.sha256(data).hexdigest()[:32]
            if known.get(abs_path) == (file_hash, meta_json):
                report.files_unchanged += 1
                bar.advance(1)
                continue
            drafts = chunk_data(f, data)
        except SkipFile as e:
            report.skipped.append(SkippedFile(_display(f), e.reason))
            bar.advance(1)
            continue
        except OSError as e:
            report.skipped.append(SkippedFile(_display(f), f"unreadable: {e.strerror or e}"))
            bar.advance(1)
            continue
        texts = [embed_text(d) for d in drafts]
        batch.append(_Pending(abs_path, _display(f), file_hash, size, drafts,
                              [content_hash(t) for t in texts], texts, dict(metadata)))
        pending_chunks += len(drafts)
        if pending_chunks >= _EMBED_BATCH:
            _flush(col, batch, report, bar)
            pending_chunks = 0
    _flush(col, batch, report, bar)


def _interrupted(col: Collection, report: IngestReport, total: int) -> IngestInterrupted:
    left = total - report.files_indexed - report.files_unchanged - len(report.skipped)
    return IngestInterrupted(
        f"interrupted: kept {report.files_indexed} newly indexed files ({report.chunks_written} chunks) in "
        f"collection {col.name!r} and {report.chunks_embedded} chunk vectors in the embedding cache; "
        f"about {max(left, 0)} files were not indexed",
        hint="run the same `keel context add` again to resume: indexed files are skipped and cached vectors "
             "are not computed again",
    )


def ingest_paths(col: Collection, paths: Sequence[Path], *, metadata: Mapping[str, Any],
                 progress: ProgressMode = False, max_bytes: int | None = None,
                 follow_symlinks: bool = False) -> IngestReport:
    """Ingest ``paths`` into ``col`` (see the module docstring; which files are read, and how:
    :mod:`keel.context.files`; what ``progress`` shows: :mod:`keel.context.progress`).

    Ctrl-C raises :class:`IngestInterrupted`, which says what was kept: the files
    committed so far stay indexed and the vectors computed so far stay cached, so
    running the same ingest again resumes where this one stopped.
    """
    started = time.monotonic()
    report = IngestReport()
    bad_keys = [k for k in metadata if not isinstance(k, str) or not k or k.startswith("$")]
    if bad_keys:
        raise UserError(f"invalid metadata key {bad_keys[0]!r}", hint="keys are non-empty and do not start with $")
    found = gather(list(paths), follow_symlinks=follow_symlinks)
    files, roots = found.files, found.roots
    report.skipped.extend(found.skipped)
    report.files_seen += len(found.skipped)
    limit = max_bytes or DEFAULT_MAX_BYTES
    known = col.backend.known_documents()
    meta_json = dumps(dict(metadata))
    seen: set[str] = set()
    try:
        with _progress(progress, len(files), f"indexing into {col.name}") as bar:
            _ingest_files(col, files, known, meta_json, metadata, seen, report, bar, limit)
    except KeyboardInterrupt:
        raise _interrupted(col, report, len(files)) from None
    # Files that were under an ingested directory and are gone now leave the index.
    gone = [a for a in known if a not in seen and any(a.startswith(str(r) + os.sep) for r in roots)
            and not Path(a).exists()]
    if gone:
        col.backend.remove_documents(gone, sources=False)
        report.files_removed = len(gone)
    report.seconds = time.monotonic() - started
    return report


def ingest_records(col: Collection, records: Sequence[tuple[str, str, str, Mapping[str, Any]]], *,
                   progress: bool = False) -> IngestReport:
    """Ingest ``(id, title, text, metadata)`` records as one chunk each; ``id`` becomes the source."""
    started = time.monotonic()
    report = IngestReport()
    known = col.backend.known_documents()
    batch: list[_Pending] = []
    with _progress(progress, len(records), f"indexing into {col.name}") as bar:
        for rid, title, text, meta in records:
            report.files_seen += 1
            if not text.strip() and not title.strip():
                report.skipped.append(SkippedFile(rid, "empty record"))
                bar.advance(1)
                continue
            key = f"record:{rid}"
            body = f"{title}\n{text}" if title and not text.startswith(title) else text
            rec_hash = content_hash(body)
            if known.get(key) == (rec_hash, dumps(dict(meta))):
                report.files_unchanged += 1
                bar.advance(1)
                continue
            d = ChunkDraft(text=body, kind="record", title=title, start_line=1, end_line=body.count("\n") + 1)
            batch.append(_Pending(key, rid, rec_hash, len(body), [d], [content_hash(body)], [body], dict(meta)))
            if len(batch) >= _EMBED_BATCH:
                _flush(col, batch, report, bar)
        _flush(col, batch, report, bar)
    report.seconds = time.monotonic() - started
    return report


def report_json(report: IngestReport) -> dict[str, Any]:
    d = dict(report.__dict__)
    d["skipped"] = [s.__dict__ for s in report.skipped]
    return json.loads(json.dumps(d))
