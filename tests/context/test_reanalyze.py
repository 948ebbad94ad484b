"""A collection indexed by an older analyzer is re-analysed on open (decision 0034).

The old collection is written by the old code path (ingest with the ``words-stop-snowball``
analyzer, which stores its terms in the ``texts`` rows), in real SQLite files and in a
real PostgreSQL database with the schema as an older Keel left it (no ``terms`` table).
Opening it with the current analyzer must store terms under the current analyzer for
every chunk, keep the old terms, record the new analyzer, and rank BM25 exactly as a
collection freshly ingested with the current analyzer does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from keel.context import Collection
from keel.context import collection as collection_mod
from keel.context import ingest as ingest_mod
from keel.context.lexical import ANALYZER, LEGACY_ANALYZERS, _legacy_analyze, analyze
from keel.context.reanalyze import reanalyze
from keel.context.smart import load_smart
from tests.context._data import dataset

OLD = "words-stop-snowball" if ANALYZER.endswith("-snowball") else "words-stop"
QUERIES = ["computer information retrieval systems", "what is the use of a thesaurus?",
           "agents handoffs configuration", "I want a: b c"]

MARKDOWN = """# Agents

Intro text about agents and what they do.

## Configuration

Set the model and the tools. A handoff passes control to another agent.

## Handoffs

