"""Index snapshots (``keel.context.snapshot``, decision 0045): a real collection file (ADI, the
test hashing embedder) opened again must search from its memory-mapped arrays and answer exactly
as a build from the store does; a write makes the snapshot stale; a damaged one is rebuilt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keel.context import Collection
from keel.context.bench import ingest_smart
from keel.context.fusion import Fusion
from keel.context.smart import load_smart
from tests.context._data import dataset

QUERIES = ["computer information retrieval systems", "indexing of documents by citations",
           "automatic abstracting and extracting", "machine translation of natural languages"]
MODES = [("hybrid", Fusion()), ("hybrid", Fusion(feedback=True)), ("bm25", None), ("dense", None)]


def _answers(col: Collection) -> list[list[tuple[int, float]]]:
    out = []
    for q in QUERIES:
        for mode, fusion in MODES:
            hits = col.search(q, mode=mode, k=10, fusion=fusion)
            out.append([(h.chunk_id, round(h.score, 6)) for h in hits])
        hits = col.search(q, k=10, regex="retriev")
        out.append([(h.chunk_id, round(h.score, 6)) for h in hits])
    return out


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(Collection, "snapshot_min", 10)  # ADI has 82 documents
    col = Collection.open("adi", embedder="test-hashing")
    ingest_smart(col, load_smart(dataset("adi")))
    col.close()
    return tmp_path / "home"


def _mapped(arr: np.ndarray) -> bool:
    return isinstance(arr.base, np.memmap)


def _snap_files(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "collections" / "adi" / "index").glob("snap-*"))


def test_a_reopened_collection_searches_its_snapshot_and_answers_as_a_build_does(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _snap_files(home) == []
    col = Collection.open("adi", embedder="test-hashing")
    built = _answers(col)  # the first search builds from the store and saves the snapshot
    assert not _mapped(col._load().bm25.rows)
    col.close()
    files = _snap_files(home)
    assert len([f for f in files if f.endswith(".json")]) == 1 and len(files) == 9  # marker, ids, vectors, 6 of BM25

    col = Collection.open("adi", embedder="test-hashing")
    idx = col._load()
    assert _mapped(idx.bm25.rows) and _mapped(idx.ids)
    assert _mapped(idx.dense.vectors)
    assert _answers(col) == built
    col.close()
    col = Collection.open("adi", embedder="test-hashing")  # the build wrote a whole snapshot again
    assert _mapped(col._load().bm25.rows) and _answers(col) == built
    col.close()

    # the same answers from another process (what `keel context search` is)
    root = Path(__file__).resolve().parents[2]
    code = (f"import json, sys; sys.path.insert(0, {str(root)!r}); from tests.context.test_snapshot import _answers;"
            " from keel.context import Collection; c = Collection.open('adi', embedder='test-hashing');"
            " print(json.dumps(_answers(c)))")
    env = {**os.environ, "PYTHONPATH": str(root / "src")}  # the code under test, whatever is installed
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert [[tuple(x) for x in a] for a in json.loads(out.stdout)] == built


def test_a_write_makes_the_snapshot_stale_and_the_next_build_replaces_it(home: Path) -> None:
    col = Collection.open("adi", embedder="test-hashing")
    col.search("retrieval", k=3)
    first = _snap_files(home)
    col.add_records([("new-1", "Zebra retrieval", "zebra zebra retrieval of striped documents", {})])
    hits = col.search("zebra striped", mode="bm25", k=3)
    assert hits and "zebra" in hits[0].text.lower()
    second = _snap_files(home)
    assert second and not set(first) & set(second)  # the old snapshot's files are gone
    col.close()
    col = Collection.open("adi", embedder="test-hashing")
    assert _mapped(col._load().bm25.rows)
    assert "zebra" in col.search("zebra striped", mode="bm25", k=1)[0].text.lower()
    col.close()


def test_a_damaged_snapshot_is_ignored_and_search_builds_from_the_store(home: Path) -> None:
    col = Collection.open("adi", embedder="test-hashing")
    built = _answers(col)
    col.close()
    folder = home / "collections" / "adi" / "index"
    victim = next(folder.glob("snap-*-rows.npy"))
    victim.write_bytes(victim.read_bytes()[:100])  # truncated: numpy cannot map it
    col = Collection.open("adi", embedder="test-hashing")
    assert not _mapped(col._load().bm25.rows)
    assert _answers(col) == built
    col.close()
    col = Collection.open("adi", embedder="test-hashing")  # the build wrote a whole snapshot again
    assert _mapped(col._load().bm25.rows) and _answers(col) == built
    col.close()
