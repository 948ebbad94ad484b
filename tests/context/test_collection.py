"""Collections end to end on a real SQLite file: ingest, incremental re-ingest, search
modes, filters, regex, forks and a kill -9 during ingest.

These use the test-only hashing embedder so they run in seconds; the real MiniLM
path is covered in test_minilm.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from keel.context import Collection, FilterError, RegexError, list_collections
from keel.context.bench import ingest_smart
from keel.context.parse import chunk_file
from keel.context.smart import load_smart
from keel.errors import UserError
from tests.context._data import dataset

EMB = "test-hashing"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A copy of the Agents SDK docs plus code, HTML and bad files."""
    src = dataset("agents-sdk-docs")
    root = tmp_path / "docs"
    shutil.copytree(src, root)
    (root / "code").mkdir()
    shutil.copy(Path(sqlite3.__file__).parent / "dbapi2.py", root / "code" / "dbapi2.py")
    (root / "code" / "tool.py").write_text(textwrap.dedent('''
        """A tool."""

        def rotate_api_key(user: str, *, force: bool = False) -> str:
            """Rotate the API key of a user and return the new one."""
            return "sk-" + user
    '''))
    (root / "page.html").write_text("<html><head><title>FAQ</title></head><body><h1>FAQ</h1>"
                                    "<p>Keel keeps every collection in KEEL_HOME.</p></body></html>")
    (root / "broken.md").write_bytes(b"\xff\xfe\x00binary\x00junk")
    (root / "empty.txt").write_text("")
    (root / "notes.latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    return root


def test_ingest_search_and_citations(docs: Path) -> None:
    with Collection.open("docs", embedder=EMB) as col:
        report = col.add([docs], metadata={"team": "sdk", "year": 2025})
        assert report.files_indexed > 35
        reasons = {Path(s.path).name: s.reason for s in report.skipped}
        assert "binary" in reasons["broken.md"]
        assert reasons["empty.txt"] == "empty file"
        assert "UTF-8" in reasons["notes.latin1.txt"]
        assert report.chunks_embedded == report.chunks_written or report.chunks_embedded < report.chunks_written

        hits = col.search("rotate the API key of a user", k=5)
        top = hits[0]
        assert top.citation.source.endswith("code/tool.py")
        assert "rotate_api_key" in top.meta["symbols"]
        assert top.citation.start_line >= 1 and top.citation.end_line >= top.citation.start_line

        hits = col.search("output guardrails tripwire", mode="bm25", k=3)
        assert hits[0].citation.source.endswith("guardrails.md")
        assert hits[0].citation.anchor and hits[0].citation.heading_path[0] == "Guardrails"
        assert "bm25" in hits[0].scores
        lines = (docs / "guardrails.md").read_text().splitlines()
        c = hits[0].citation
        assert hits[0].text.splitlines()[0] in lines[c.start_line - 1]

        hybrid = col.search("guardrails", k=5)
        assert col.fusion.method in hybrid[0].scores and hybrid[0].ranks  # "convex" unless tuned (decision 0025)


def test_filters_and_regex(docs: Path) -> None:
    with Collection.open("docs", embedder=EMB) as col:
        col.add([docs / "code"], metadata={"lang_family": "py", "year": 2024})
        col.add([docs / "agents.md", docs / "tools.md"], metadata={"year": 2025})
        code = col.search("connect", where={"kind": "code"}, k=50)
        assert code and all(h.meta["kind"] == "code" for h in code)
        y = col.search("agent", where={"year": {"$gte": 2025}}, k=50)
        assert y and all(h.meta["year"] == 2025 for h in y)
        both = col.search("agent", where={"$or": [{"year": 2024}, {"kind": {"$in": ["markdown"]}}]}, k=200)
        assert {h.meta["kind"] for h in both} == {"code", "markdown"}
        ranged = col.search("agent", where={"start_line": {"$gte": 10, "$lt": 50}}, k=200)
        assert ranged and all(10 <= h.citation.start_line < 50 for h in ranged)
        sym = col.search("", regex=r"def rotate_api_key\(", k=5)
        assert len(sym) == 1 and "rotate_api_key" in sym[0].meta["symbols"]
        by_symbol = col.search("key", where={"symbol": "rotate_api_key"})
        assert len(by_symbol) == 1
        rx = col.search("agent", regex=r"Runner\.run", k=50)
        assert rx and all("Runner.run" in h.text for h in rx)

        with pytest.raises(FilterError, match="unknown filter field 'yeer'") as e:
            col.search("x", where={"yeer": 2024})
        assert "did you mean 'year'" in (e.value.hint or "")
        with pytest.raises(FilterError, match=r"unknown filter operator '\$gtt'"):
            col.search("x", where={"year": {"$gtt": 1}})
        with pytest.raises(FilterError, match=r"\$in on 'kind' needs a non-empty list"):
            col.search("x", where={"kind": {"$in": "code"}})
        with pytest.raises(RegexError, match="invalid regex"):
            col.search("x", regex="([a-z")
        with pytest.raises(UserError, match="unknown search mode"):
            col.search("x", mode="sparse")  # type: ignore[arg-type]


def test_incremental_reingest_and_deletions(docs: Path) -> None:
    with Collection.open("docs", embedder=EMB) as col:
        first = col.add([docs])
        n_chunks = col.stats().chunks
        again = col.add([docs])
        assert again.files_indexed == 0 and again.files_unchanged == first.files_indexed
        assert again.chunks_embedded == 0

        # Edit one section of a file: only the changed chunks are embedded again.
        f = docs / "agents.md"
        f.write_text(f.read_text().replace("Agents are the core building block", "Agents are THE core building block"))
        edit = col.add([docs])
        assert edit.files_indexed == 1 and 1 <= edit.chunks_embedded <= 2

        # Delete a file: it leaves the index.
        (docs / "tools.md").unlink()
        gone = col.add([docs])
        assert gone.files_removed == 1
        assert not any(s.endswith("tools.md") for s in col.sources())
        assert col.stats().chunks < n_chunks
        assert not col.search("", regex="function_tool", where={"source": {"$in": [str(f) for f in col.sources()
                                                                                     if "tools.md" in f] or ["-"]}})


def test_adi_quality_with_hashing_is_sane() -> None:
    """The first stage works on a real test collection even without a semantic embedder."""
    from keel.context.metrics import evaluate

    data = load_smart(dataset("adi"))
    with Collection.open("adi", embedder=EMB) as col:
        ingest_smart(col, data)
        assert col.stats().chunks == 82
        # the hashing embedder has no semantics, so only BM25's quality is meaningful here
        for mode, floor in (("bm25", 0.4), ("hybrid", 0.25)):
            run = {q.id: [h.citation.source for h in col.search(q.text, mode=mode, k=100)] for q in data.queries}
            scores = evaluate(run, data.qrels)
            assert scores["ndcg@10"] > floor, (mode, scores)
            assert scores["recall@100"] > 0.85, (mode, scores)


def test_fork_is_cheap_and_independent(docs: Path) -> None:
    with Collection.open("main", embedder=EMB) as col:
        col.add([docs])
        base = col.stats()
        t = time.perf_counter()
        with col.fork("feature-x") as fork:
            elapsed = time.perf_counter() - t
            fs = fork.stats()
            assert fs.parent == "main" and fs.chunks == base.chunks
            assert fs.bytes_collection <= base.bytes_collection + 100_000
            assert fs.bytes_linked == 0  # under 20k chunks there is no HNSW file to share
            assert fs.bytes_collection < fs.bytes_shared  # the bulk (text, vectors) is shared
            assert elapsed < 2.0
            (docs / "new.md").write_text("# Branch-only\n\nThe zebra protocol exists only on this branch.\n")
            fork.add([docs / "new.md"])
            assert fork.search("zebra protocol", mode="bm25")[0].citation.source.endswith("new.md")
        assert not col.search("zebra", mode="bm25")
    assert list_collections() == ["feature-x", "main"]
    with pytest.raises(UserError, match="already exists"), Collection.open("main") as col:
        col.fork("feature-x")


def test_unknown_collection_and_bad_name() -> None:
    with pytest.raises(UserError, match="no collection named 'nope'"):
        Collection.open("nope", create=False)
    with pytest.raises(UserError, match="invalid collection name"):
        Collection.open("../etc")


_INGEST_SCRIPT = """
import sys
from keel.context import Collection
col = Collection.open("crash", embedder="test-hashing")
col.add([sys.argv[1]])
print("finished", flush=True)
"""


def test_kill_9_during_ingest_leaves_no_partial_document(tmp_path: Path, keel_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEEL_STORE_URL", raising=False)  # about the embedded files, whatever the test pass
    src = tmp_path / "many"
    src.mkdir()
    body = (dataset("agents-sdk-docs") / "running_agents.md").read_text()
    for i in range(400):
        (src / f"doc{i:03}.md").write_text(f"# Doc {i}\n\n{body}\n\nUnique marker token{i}.\n")
    expected = len(chunk_file(src / "doc000.md"))
    env = {**os.environ, "KEEL_HOME": str(keel_home)}
    proc = subprocess.Popen([sys.executable, "-c", _INGEST_SCRIPT, str(src)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = keel_home / "collections" / "crash" / "collection.db"
    deadline = time.monotonic() + 60
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as c:
                    committed = c.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
            except sqlite3.OperationalError:
                committed = 0
            if committed >= 20:
                break
        time.sleep(0.02)
    assert proc.poll() is None, f"ingest finished before it could be killed: {proc.communicate()}"
    # readers keep working while the writer commits
    with Collection.open("crash") as reader:
        seen = []
        for _ in range(5):
            reader._indexes = None
            seen.append(reader.stats().documents)
            assert reader.search("marker token3", mode="bm25", k=3)
        assert proc.poll() is None and seen[-1] >= seen[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    with Collection.open("crash") as col:
        assert col.db.query("PRAGMA integrity_check")[0][0] == "ok"
        rows = col.db.query("SELECT d.id, COUNT(c.id), MAX(c.seq) FROM documents d "
                            "LEFT JOIN chunks c ON c.doc_id = d.id GROUP BY d.id")
        assert 20 <= len(rows) < 400
        for _, n, max_seq in rows:
            assert n == expected and max_seq == expected - 1  # whole documents only
        hits = col.search("token7 marker", mode="bm25", k=3)
        assert hits
        # and ingest resumes where it stopped
        report = col.add([src])
        assert report.files_unchanged == len(rows) and report.files_indexed == 400 - len(rows)
        assert col.stats().documents == 400


def test_hnsw_path_cache_and_fork_links(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEEL_STORE_URL", raising=False)  # the embedded index files (PostgreSQL: test_postgres.py)
    data = load_smart(dataset("adi"))
    with Collection.open("ann", embedder=EMB) as col:
        col.hnsw_min = 10  # force the HNSW graph on a small collection
        ingest_smart(col, data)
        exact = Collection.open("ann")
        exact.hnsw_min = 10**9
        q = data.queries[0].text
        ann_ids = [h.chunk_id for h in col.search(q, mode="dense", k=10)]
        exact_ids = [h.chunk_id for h in exact.search(q, mode="dense", k=10)]
        exact.close()
        assert len(set(ann_ids) & set(exact_ids)) >= 8
        graph = col.directory / "index" / "dense.hnsw"
        assert graph.is_file()
        mtime = graph.stat().st_mtime_ns
        col._indexes = None
        col.search(q, mode="dense")
        assert graph.stat().st_mtime_ns == mtime  # reloaded from the cache, not rebuilt
        # a filtered query searches exactly over the allowed rows
        hits = col.search(q, mode="dense", where={"source": {"$in": ["1", "2", "3"]}}, k=10)
        assert sorted(h.citation.source for h in hits) == ["1", "2", "3"]
        with col.fork("ann-fork") as fork:
            fork.hnsw_min = 10
            st = fork.stats()
            assert st.bytes_linked == graph.stat().st_size + (col.directory / "index" / "dense.json").stat().st_size
            assert [h.chunk_id for h in fork.search(q, mode="dense", k=10)] == ann_ids
            assert (fork.directory / "index" / "dense.hnsw").stat().st_ino == graph.stat().st_ino