Each handoff is a tool the model may call; it is what an agent uses to delegate.
"""


def _write_old(monkeypatch: pytest.MonkeyPatch, name: str, files: Path, records, store: str | None = None) -> None:
    """Ingest with the old analyzer, as an older Keel did (terms in the `texts` rows)."""
    with monkeypatch.context() as m:
        m.setattr(ingest_mod, "analyze", _legacy_analyze)
        m.setattr(ingest_mod, "ANALYZER", OLD)
        m.setattr(collection_mod, "ANALYZER", OLD)
        with Collection.open(name, embedder="test-hashing", store=store) as col:
            col.add_records(records)
            col.add([files])
            assert col.backend.get_meta("analyzer") == OLD


def _bm25(col: Collection) -> list[list[tuple[str, float]]]:
    out = []
    for q in QUERIES:
        out.append([(h.hash, round(h.scores["bm25"], 4)) for h in col.search(q, mode="bm25", k=20)])
    return out


@pytest.fixture
def sources(tmp_path: Path):
    data = load_smart(dataset("adi"))
    records = [(d.id, d.title, d.text, {}) for d in data.docs]
    files = tmp_path / "docs"
    files.mkdir()
    (files / "agents.md").write_text(MARKDOWN)
    return records, files


def test_old_collection_is_reanalysed_on_open_and_ranks_as_a_fresh_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources, capsys: pytest.CaptureFixture) -> None:
    assert OLD in LEGACY_ANALYZERS and OLD != ANALYZER
    records, files = sources
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "home"))
    _write_old(monkeypatch, "old", files, records)
    _write_old(monkeypatch, "old2", files, records)  # a second old collection sharing the same texts
    shared = tmp_path / "home" / "collections" / ".shared" / "chunks.db"
    with sqlite3.connect(shared) as db:
        before = db.execute("SELECT hash, terms, analyzer FROM texts ORDER BY hash").fetchall()
        assert {r[2] for r in before} == {OLD}
        assert db.execute("SELECT COUNT(*) FROM terms").fetchone()[0] == 0

    with Collection.open("old", create=False) as col:
        assert col.backend.get_meta("analyzer") == ANALYZER
        reanalysed = _bm25(col)
        n_chunks = sum(col.stats().kinds.values())
        assert col.backend.stale_chunks(ANALYZER) == []
    with sqlite3.connect(shared) as db:
        # no data lost: the old terms are where they were, the new ones beside them
        assert db.execute("SELECT hash, terms, analyzer FROM texts ORDER BY hash").fetchall() == before
        assert db.execute("SELECT COUNT(*) FROM terms WHERE analyzer = ?", (ANALYZER,)).fetchone()[0] == n_chunks

    # the same sources ingested now, with the current analyzer, in a home of their own
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "fresh"))
    with Collection.open("fresh", embedder="test-hashing") as fresh:
        fresh.add_records(records)
        fresh.add([files])
        expected = _bm25(fresh)
    assert reanalysed == expected
    assert all(reanalysed), "every query finds something"
    # the heading path was part of the indexed text: "handoffs" finds the Handoffs section first
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "home"))
    with Collection.open("old", create=False) as col:
        top = col.search("handoffs", mode="bm25", k=1)[0]
        assert top.citation.heading_path == ("Agents", "Handoffs")
        assert top.hash in {h for h, _ in reanalysed[2]}
    # the second collection shares the texts: its terms are there already; it switches analyzer
    with Collection.open("old2", create=False) as col2:
        assert col2.backend.get_meta("analyzer") == ANALYZER
        assert _bm25(col2) == expected
    # old terms differ from the new (one-letter words and question words): the switch did something
    assert _legacy_analyze("what is a b") != analyze("what is a b")


def test_reanalysis_reports_progress_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources,
                                                capsys: pytest.CaptureFixture) -> None:
    records, files = sources
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "home"))
    _write_old(monkeypatch, "old", files, records)
    from keel.context._backend import open_backend

    backend = open_backend("old", home=None, create=False)
    try:
        stale = backend.stale_chunks(ANALYZER)
        # an interrupted run: the first 10 texts got their terms, the analyzer was not recorded
        backend.put_terms([(r[0], analyze(r[1])) for r in stale[:10]], ANALYZER)
        assert backend.get_meta("analyzer") == OLD
        assert len(backend.stale_chunks(ANALYZER)) == len(stale) - 10
        capsys.readouterr()
        monkeypatch.setattr("keel.context.reanalyze._BATCH", 7)  # many batches, read one at a time
        assert reanalyze(backend, "old", progress=True) == len(stale) - 10
        assert backend.stale_chunks(ANALYZER) == [] and backend.count_stale(ANALYZER) == 0
        err = capsys.readouterr().err
        assert f"re-analysing old ({ANALYZER}): {len(stale) - 10}/{len(stale) - 10} chunks" in err, err
        assert backend.get_meta("analyzer") == ANALYZER
    finally:
        backend.close()


def test_old_postgresql_collection_is_reanalysed_on_open(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path, sources) -> None:
    records, files = sources
    _write_old(monkeypatch, "old", files, records, store=pg_url)
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:  # the schema as an older Keel left it
        conn.execute("DROP TABLE keel_context.terms")
        assert {r[0] for r in conn.execute("SELECT DISTINCT analyzer FROM keel_context.texts")} == {OLD}
    with Collection.open("old", create=False, store=pg_url) as col:
        assert col.backend.get_meta("analyzer") == ANALYZER
        assert col.backend.stale_chunks(ANALYZER) == []
        reanalysed = _bm25(col)
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "fresh"))
    with Collection.open("fresh", embedder="test-hashing") as fresh:
        fresh.add_records(records)
        fresh.add([files])
        assert reanalysed == _bm25(fresh)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert {r[0] for r in conn.execute("SELECT DISTINCT analyzer FROM keel_context.texts")} == {OLD}
        assert conn.execute("SELECT COUNT(*) FROM keel_context.terms WHERE analyzer = %s",
                            (ANALYZER,)).fetchone()[0] == len(records) + 3


def test_a_reanalysed_collection_copies_to_postgresql_with_its_terms(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path, sources) -> None:
    """`keel store copy` carries the `terms` rows: the copy ranks as the original, with no re-analysis."""
    from keel.store.copy import _copy_collection

    records, files = sources
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "home"))
    _write_old(monkeypatch, "old", files, records)
    with Collection.open("old", create=False) as col:  # re-analysed here, in the SQLite files
        expected = _bm25(col)
    assert _copy_collection("old", None, pg_url, None).ok
    with Collection.open("old", create=False, store=pg_url) as pgc:
        assert pgc.backend.get_meta("analyzer") == ANALYZER and pgc.backend.count_stale(ANALYZER) == 0
        assert _bm25(pgc) == expected


def test_a_store_that_cannot_take_the_terms_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            sources) -> None:
    """A read-only home (simulated: root ignores file modes) fails with a StoreError naming the fix;
    the collection keeps its old analyzer and is re-analysed on a later, writable open."""
    from keel.context._backend import open_backend
    from keel.errors import StoreError

    records, files = sources
    monkeypatch.setenv("KEEL_HOME", str(tmp_path / "home"))
    _write_old(monkeypatch, "old", files, records)
    backend = open_backend("old", home=None, create=False)

    def readonly(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    try:
        monkeypatch.setattr(backend, "put_terms", readonly)
        with pytest.raises(StoreError, match=r"cannot re-analyse collection 'old'.*readonly database") as err:
            reanalyze(backend, "old")
        assert "can write to its store" in (err.value.hint or "")
        assert backend.get_meta("analyzer") == OLD
    finally:
        backend.close()
    with Collection.open("old", create=False) as col:
        assert col.backend.get_meta("analyzer") == ANALYZER and col.search("thesaurus", mode="bm25", k=1)
