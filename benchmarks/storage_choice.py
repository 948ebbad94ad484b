"""The measurement behind docs/decisions/0002-context-storage.md.

Cranfield (1,400 abstracts, 225 queries) embedded once with all-MiniLM-L6-v2,
then replicated to ~100k chunks (vectors get small noise so that they differ).
For each candidate: build/insert time, query latency p50/p95, size on disk and,
for ANN indexes, recall@10 against exact search.

    python benchmarks/storage_choice.py [--n 100000]
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cranfield"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def timed(fn, queries) -> tuple[float, float]:
    lat = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        lat.append((time.perf_counter() - t) * 1000)
    return statistics.median(lat), pct(lat, 0.95)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()

    from keel.context.bm25 import BM25Index, pack_terms
    from keel.context.embedders import MiniLMEmbedder
    from keel.context.lexical import analyze, fts_query
    from keel.context.smart import load_smart

    col = load_smart(DATA)
    texts = [f"{d.title}\n{d.text}" for d in col.docs]
    qtexts = [q.text for q in col.queries]
    emb = MiniLMEmbedder()
    base = emb.embed(texts)
    qv = emb.embed(qtexts)
    reps = -(-args.n // len(texts))
    rng = np.random.default_rng(0)
    vecs = np.concatenate([base + rng.normal(0, 0.01, base.shape).astype(np.float32) for _ in range(reps)])[: args.n]
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    all_texts = (texts * reps)[: args.n]
    n = len(all_texts)
    print(f"corpus: {n} chunks, dim {vecs.shape[1]}, {len(qtexts)} queries")
    tmp = Path(tempfile.mkdtemp())

    # -- SQLite FTS5 (BM25) + vectors as BLOBs in the same file -------------------------
    db = sqlite3.connect(tmp / "c.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, text TEXT, vec BLOB)")
    db.execute("CREATE VIRTUAL TABLE fts USING fts5(text, content='chunks', content_rowid='id', tokenize='porter unicode61')")
    t = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT INTO chunks (id, text, vec) VALUES (?, ?, ?)",
                   ((i, s, vecs[i].tobytes()) for i, s in enumerate(all_texts)))
    db.execute("INSERT INTO fts (rowid, text) SELECT id, text FROM chunks")
    db.execute("COMMIT")
    t_ins = time.perf_counter() - t
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = (tmp / "c.db").stat().st_size
    qs = [fts_query(q) for q in qtexts]
    p50, p95 = timed(lambda q: db.execute(
        "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT 200", (q,)).fetchall(), qs)
    print(f"fts5 bm25: insert {n / t_ins:,.0f} rows/s (text+vector), file {size / 1e6:.0f} MB, "
          f"query p50 {p50:.1f} ms p95 {p95:.1f} ms")
    t = time.perf_counter()
    rows = db.execute("SELECT vec FROM chunks ORDER BY id").fetchall()
    loaded = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    print(f"load {len(rows)} vectors from SQLite into numpy: {(time.perf_counter() - t) * 1000:.0f} ms")

    # -- Keel's BM25: numpy sparse columns built from stored term counts -------------------
    vocab: dict[str, int] = {}
    base_blobs = []
    for s_ in texts:
        counts: dict[int, int] = {}
        for t_ in analyze(s_):
            tid = vocab.setdefault(t_, len(vocab))
            counts[tid] = counts.get(tid, 0) + 1
        base_blobs.append(pack_terms(counts))
    blobs = (base_blobs * reps)[:n]
    t = time.perf_counter()
    bm = BM25Index(blobs)
    t_b = time.perf_counter() - t
    qids = [[vocab[w] for w in dict.fromkeys(analyze(q)) if w in vocab] for q in qtexts]

    def bm25_top(ids, k=200):
        return bm.top(ids, k)

    p50, p95 = timed(bm25_top, qids)
    print(f"numpy BM25 (keel.context.bm25): build {t_b * 1000:.0f} ms, query p50 {p50:.1f} ms p95 {p95:.1f} ms")

    # -- tantivy (Lucene-like, Rust) ----------------------------------------------------
    try:
        import tantivy

        sb = tantivy.SchemaBuilder()
        sb.add_text_field("text", stored=False, tokenizer_name="en_stem")
        sb.add_integer_field("id", stored=True, indexed=True)
        schema = sb.build()
        (tmp / "tv").mkdir()
        tix = tantivy.Index(schema, path=str(tmp / "tv"))
        t = time.perf_counter()
        w = tix.writer(heap_size=200_000_000, num_threads=2)
        for i, s_ in enumerate(all_texts):
            w.add_document(tantivy.Document(text=s_, id=i))
        w.commit()
        w.wait_merging_threads()
        t_b = time.perf_counter() - t
        tix.reload()
        searcher = tix.searcher()
        tq = [" ".join(f'"{w_}"' for w_ in fts_query(q).replace('"', "").split(" OR ") if w_) for q in qtexts]
        p50, p95 = timed(lambda q: searcher.search(tix.parse_query(q, ["text"]), 200).hits, [q for q in tq if q])
        tsize = sum(f.stat().st_size for f in (tmp / "tv").iterdir())
        print(f"tantivy: index {n / t_b:,.0f} docs/s, {tsize / 1e6:.0f} MB, query p50 {p50:.1f} ms p95 {p95:.1f} ms")
    except ImportError:
        print("tantivy: not installed")

    # -- LanceDB (Arrow/Lance files; vectors + FTS) ----------------------------------------
    try:
        import lancedb
        import pyarrow as pa

        ldb = lancedb.connect(str(tmp / "lance"))
        t = time.perf_counter()
        table = ldb.create_table("c", pa.table({
            "id": pa.array(np.arange(n)), "text": pa.array(all_texts),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), vecs.shape[1])}))
        t_b = time.perf_counter() - t
        p50, p95 = timed(lambda q: table.search(q).limit(200).to_arrow(), qv[:60])
        print(f"lancedb: write {n / t_b:,.0f} rows/s, exact vector query p50 {p50:.1f} ms p95 {p95:.1f} ms")
        try:
            t = time.perf_counter()
            table.create_fts_index("text")
            t_b = time.perf_counter() - t
            p50, p95 = timed(lambda q: table.search(q, query_type="fts").limit(200).to_arrow(), qtexts[:60])
            print(f"lancedb fts: build {t_b:.1f} s, query p50 {p50:.1f} ms p95 {p95:.1f} ms")
        except Exception as e:
            print(f"lancedb fts: failed: {e}")
    except ImportError:
        print("lancedb: not installed")

    # -- exact numpy --------------------------------------------------------------------
    def exact(q, k=200):
        s = loaded @ q
        idx = np.argpartition(-s, k)[:k]
        return idx[np.argsort(-s[idx])]

    p50, p95 = timed(exact, qv)
    print(f"numpy exact: query p50 {p50:.1f} ms p95 {p95:.1f} ms, recall 1.0 by construction")
    truth = [set(exact(q, 10)) for q in qv]

    def recall(fn) -> float:
        return statistics.mean(len(truth[i] & set(map(int, fn(q)))) / 10 for i, q in enumerate(qv))

    # -- hnswlib --------------------------------------------------------------------------
    try:
        import hnswlib

        t = time.perf_counter()
        h = hnswlib.Index(space="ip", dim=vecs.shape[1])
        h.init_index(max_elements=n, ef_construction=100, M=16)
        h.add_items(vecs, np.arange(n), num_threads=2)
        t_b = time.perf_counter() - t
        h.set_ef(200)
        h.save_index(str(tmp / "h.bin"))
        p50, p95 = timed(lambda q: h.knn_query(q, k=200), qv)
        r = recall(lambda q: h.knn_query(q, k=10)[0][0])
        print(f"hnswlib: build {t_b:.1f} s ({n / t_b:,.0f}/s), file {(tmp / 'h.bin').stat().st_size / 1e6:.0f} MB, "
              f"query p50 {p50:.2f} ms p95 {p95:.2f} ms, recall@10 {r:.3f}")
    except ImportError:
        print("hnswlib: not installed")

    # -- usearch --------------------------------------------------------------------------
    try:
        from usearch.index import Index

        t = time.perf_counter()
        u = Index(ndim=vecs.shape[1], metric="ip", dtype="f32")
        u.add(np.arange(n), vecs, threads=2)
        t_b = time.perf_counter() - t
        u.save(str(tmp / "u.bin"))
        p50, p95 = timed(lambda q: u.search(q, 200), qv)
        r = recall(lambda q: u.search(q, 10).keys)
        print(f"usearch: build {t_b:.1f} s ({n / t_b:,.0f}/s), file {(tmp / 'u.bin').stat().st_size / 1e6:.0f} MB, "
              f"query p50 {p50:.2f} ms p95 {p95:.2f} ms, recall@10 {r:.3f}")
    except ImportError:
        print("usearch: not installed")

    # -- sqlite-vec (brute force inside SQLite) -------------------------------------------
    try:
        import sqlite_vec

        v = sqlite3.connect(tmp / "v.db", isolation_level=None)
        if not hasattr(v, "enable_load_extension"):
            raise RuntimeError("this Python's sqlite3 module was built without extension loading")
        v.enable_load_extension(True)
        sqlite_vec.load(v)
        v.execute(f"CREATE VIRTUAL TABLE vv USING vec0(embedding float[{vecs.shape[1]}])")
        t = time.perf_counter()
        v.execute("BEGIN")
        v.executemany("INSERT INTO vv (rowid, embedding) VALUES (?, ?)", ((i, vecs[i].tobytes()) for i in range(n)))
        v.execute("COMMIT")
        t_b = time.perf_counter() - t
        p50, p95 = timed(lambda q: v.execute(
            "SELECT rowid FROM vv WHERE embedding MATCH ? ORDER BY distance LIMIT 200", (q.tobytes(),)).fetchall(),
            qv[:40])
        print(f"sqlite-vec: insert {n / t_b:,.0f}/s, query p50 {p50:.1f} ms p95 {p95:.1f} ms (exact)")
    except ImportError:
        print("sqlite-vec: not installed")
    except RuntimeError as e:
        print(f"sqlite-vec: cannot be loaded: {e}")

    # -- fork cost: SQLite online backup of the whole file --------------------------------
    t = time.perf_counter()
    dst = sqlite3.connect(tmp / "fork.db")
    db.backup(dst)
    dst.close()
    print(f"full copy of the collection file (backup API): {(time.perf_counter() - t) * 1000:.0f} ms, "
          f"{(tmp / 'fork.db').stat().st_size / 1e6:.0f} MB")
    _ = re


if __name__ == "__main__":
    main()
