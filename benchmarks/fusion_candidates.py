"""General fusion and expansion methods for the default hybrid, on three collections (issue 18, decision 0044).

    python benchmarks/fusion_candidates.py            # Cranfield, ADI and the Agents SDK docs
    python benchmarks/fusion_candidates.py adi        # one of them

Each collection is indexed by Keel with the default embedder (all-MiniLM-L6-v2); then every
query's dense score (cosine) and BM25 score of *every* row are read from Keel's own indexes,
and each candidate method is computed from those matrices and scored by nDCG@10. The
"default" column is checked against ``Collection.search`` so the matrices are the real ones.

The docs corpus (``../shared/datasets/agents-sdk-docs``) has no judgments: a section heading
of two or more words is the query and the chunks under it (at most 5) are the relevant ones
(decision 0025's check). Its heading is in the indexed text (heading path on top), so it favours
BM25; it is here as a collection the choices were not made on.

Candidates (no constant fitted to these collections, unless a range is shown):

- confidence weights per query: each signal's dense share set from its own score list
  (``zmax``: how far its best score stands above the pool's mean, in standard deviations;
  ``gap10``: top-1 minus top-10 over the list's range; ``cross``: how well the other signal
  supports its top 10);
- neighbourhood methods (the cluster hypothesis), at several neighbour counts ``k``:
  dense document expansion (each row's vector plus the mean of its ``k`` nearest rows'),
  smoothing of the fused score over the ``k`` nearest pool rows (weight 0.5), smoothing of the
  BM25 score over the ``k`` nearest rows (weight 0.5);
- fields (SMART collections, which have ``.T``): BM25 of the title as a field of its own
  added to BM25 of the body (Elasticsearch's ``most_fields`` with no boosts);
- proximity: BM25 plus Tao and Zhai's MinDist term, ``log(0.3 + exp(-mindist))`` (SIGIR 2007,
  their published alpha), over the BM25 candidates.

Exploration-only (not here): the title embedded as a second vector, and long Cranfield abstracts
(25% exceed MiniLM's 256 word pieces) embedded in windows; decision 0044 has their figures.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / ".." / "shared" / "datasets"
POOL = 200  # Keel's DEFAULT_POOL: each signal's candidate list


def top(sc: np.ndarray, k: int = POOL, positive: bool = False) -> np.ndarray:
    rows = np.argsort(-sc, kind="stable")[:k]
    return rows[sc[rows] > 0] if positive else rows


def minmax(sc: np.ndarray, rows: np.ndarray) -> np.ndarray:
    v = sc[rows]
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi > lo else np.ones_like(v)


def convex(dsc: np.ndarray, bsc: np.ndarray, wd: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Keel's default fusion: ``(rows, fused scores)`` of the union of both pools, unsorted."""
    fused: dict[int, float] = {}
    for rows, sc, w in ((top(dsc), dsc, wd), (top(bsc, positive=True), bsc, 1 - wd)):
        if len(rows):
            for r, v in zip(rows.tolist(), minmax(sc, rows).tolist(), strict=True):
                fused[r] = fused.get(r, 0.0) + w * v
    rows = np.fromiter(fused, dtype=np.int64, count=len(fused))
    return rows, np.fromiter(fused.values(), dtype=np.float64, count=len(fused))


def ranked(rows: np.ndarray, sc: np.ndarray) -> np.ndarray:
    return rows[np.lexsort((rows, -sc))]


