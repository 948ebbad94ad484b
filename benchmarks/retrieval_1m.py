"""Retrieval at a million chunks (issue 18): Keel hybrid p50 vs Chroma dense p50, memory and disk.

    python benchmarks/retrieval_1m.py                           # 1,000,000 chunks, all phases (~45-60 min, 2 cores)
    python benchmarks/retrieval_1m.py --chunks 100000           # the same at 100k (~8 min)
    python benchmarks/retrieval_1m.py --phase query --keep      # re-measure queries on a kept build

The collection is Cranfield's 1,400 documents replicated with variation until there are
``--chunks`` of them: copy ``r`` of a document carries the tag ``[copy r]`` (new terms, so
copies differ lexically) and a vector made once from the document's MiniLM vector
(``minilm-onnx``, the same vectors as ``minilm``) plus Gaussian noise (sigma 0.01 per
dimension, seeded by the copy), renormalised. Embedding a million chunks on 2 cores is out
of reach, so the vectors are computed once and both systems get exactly the same ones.

Phases, each in its own process so one system's memory does not count against the
other's (``--phase all`` runs them one after the other):

1. ``keel``: ingest with vectors given (Keel's normal record ingest; the embedder is a
   lookup into the precomputed vectors), then the first search, which builds BM25 and the
   HNSW graph and saves the graph to disk.
2. ``chroma``: ``collection.add`` of the same ids, texts and vectors in batches of 5,000
   (Chroma builds its HNSW graph while adding).
3. ``query``: a fresh process opens both (Keel reads its saved graph), then for every
   Cranfield query (225), interleaved query by query over ``--rounds`` rounds: Chroma dense
   (k=100), Keel hybrid (k=100 and k=10), Keel dense and Keel BM25 (k=100). p50 of each;
   RSS growth when each system loads (measured in that process), the in-process index
   bytes, on-disk sizes, and dense recall@100 of both against exact search on 50 queries.

Results go to stdout and ``DIR/results.json``; the markdown summary is pasted by hand into
the "Retrieval speed" section of docs/benchmarks.md (its other figures come from
benchmarks/retrieval_speed.py). ``DIR`` is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import retrieval  # the shared Chroma helpers

ROOT = Path(__file__).resolve().parents[1]
DATASETS = retrieval.DATASETS
_TAG = re.compile(r" \[copy (\d+)\]$")
_STEP = 50_000


def rss_mb(kind: str = "VmRSS") -> float:
    """Resident set size of this process now, in MB (``RssAnon``: heap only, without the
    file pages a memory map has touched, which the OS can drop)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(kind + ":"):
                return int(line.split()[1]) / 1e3
    return 0.0


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def base_data(work: Path) -> dict:
    """Cranfield texts, queries, and their MiniLM vectors (computed once, cached in ``work``)."""
    from keel.context.smart import load_smart

    data = load_smart(DATASETS / "cranfield")
    texts = [f"{d.title}\n{d.text}" if d.title and not d.text.startswith(d.title) else d.text for d in data.docs]
    queries = [q.text for q in data.queries]
    cache = work / "base.npz"
    if cache.exists():
        z = np.load(cache)
        dvecs, qvecs = z["dvecs"], z["qvecs"]
    else:
        from keel.context.embedders import MiniLMEmbedder

        emb = MiniLMEmbedder(runtime="onnx")  # minilm's vectors, computed faster
        t = time.perf_counter()
        dvecs, qvecs = emb.embed(texts), emb.embed(queries)
        print(f"embedded {len(texts)} documents and {len(queries)} queries in {time.perf_counter() - t:.0f} s",
              flush=True)
        np.savez(cache, dvecs=dvecs, qvecs=qvecs)
    return {"texts": texts, "dvecs": np.asarray(dvecs, dtype=np.float32), "queries": queries,
            "qvecs": np.asarray(qvecs, dtype=np.float32)}


