"""Index snapshots: a collection's in-memory search arrays saved beside it, opened by memory map.

Opening a large collection used to mean reading every chunk's terms and vector through SQL and
building BM25 again: 40 s at a million chunks on a quiet machine, and a heap 1.6x the arrays
(the rows' bytes objects outlive the build in the allocator). A snapshot is the arrays those
steps produce (the chunk ids, the vectors, BM25's postings and per-row terms), written once as
``.npy`` files after a build and opened with ``numpy.load(mmap_mode="r")`` by every later process:
nothing is read until a query touches it, and the pages are the page cache's, which the system
can drop and share between processes (decision 0045).

A snapshot is derived data, like the HNSW graph beside it: it is named by a digest of what it
was built from (the collection's generation, the embedder, the analyzer, the BM25 parameters and
this format), so a write to the collection makes it stale and the next build replaces it. A
snapshot that is missing, partly written, or unreadable is ignored: the indexes are built from
the store as before. Files are flat in the collection's ``index/`` folder, so a fork hard-links
them with the graph.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keel.context.bm25 import BM25Index

__all__ = ["FORMAT", "SNAPSHOT_MIN", "Snapshot", "load", "save", "tag"]

FORMAT = 1
SNAPSHOT_MIN = 20_000
"""Collections with fewer chunks are not snapshotted: they load from the store in under a second."""

_PREFIX = "snap-"


@dataclass
class Snapshot:
    ids: np.ndarray
    vectors: np.ndarray | None
    bm25: BM25Index


def tag(generation: int, model: str, analyzer: str, k1: float, b: float) -> str:
    """What a snapshot was built from, as a short digest (its files' names carry it)."""
    text = json.dumps([FORMAT, int(generation), model, analyzer, float(k1), float(b)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _files(directory: Path, digest: str) -> tuple[Path, dict[str, Path]]:
    names = ("ids", "vectors", *BM25Index.ARRAYS)
    return directory / f"{_PREFIX}{digest}.json", {n: directory / f"{_PREFIX}{digest}-{n}.npy" for n in names}


def load(directory: Path, digest: str) -> Snapshot | None:
    """The snapshot named ``digest`` in ``directory``, memory-mapped; ``None`` when there is none
    (or it cannot be read: then the caller builds from the store)."""
    marker, files = _files(directory, digest)
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None  # none yet (or being written: the marker comes last)
    try:
        if meta.get("format") != FORMAT:
            raise ValueError("another format")
        # plain arrays over the maps: slicing an np.memmap runs Python code per slice (6% of a query)
        arrays = {n: np.load(p, mmap_mode="r").view(np.ndarray) for n, p in files.items()
                  if n != "vectors" or meta.get("vectors")}
        bm25 = BM25Index.from_arrays(arrays)
        ids = arrays["ids"]
        if ids.shape[0] != meta.get("n") or bm25.n != ids.shape[0]:
            raise ValueError("sizes differ")
        return Snapshot(ids, arrays.get("vectors"), bm25)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        marker.unlink(missing_ok=True)  # damaged: the build that follows writes it again
        return None


def save(directory: Path, digest: str, ids: np.ndarray, vectors: np.ndarray | None, bm25: BM25Index) -> bool:
    """Write a snapshot (arrays first, then its marker, each file renamed into place), then remove
    the older snapshots of this folder. ``False`` when it could not be written (a full or
    read-only disk): searching works without one."""
    marker, files = _files(directory, digest)
    if marker.is_file():
        return True
    arrays: dict[str, np.ndarray | None] = {"ids": ids, "vectors": vectors, **bm25.arrays()}
    written: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, path in files.items():
            arr = arrays[name]
            if arr is None:
                continue
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(arr))
            written.append(tmp)
            os.replace(tmp, path)
            written[-1] = path
        tmp = marker.with_name(f"{marker.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"format": FORMAT, "n": int(ids.shape[0]), "vectors": vectors is not None}))
        os.replace(tmp, marker)
    except OSError:
        for p in written:
            p.unlink(missing_ok=True)
        return False
    for old in directory.glob(f"{_PREFIX}*"):
        if not old.name.startswith(f"{_PREFIX}{digest}"):
            old.unlink(missing_ok=True)  # another process that has it mapped keeps reading it
    return True