def load(name: str, tmp: Path) -> dict:
    """Index ``name`` with Keel and read the score matrices back."""
    from keel.context import Collection
    from keel.context.embedders import get_embedder
    from keel.context.lexical import analyze
    from keel.context.metrics import evaluate

    os.environ["KEEL_HOME"] = str(tmp / name)
    emb = get_embedder("minilm")
    with Collection.open(name) as col:
        if name == "docs":
            col.add([DATASETS / "agents-sdk-docs"])
        else:
            from keel.context.smart import load_smart

            data = load_smart(DATASETS / name)
            col.add_records([(d.id, d.title, d.text, {}) for d in data.docs])
        col.search("warm up", k=1)
        idx = col._load()  # the in-process indexes: every row's scores, not only the top k
        ids = [int(i) for i in idx.ids]
        hit = {r[0]: r for r in col.backend.hit_rows(ids)}
        if name == "docs":
            src = [str(i) for i in ids]
            under: dict[str, set[str]] = {}
            for r, i in enumerate(ids):
                for h in set(json.loads(hit[i][7] or "[]")):
                    under.setdefault(h, set()).add(src[r])
            heads = sorted(h for h, rows in under.items() if len(h.split()) >= 2 and len(rows) <= 5)
            qids, qtext = [f"h{j}" for j in range(len(heads))], heads
            qrels = {q: dict.fromkeys(under[h], 1) for q, h in zip(qids, heads, strict=True)}
            titles = bodies = None
        else:
            src = [hit[i][2] for i in ids]
            qids, qtext = [q.id for q in data.queries], [q.text for q in data.queries]
            qrels = {k: dict(v) for k, v in data.qrels.items()}
            by_id = {d.id: d for d in data.docs}
            titles, bodies = [by_id[s].title for s in src], [by_id[s].text for s in src]
        qv = emb.embed(qtext)
        vectors = np.asarray(idx.dense.vectors, dtype=np.float32)
        bm25 = np.zeros((len(qtext), len(ids)), dtype=np.float32)
        for i, q in enumerate(qtext):
            words = analyze(q)
            known = col.backend.lookup_terms(list(dict.fromkeys(words)))
            bm25[i] = idx.bm25.scores([known[w] for w in words if w in known])
        real = {qids[i]: [h.citation.source if name != "docs" else str(h.chunk_id)
                          for h in col.search(qtext[i], k=100, query_vector=qv[i])] for i in range(len(qtext))}
        check = evaluate(real, qrels)["ndcg@10"]
        texts = [hit[i][1] for i in ids]
    return dict(name=name, src=src, qids=qids, qtext=qtext, qrels=qrels, qv=qv, V=vectors, D=qv @ vectors.T,
                B=bm25, texts=texts, titles=titles, bodies=bodies, search_default=check)


def ndcg(d: dict, rank_of) -> float:
    from keel.context.metrics import evaluate

    run = {}
    for i, q in enumerate(d["qids"]):
        seen: list[str] = []
        for r in rank_of(i)[:100]:
            if d["src"][r] not in seen:
                seen.append(d["src"][r])
        run[q] = seen
    return evaluate(run, d["qrels"])["ndcg@10"]


def bm25_index(token_lists: list[list[str]], vocab: dict[str, int]):
    from keel.context.bm25 import BM25Index, pack_terms

    blobs = []
    for toks in token_lists:
        c = Counter(vocab.setdefault(w, len(vocab)) for w in toks)
        blobs.append(pack_terms(dict(c)) if c else b"")
    return BM25Index(blobs)