def replicas(base: dict, n: int) -> tuple[list[str], list[str], np.ndarray]:
    """``(ids, texts, vectors)`` of ``n`` chunks: copy ``r`` of document ``i`` is row ``r * len(docs) + i``."""
    texts0, d0 = base["texts"], base["dvecs"]
    nb = len(texts0)
    reps = -(-n // nb)
    vecs = np.empty((reps * nb, d0.shape[1]), dtype=np.float32)
    ids, texts = [], []
    for r in range(reps):
        block = d0 if r == 0 else d0 + np.random.default_rng(r).normal(0, 0.01, d0.shape).astype(np.float32)
        vecs[r * nb:(r + 1) * nb] = block / np.linalg.norm(block, axis=1, keepdims=True)
        ids.extend(f"{r}-{i}" for i in range(nb))
        texts.extend(texts0 if r == 0 else (f"{t} [copy {r}]" for t in texts0))
    return ids[:n], texts[:n], vecs[:n]


class ReplicaEmbedder:
    """The precomputed replica vectors, looked up by text (the tag gives the copy)."""

    name = "bench-replica:all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, base_texts: list[str] | None = None, vecs: np.ndarray | None = None) -> None:
        self.row: dict[str, int] = {}
        for i, t in enumerate(base_texts or []):
            self.row.setdefault(t, i)  # Cranfield repeats a few texts: the first one's vector
        self.nb = len(base_texts or [])
        self.vecs = vecs

    def embed(self, texts):
        if self.vecs is None:
            raise RuntimeError("the query phase passes query vectors; nothing should be embedded")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for j, t in enumerate(texts):
            m = _TAG.search(t)
            r, body = (int(m.group(1)), t[: m.start()]) if m else (0, t)
            out[j] = self.vecs[r * self.nb + self.row[body]]
        return out


def phase_keel(work: Path, n: int) -> dict:
    from keel.context import Collection

    base = base_data(work)
    ids, texts, vecs = replicas(base, n)
    records = [(cid, "", t, {"copy": int(cid.split("-", 1)[0])}) for cid, t in zip(ids, texts, strict=True)]
    del texts
    os.environ["KEEL_HOME"] = str(work / "keel")
    emb = ReplicaEmbedder(base["texts"], vecs)
    out: dict = {}
    with Collection.open("million", embedder=emb) as col:
        t0 = time.perf_counter()
        done = col.stats().chunks  # a re-run resumes: records already in are skipped
        if done >= n:
            return {}  # built by an earlier run: its figures stay
        for i in range(0, n, _STEP):
            col.add_records(records[i:i + _STEP])
            el = time.perf_counter() - t0
            print(f"keel: {min(i + _STEP, n):,} chunks in {el:.0f} s ({(min(i + _STEP, n) - done) / el:,.0f}/s)",
                  flush=True)
        out["keel_ingest_s"] = time.perf_counter() - t0
        out["keel_ingest_resumed_from"] = done
        del records
        gc.collect()
        t = time.perf_counter()
        col.search("warm up", k=1, query_vector=base["qvecs"][0])
        out["keel_index_build_s"] = time.perf_counter() - t
        print(f"keel: BM25 + HNSW built in {out['keel_index_build_s']:.0f} s", flush=True)
    return out


def phase_chroma(work: Path, n: int) -> dict:
    base = base_data(work)
    ids, texts, vecs = replicas(base, n)
    client = retrieval.chroma_client(work / "chroma")
    ccol = client.get_or_create_collection("million", metadata={"hnsw:space": "cosine"})
    done = ccol.count()
    t0 = time.perf_counter()
    if done >= n:
        return {}  # built by an earlier run: its figures stay
    for i in range(done, n, _STEP):
        retrieval.chroma_add(ccol, ids[i:i + _STEP], vecs[i:i + _STEP], texts[i:i + _STEP])
        el = time.perf_counter() - t0
        print(f"chroma: {min(i + _STEP, n):,} chunks in {el:.0f} s ({(min(i + _STEP, n) - done) / el:,.0f}/s)",
              flush=True)
    return {"chroma_add_s": time.perf_counter() - t0, "chroma_resumed_from": done}


def phase_query(work: Path, n: int, rounds: int) -> dict:
    from keel.context import Collection

    base = base_data(work)
    queries, qvecs = base["queries"], base["qvecs"]
    os.environ["KEEL_HOME"] = str(work / "keel")
    out: dict = {}
    gc.collect()
    r0, a0 = rss_mb(), rss_mb("RssAnon")
    t = time.perf_counter()
    col = Collection.open("million", embedder=ReplicaEmbedder(), create=False)
    col.search(queries[0], k=100, query_vector=qvecs[0])
    out["keel_open_first_answer_s"] = time.perf_counter() - t
    gc.collect()
    out["keel_rss_mb"], out["keel_rss_anon_mb"] = rss_mb() - r0, rss_mb("RssAnon") - a0
    idx = col._indexes
    graph = col.directory / "index" / "dense.hnsw"
    bm25 = idx.bm25
    out["keel_index_mb"] = (idx.dense.vectors.nbytes + bm25.rows.nbytes + bm25.weights.nbytes + bm25.indptr.nbytes
                            + idx.ids.nbytes + (graph.stat().st_size if graph.exists() else 0)) / 1e6
    r1, a1 = rss_mb(), rss_mb("RssAnon")
    t = time.perf_counter()
    client = retrieval.chroma_client(work / "chroma")
    ccol = client.get_collection("million")
    ccol.query(query_embeddings=[qvecs[0]], n_results=100)
    out["chroma_open_first_answer_s"] = time.perf_counter() - t
    out["chroma_chunks"] = ccol.count()  # fewer than --chunks when its add was stopped early
    gc.collect()
    out["chroma_rss_mb"], out["chroma_rss_anon_mb"] = rss_mb() - r1, rss_mb("RssAnon") - a1
    print(f"opened: Keel {out['keel_open_first_answer_s']:.1f} s (+{out['keel_rss_mb']:.0f} MB RSS), "
          f"Chroma {out['chroma_open_first_answer_s']:.1f} s (+{out['chroma_rss_mb']:.0f} MB RSS)", flush=True)

    systems = {
        "chroma dense k=100": lambda i: ccol.query(query_embeddings=[qvecs[i]], n_results=100),
        "keel hybrid k=100": lambda i: col.search(queries[i], k=100, query_vector=qvecs[i]),
        "keel hybrid k=10": lambda i: col.search(queries[i], k=10, query_vector=qvecs[i]),
        "keel dense k=100": lambda i: col.search(queries[i], mode="dense", k=100, query_vector=qvecs[i]),
        "keel bm25 k=100": lambda i: col.search(queries[i], mode="bm25", k=100),
    }
    lat: dict[str, list[float]] = {k: [] for k in systems}
    ratios: list[float] = []
    for r in range(rounds):
        for i in range(len(queries)):
            order = list(systems) if (i + r) % 2 == 0 else list(reversed(systems))
            for name in order:
                t = time.perf_counter()
                systems[name](i)
                lat[name].append((time.perf_counter() - t) * 1000)
            ratios.append(lat["keel hybrid k=100"][-1] / lat["chroma dense k=100"][-1])
        print(f"round {r + 1}: " + ", ".join(f"{k} {statistics.median(v):.2f} ms" for k, v in lat.items()),
              flush=True)
    out["p50_ms"] = {k: statistics.median(v) for k, v in lat.items()}
    out["p95_ms"] = {k: sorted(v)[int(0.95 * len(v))] for k, v in lat.items()}
    out["hybrid_over_chroma_p50"] = out["p50_ms"]["keel hybrid k=100"] / out["p50_ms"]["chroma dense k=100"]
    out["hybrid_over_chroma_median_pairwise"] = statistics.median(ratios)

    # dense recall@100 against exact search over the same replica vectors, 50 queries
    nb = len(base["texts"])
    _, _, vecs = replicas(base, n)

    def row(cid: str) -> int:
        r, i = cid.split("-", 1)
        return int(r) * nb + int(i)

    rk, rc = [], []
    for i in range(0, len(queries), max(1, len(queries) // 50)):
        true = vecs @ qvecs[i]
        # copies of a document are near-duplicates (cosine ~0.98 to each other), so recall counts a
        # returned chunk as found when its true score reaches the exact 100th best (less 1e-6)
        kth = float(np.partition(true, true.size - 100)[true.size - 100]) - 1e-6
        keel = [row(h.citation.source) for h in col.search(queries[i], mode="dense", k=100, query_vector=qvecs[i])]
        got = [row(c) for c in ccol.query(query_embeddings=[qvecs[i]], n_results=100, include=[])["ids"][0]]
        rk.append(float(np.mean(true[keel] >= kth)) * len(keel) / 100)
        rc.append(float(np.mean(true[got] >= kth)) * len(got) / 100)
    del vecs
    out["dense_recall@100"] = {"keel": float(np.mean(rk)), "chroma": float(np.mean(rc))}
    stats = col.stats()
    out["keel_disk_mb"] = (stats.bytes_collection + stats.bytes_shared) / 1e6
    out["chroma_disk_mb"] = dir_bytes(work / "chroma") / 1e6
    col.close()
    return out


def summary(res: dict, n: int) -> list[str]:
    per_m = 1e6 / n
    c_per_m = 1e6 / res.get("chroma_chunks", n)  # Chroma's own count when its add was stopped early
    p = res.get("p50_ms", {})
    lines = [f"### Hybrid at {n:,} chunks vs Chroma dense (`python benchmarks/retrieval_1m.py --chunks {n}`)", ""]
    if "keel_ingest_s" in res and "keel_index_build_s" in res:
        lines.append(f"Ingest with vectors given: Keel {n / res['keel_ingest_s']:,.0f} chunks/s, then "
                     f"{res['keel_index_build_s']:.0f} s to build BM25 and HNSW on the first search"
                     + (f"; Chroma add {n / res['chroma_add_s']:,.0f} chunks/s (HNSW built while adding)."
                        if "chroma_add_s" in res else "."))
    if p:
        lines += ["", "| query (225 Cranfield queries, interleaved) | p50 ms | p95 ms |", "|---|---:|---:|"]
        lines += [f"| {k} | {v:.2f} | {res['p95_ms'][k]:.2f} |" for k, v in p.items()]
        if res.get("chroma_chunks", n) < n:
            lines += ["", f"Chroma held only {res['chroma_chunks']:,} chunks (its add was stopped), Keel {n:,}."]
        lines += ["", f"Keel hybrid (k=100) / Chroma dense (k=100) p50: {res['hybrid_over_chroma_p50']:.2f}x "
                  f"(median of per-query ratios {res['hybrid_over_chroma_median_pairwise']:.2f}x; goal <= 1.0). "
                  f"Dense recall@100 against exact search (50 queries; a chunk counts when it scores at least "
                  f"the exact 100th best): Keel {res['dense_recall@100']['keel']:.3f},"
                  f" Chroma {res['dense_recall@100']['chroma']:.3f}.",
                  f"Memory: Keel's in-process indexes {res['keel_index_mb']:,.0f} MB "
                  f"({res['keel_index_mb'] * per_m / 1e3:.2f} GB per million chunks); RSS growth on opening and "
                  f"first search: Keel {res['keel_rss_mb']:,.0f} MB ({res['keel_rss_mb'] * per_m / 1e3:.2f} GB per "
                  f"million; {res.get('keel_rss_anon_mb', 0):,.0f} MB of it heap), Chroma {res['chroma_rss_mb']:,.0f} MB "
                  f"({res['chroma_rss_mb'] * c_per_m / 1e3:.2f} GB per million; {res.get('chroma_rss_anon_mb', 0):,.0f} MB "
                  f"heap). On disk: Keel {res['keel_disk_mb']:,.0f} MB "
                  f"({res['keel_disk_mb'] * per_m / 1e3:.1f} GB per million), Chroma {res['chroma_disk_mb']:,.0f} MB "
                  f"({res['chroma_disk_mb'] * c_per_m / 1e3:.1f} GB per million). Open to first answer: Keel "
                  f"{res['keel_open_first_answer_s']:.1f} s (saved graph), Chroma {res['chroma_open_first_answer_s']:.1f} s."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp") / "keel-retrieval-1m",
                    help="work folder (both systems' data; resumable; removed at the end unless --keep)")
    ap.add_argument("--phase", choices=("all", "keel", "chroma", "query", "report"), default="all",
                    help="one phase only (report: print the summary of DIR/results.json)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (to re-run --phase query)")
    args = ap.parse_args()
    if not DATASETS.is_dir():
        sys.exit(f"datasets not found at {DATASETS.resolve()}: this benchmark needs Cranfield")
    args.dir.mkdir(parents=True, exist_ok=True)
    results_path = args.dir / "results.json"
    res = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.phase == "report":
        print("\n".join(summary(res, args.chunks)))
        return
    if args.phase == "all":
        for phase in ("keel", "chroma", "query"):
            cmd = [sys.executable, __file__, "--chunks", str(args.chunks), "--dir", str(args.dir), "--phase", phase,
                   "--rounds", str(args.rounds)]
            if subprocess.run(cmd).returncode:
                sys.exit(f"phase {phase} failed; the work folder {args.dir} is kept (re-run to resume)")
        res = json.loads(results_path.read_text())
    else:
        load = os.getloadavg()
        res[f"{args.phase}_load_start"] = load[0]
        res[f"{args.phase}_started"] = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
        fn = {"keel": lambda: phase_keel(args.dir, args.chunks), "chroma": lambda: phase_chroma(args.dir, args.chunks),
              "query": lambda: phase_query(args.dir, args.chunks, args.rounds)}[args.phase]
        res.update(fn())
        res[f"{args.phase}_load_end"] = os.getloadavg()[0]
        res["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        # merged into the file as it is now: phases may run side by side (--phase keel and chroma at once)
        now = json.loads(results_path.read_text()) if results_path.exists() else {}
        results_path.write_text(json.dumps(now | res, indent=1))
        print(json.dumps(res, indent=1), flush=True)
        return
    print("\n".join(summary(res, args.chunks)))
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
