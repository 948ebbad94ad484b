"""Search paths of the PostgreSQL backend (decision 0042), on a real PostgreSQL with pgvector.

Filters are answered by the per-field bitmaps when they compare the same as in SQL, and
filtered dense search returns the exact answer over the allowed rows, whether it is scored
exactly (a narrow filter) or walks the HNSW index with pgvector's iterative scan (a filter
allowing most rows). Term ids are kept in memory once the vocabulary has them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from keel.context import Collection
from tests.pg import TestPostgres


class _Random:
    name, dim = "test-random", 64

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import hashlib

        out = np.stack([np.random.default_rng(int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(),
                                                              "little")).normal(size=self.dim) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _records(n: int) -> list[tuple[str, str, str, dict]]:
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(200)]
    out = []
    for i in range(n):
        meta = {"i": i, "tag": "even" if i % 2 == 0 else "odd", "flag": i % 3 == 0}
        out.append((f"d{i}", "", " ".join(rng.choice(words, 10)), meta))
    return out


def _exact(emb: _Random, records, query: str, allowed, k: int) -> list[str]:
    ids = [r[0] for r in records if allowed(r[3])]
    vecs = emb.embed([r[2] for r in records if allowed(r[3])])
    scores = vecs @ emb.embed([query])[0]
    return [ids[j] for j in np.argsort(-scores, kind="stable")[:k]]


@pytest.fixture
def big(pg_url: str, pg_server: TestPostgres):
    if not pg_server.has_pgvector:
        pytest.skip(f"the test PostgreSQL ({pg_server.bin_dir}) has no pgvector")
    with Collection.open("paths", embedder=_Random(), store=pg_url) as col:
        col.hnsw_min = 100  # an HNSW index over 600 rows: its walk is exact at ef_search 216
        col.add_records(_records(600))
        yield col


def test_filtered_dense_search_on_postgres_is_the_exact_answer_from_the_bitmaps(big: Collection,
                                                                                 monkeypatch) -> None:
    records = _records(600)
    emb = _Random()
    asked: list[object] = []
    real_filter_rows = big.backend.filter_rows
    monkeypatch.setattr(big.backend, "filter_rows", lambda where, **kw: asked.append(where)
                        or real_filter_rows(where, **kw))
    walks: list[str] = []
    real_pipeline = big.backend.conn.pipeline
    monkeypatch.setattr(big.backend.conn, "pipeline", lambda: walks.append("walk") or real_pipeline())
    cases = [
        ({"i": {"$lt": 40}}, lambda m: m["i"] < 40, False),  # narrow: exact over 40 rows
        ({"i": {"$gte": 30}}, lambda m: m["i"] >= 30, True),  # 95 % of the rows: the index walk
        ({"tag": "even"}, lambda m: m["tag"] == "even", True),  # half: still the walk
        ({"tag": "even", "i": {"$ne": 8}}, lambda m: m["tag"] == "even" and m["i"] != 8, False),  # one row less
    ]
    for flt, allowed, walked in cases:
        walks.clear()
        for q in (records[3][2], records[70][2], "w1 w2 w3"):
            got = [h.citation.source for h in big.search(q, mode="dense", k=10, where=flt)]
            assert got == _exact(emb, records, q, allowed, 10), flt
        assert bool(walks) == walked, flt
    assert asked == []  # numbers and string equality: the bitmaps answered, no query over every chunk


def test_postgres_leaves_to_sql_what_jsonb_compares_differently(big: Collection, monkeypatch) -> None:
    """A JSON boolean or null, and the order of strings (the database's collation), are
    compared by PostgreSQL; the answer is still the exact one."""
    records = _records(600)
    emb = _Random()
    asked: list[object] = []
    real_filter_rows = big.backend.filter_rows
    monkeypatch.setattr(big.backend, "filter_rows", lambda where, **kw: asked.append(where)
                        or real_filter_rows(where, **kw))
    for flt, allowed in (({"flag": True}, lambda m: m["flag"]), ({"tag": {"$lt": "f"}}, lambda m: m["tag"] < "f")):
        q = records[9][2]
        assert [h.citation.source for h in big.search(q, mode="dense", k=10, where=flt)] == \
            _exact(emb, records, q, allowed, 10)
    assert len(asked) == 2


def test_postgres_keeps_term_ids_and_sees_new_terms_after_an_ingest(big: Collection, monkeypatch) -> None:
    sent: list[str] = []
    real_q = big.backend._q
    monkeypatch.setattr(big.backend, "_q", lambda sql, params=(): sent.append(sql) or real_q(sql, params))
    assert big.search("w5 w6 zyzzyva", mode="bm25", k=5)
    assert any("keel_context.vocab" in s for s in sent)
    sent.clear()
    assert big.search("w6 zyzzyva w5", mode="bm25", k=5)
    assert not any("keel_context.vocab" in s for s in sent)  # known ids and the known-missing word: no query
    big.add_records([("new", "", "zyzzyva wings", {"i": 1000})])  # a new generation: the word exists now
    assert big.search("zyzzyva", mode="bm25", k=3)[0].citation.source == "new"