def candidates(d: dict) -> dict[str, float]:
    from keel.context.lexical import analyze

    D, B, V, qv = d["D"], d["B"], d["V"], d["qv"]
    n_q = len(d["qids"])
    out = {"dense": ndcg(d, lambda i: top(D[i], 100)), "bm25": ndcg(d, lambda i: top(B[i], 100, True))}
    out["default: convex min-max 0.5"] = ndcg(d, lambda i: ranked(*convex(D[i], B[i])))

    def conf(kind: str):
        def rank(i: int) -> np.ndarray:
            dr, br = top(D[i]), top(B[i], positive=True)
            if kind == "zmax":
                def c(sc, rows):
                    v = sc[rows]
                    return (v.max() - v.mean()) / v.std() if v.std() > 0 else 0.0
                cd, cb = c(D[i], dr), c(B[i], br)
            elif kind == "gap10":
                def c(sc, rows):
                    v = np.sort(sc[rows])[::-1]
                    return (v[0] - v[min(9, len(v) - 1)]) / (v[0] - v[-1]) if len(v) and v[0] > v[-1] else 0.0
                cd, cb = c(D[i], dr), c(B[i], br)
            else:  # cross: the other signal's mean normalised score over this signal's top 10
                nd = dict(zip(dr.tolist(), minmax(D[i], dr).tolist(), strict=True))
                nb = dict(zip(br.tolist(), minmax(B[i], br).tolist(), strict=True)) if len(br) else {}
                cd = float(np.mean([nb.get(r, 0.0) for r in dr[:10].tolist()]))
                cb = float(np.mean([nd.get(r, 0.0) for r in br[:10].tolist()])) if len(br) else 0.0
            return ranked(*convex(D[i], B[i], cd / (cd + cb) if cd + cb > 0 else 0.5))
        return rank

    for kind in ("zmax", "gap10", "cross"):
        out[f"confidence weights per query: {kind}"] = ndcg(d, conf(kind))

    sim = V @ V.T
    np.fill_diagonal(sim, -np.inf)
    near = np.argsort(-sim, axis=1)[:, :10]
    for k in (2, 3, 5, 10):
        v2 = V + V[near[:, :k]].mean(axis=1)
        v2 /= np.linalg.norm(v2, axis=1, keepdims=True)
        d2 = qv @ v2.T
        out[f"dense document expansion, k {k}"] = ndcg(d, lambda i, d2=d2: ranked(*convex(d2[i], B[i])))
    pools = [convex(D[i], B[i]) for i in range(n_q)]
    for k in (3, 5, 10):
        def smooth(i: int, k: int = k) -> np.ndarray:
            rows, fv = pools[i]
            p = V[rows] @ V[rows].T
            np.fill_diagonal(p, -np.inf)
            kk = min(k, len(rows) - 1)
            sm = fv + 0.5 * fv[np.argsort(-p, axis=1)[:, :kk]].mean(axis=1) if kk > 0 else fv
            return ranked(rows, sm)
        out[f"fused score smoothed over the pool's k nearest, k {k}"] = ndcg(d, smooth)
    for k in (3, 5):
        b2 = B + 0.5 * B[:, near[:, :k]].mean(axis=2)
        out[f"BM25 smoothed over the k nearest rows, k {k}"] = ndcg(d, lambda i, b2=b2: ranked(*convex(D[i], b2[i])))

    if d["titles"] is not None:
        vocab: dict[str, int] = {}
        t_ix = bm25_index([analyze(t or "") for t in d["titles"]], vocab)
        b_ix = bm25_index([analyze(t or "") for t in d["bodies"]], vocab)
        fields = np.zeros_like(B)
        for i, q in enumerate(d["qtext"]):
            ids = [vocab[w] for w in analyze(q) if w in vocab]
            fields[i] = t_ix.scores(ids) + b_ix.scores(ids)
        out["BM25 title field + body field (most_fields)"] = ndcg(d, lambda i: ranked(*convex(D[i], fields[i])))

    positions = []
    for text in d["texts"]:
        p: dict[str, list[int]] = {}
        for j, w in enumerate(analyze(text)):
            p.setdefault(w, []).append(j)
        positions.append(p)
    prox = B.copy()
    for i, q in enumerate(d["qtext"]):
        terms = list(dict.fromkeys(analyze(q)))
        for r in top(B[i], positive=True).tolist():
            present = [w for w in terms if w in positions[r]]
            best = min((min(abs(x - y) for x in positions[r][a] for y in positions[r][b])
                        for ai, a in enumerate(present) for b in present[ai + 1:]), default=None)
            prox[i, r] += (math.log(0.3 + math.exp(-best)) if best is not None else math.log(0.3)) - math.log(0.3)
    out["BM25 + proximity (MinDist)"] = ndcg(d, lambda i: ranked(*convex(D[i], prox[i])))
    return out


def main() -> None:
    names = sys.argv[1:] or ["cranfield", "adi", "docs"]
    if not DATASETS.is_dir():
        sys.exit(f"{DATASETS} is missing: these benchmarks need ../shared/datasets")
    tmp = Path(tempfile.mkdtemp(prefix="keel-fusion-cand-"))
    try:
        table: dict[str, dict[str, float]] = {}
        for name in names:
            d = load(name, tmp)
            table[name] = candidates(d)
            print(f"{name}: {len(d['qids'])} queries, {len(d['src'])} rows; Collection.search default "
                  f"{d['search_default']:.4f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = list(next(iter(table.values())))
    for t in table.values():
        rows += [r for r in t if r not in rows]
    print("\n| method | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for r in rows:
        cells = []
        for name in names:
            v = table[name].get(r)
            base = table[name]["default: convex min-max 0.5"]
            cells.append("" if v is None else f"{v:.4f}" + ("" if r in ("dense", "bm25") or r.startswith("default")
                                                          else f" ({v - base:+.4f})"))
        print(f"| {r} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
