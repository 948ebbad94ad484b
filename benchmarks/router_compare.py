"""The comparison half of benchmarks/router.py: Keel's kNN router, a random router and RouteLLM's
matrix-factorisation router on the same stored outcomes, and the router's decision time."""

from __future__ import annotations

import os
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


def _outcomes(run_id: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    from keel.optimize.router import _outcomes as outcomes
    from keel.store import open_store

    q, s, w, _ = outcomes(open_store(), [run_id], "strong", "weak", None)
    return q, np.asarray(s, np.float32), np.asarray(w, np.float32)


def _at(rows: list[dict[str, float]], share: float) -> dict[str, float]:
    return min(rows, key=lambda r: abs(r["share"] - share))


def routellm_mf(train_q: list[str], s: np.ndarray, w: np.ndarray, test_q: list[str], embedder: Any,
                *, epochs: int = 100, seed: int = 42) -> np.ndarray:
    """RouteLLM's MF router trained as its train_matrix_factorization.py does (pairwise wins, ties dropped,
    dim 128, projection, Adam lr 3e-4, weight decay 1e-5, noise alpha 0.1, batch 64), on MiniLM query
    vectors; returns its strong-win score for each test query."""
    os.environ.setdefault("OPENAI_API_KEY", "unused-offline")  # routellm builds an OpenAI client at import
    import torch
    from routellm.routers.matrix_factorization.model import MODEL_IDS
    from routellm.routers.matrix_factorization.train_matrix_factorization import (
        MFModel_Train,
        PairwiseDataset,
    )

    strong_id, weak_id = "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"  # RouteLLM's default pair
    data = []
    for i in range(len(train_q)):
        if s[i] != w[i]:
            data.append({"model_a": strong_id, "model_b": weak_id, "idx": i,
                         "winner": "model_a" if s[i] > w[i] else "model_b"})
    vecs = embedder.embed(train_q)
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    npy = Path(os.environ["KEEL_HOME"]).parent / "routellm_q.npy"
    np.save(npy, vecs)
    net = MFModel_Train(dim=128, num_models=len(MODEL_IDS), num_prompts=len(train_q), text_dim=vecs.shape[1],
                        use_proj=True, npy_path=str(npy))
    loader = PairwiseDataset(data).get_dataloaders(batch_size=64, shuffle=True)
    opt = torch.optim.Adam(net.parameters(), lr=3e-4, weight_decay=1e-5)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(epochs):
        for win, lose, prompt in loader:
            logits = net(win, lose, prompt, alpha=0.1)
            loss = loss_fn(logits.reshape(-1), torch.ones(logits.numel()))
            opt.zero_grad()
            loss.backward()
            opt.step()
    # MatrixFactorizationRouter.calculate_strong_win_rate: sigmoid(classifier((P_s - P_w) * proj(q)))
    with torch.no_grad():
        p = torch.nn.functional.normalize(net.P.weight, p=2, dim=1)
        diff = p[MODEL_IDS[strong_id]] - p[MODEL_IDS[weak_id]]
        q = net.text_proj(torch.tensor(embedder.embed(test_q)))
        return torch.sigmoid(net.classifier(diff * q).squeeze(-1)).numpy()


def _timing(policy: Any, queries: list[str], n: int) -> dict[str, float]:
    policy.decide(queries[0])  # load the embedder
    times = []
    for i in range(n):
        started = time.perf_counter()
        policy.decide(queries[i % len(queries)])
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p99_ms": times[int(0.99 * (len(times) - 1))]}


def _interleaved_timing(policies: dict[str, Any], queries: list[str], n: int) -> dict[str, dict[str, float]]:
    """Decision time of each router, A/B interleaved: round ``i`` times every router on query ``i``, in an
    order rotated each round, so the machine's load falls on all of them alike."""
    names = list(policies)
    for name in names:
        policies[name].decide(queries[0])  # load the embedders
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(n):
        q = queries[i % len(queries)]
        for name in names[i % len(names):] + names[:i % len(names)]:
            started = time.perf_counter()
            policies[name].decide(q)
            times[name].append((time.perf_counter() - started) * 1000)
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"median_ms": statistics.median(ts), "p99_ms": ts[int(0.99 * (len(ts) - 1))]}
    return out


def _call_overhead(store: Any, train_run: str, queries: list[str], rounds: int = 300) -> dict[str, float]:
    """A whole ``router:NAME`` call against the same call made directly, A/B interleaved, with
    ``scripted:echo`` (no model time) behind both: what routing adds to a request."""
    import asyncio

    from keel.models import get_model
    from keel.optimize.router import train_router

    train_router(store, "bench-echo", runs=[train_run], strong="strong", weak="weak",
                 strong_model="scripted:echo", weak_model="scripted:echo")
    direct, routed = get_model("scripted:echo"), get_model("router:bench-echo")

    async def run() -> dict[str, float]:
        a, b = [], []
        for i in range(rounds):
            q = queries[i % len(queries)]
            for model, acc in ((direct, a), (routed, b)) if i % 2 == 0 else ((routed, b), (direct, a)):
                started = time.perf_counter()
                await model.generate(q).response()
                acc.append((time.perf_counter() - started) * 1000)
        return {"direct_median_ms": statistics.median(a), "router_median_ms": statistics.median(b),
                "overhead_median_ms": statistics.median(b) - statistics.median(a)}

    return asyncio.run(run())


EMBEDDERS = ("minilm-static", "minilm", "minilm-onnx", "minilm-int8")
"""The query embedders the Keel router is trained and timed with (``--embedders``)."""


def compare(train_run: str, test_run: str, *, decisions: int = 1000,
            embedders: tuple[str, ...] = EMBEDDERS) -> dict[str, Any]:
    from keel.optimize.router import apgr, curve, get_embedder, knn_gain, load_policy, train_router
    from keel.optimize.router_report import router_report
    from keel.store import open_store

    store = open_store()
    train_q, ts, tw = _outcomes(train_run)
    test_q, s, w = _outcomes(test_run)
    out: dict[str, Any] = {"weak_quality": float(w.mean()), "strong_quality": float(s.mean()),
                           "train_weak": float(tw.mean()), "train_strong": float(ts.mean()),
                           "test_items": len(test_q), "routers": {}}
    fine = [i / len(test_q) for i in range(len(test_q) + 1)]  # every share the test rows allow
    for emb in embedders:
        name = f"bench-{emb}"
        spec = train_router(store, name, runs=[train_run], strong="strong", weak="weak", embedder=emb)
        rep = router_report(store, name, runs=[test_run], strong="strong", weak="weak")
        half = _at(rep["curve"], 0.5)
        policy = load_policy(store, name)
        vectors = policy.embedder.embed(test_q)
        out["routers"][f"keel knn ({emb})"] = {"apgr": rep["apgr"], "quality_50": half["quality"],
                                               "pgr_50": half["pgr"], "k": spec.k,
                                               "apgr_fine": apgr(curve(s, w, policy.predict(vectors), fine)),
                                               **_timing(policy, test_q, decisions)}
        # the same vectors with the router before the k choice and the weighting: k=10, plain mean
        before = knn_gain(vectors @ policy.vectors.T, policy.gains, 10, "uniform")
        rows = curve(s, w, before)
        half = _at(rows, 0.5)
        out["routers"][f"keel knn ({emb}), k=10 unweighted (before)"] = {
            "apgr": apgr(rows), "quality_50": half["quality"], "pgr_50": half["pgr"], "k": 10,
            "apgr_fine": apgr(curve(s, w, before, fine))}
    policies = {emb: load_policy(store, f"bench-{emb}") for emb in embedders}
    out["interleaved"] = _interleaved_timing(policies, test_q, decisions)
    out["call"] = _call_overhead(store, train_run, test_q)
    out["routers"]["random"] = {"apgr": rep["random_apgr"], "quality_50": float(w.mean() + 0.5 * (s.mean() - w.mean())),
                                "pgr_50": 0.5}
    try:
        scores = routellm_mf(train_q, ts, tw, test_q, get_embedder("minilm"))
        rows = curve(s, w, scores)
        half = _at(rows, 0.5)
        out["routers"]["RouteLLM MF (minilm)"] = {"apgr": apgr(rows), "quality_50": half["quality"],
                                                  "pgr_50": half["pgr"], "apgr_fine": apgr(curve(s, w, scores, fine))}
        oracle = s - w  # the best any router can do: every row the strong model wins first
        out["ceiling"] = {"apgr": apgr(curve(s, w, oracle)), "apgr_fine": apgr(curve(s, w, oracle, fine))}
    except ImportError as e:
        out["routers"]["RouteLLM MF (minilm)"] = {"error": f"routellm not importable: {e}"}
    return out


def _f(x: Any, fmt: str = ".3f") -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


def write_section(path: Path, r: dict[str, Any]) -> None:
    default = next(e for e in ("minilm-onnx", "minilm-static") if f"keel knn ({e})" in r["routers"])
    knn = r["routers"][f"keel knn ({default})"]  # the embedder `keel router train` picks by default
    rnd = r["routers"]["random"]
    mf = r["routers"].get("RouteLLM MF (minilm)", {})
    lines = [
        "## Optimize: router",
        "",
        f"`nice -n 10 python benchmarks/router.py --train {r['train']} --test {r['test']}` — {r['machine']}, "
        f"{r['date']}. Task: BIG-bench intent_recognition (as in the prompt benchmark); weak = SmolLM2-135M "
        "zero-shot, strong = the same model with one worked example per intent (no strong model runs offline, "
        "so the gap is small and the numbers measure the routers, not headline quality). Every router is "
        f"trained on the same {r['train']} train outcomes and scored on {r['test_items']} held-out rows "
        f"(weak alone {r['weak_quality']:.3f}, strong alone {r['strong_quality']:.3f} accuracy).",
        "",
        "| router | k | APGR (11 shares) | APGR (every share) | accuracy at 50 % strong calls | PGR at 50 % "
        "| decision median / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in r["routers"].items():
        if "error" in v:
            lines.append(f"| {name} | | {v['error']} | | | | |")
            continue
        t = f"{v['median_ms']:.2f} / {v['p99_ms']:.2f} ms" if "median_ms" in v else "—"
        lines.append(f"| {name} | {v.get('k', '')} | {_f(v['apgr'])} | {_f(v.get('apgr_fine'))} | "
                     f"{_f(v['quality_50'])} | {_f(v['pgr_50'], '.2f')} | {t} |")
    if "ceiling" in r:
        lines.append(f"| best possible (every row the strong arm wins sent first) | | {_f(r['ceiling']['apgr'])} | "
                     f"{_f(r['ceiling']['apgr_fine'])} | | | |")
    ratio_rnd = knn["apgr"] / rnd["apgr"] if rnd["apgr"] else float("nan")
    ratio_mf = knn["apgr"] / mf["apgr"] if mf.get("apgr") else float("nan")
    ratio_fine = knn["apgr_fine"] / mf["apgr_fine"] if mf.get("apgr_fine") else float("nan")
    lines += [
        "",
        f"Keel kNN ({default}) APGR / random: **{_f(ratio_rnd, '.2f')}×** (goal ≥ 1.5×); / RouteLLM MF: "
        f"**{_f(ratio_mf, '.2f')}×** at 11 shares, **{_f(ratio_fine, '.2f')}×** at every share (goal ≥ 1.0×; "
        f"the best possible at 11 shares is {_f(r.get('ceiling', {}).get('apgr'))}). Decision time (embedding + kNN over the train set, "
        f"{default}: median {knn['median_ms']:.2f} ms, {'within' if knn['median_ms'] <= 5 else 'over'} the 5 ms "
        f"goal; p99 {knn['p99_ms']:.2f} ms, {'within' if knn['p99_ms'] <= 5 else 'over'} it). A whole "
        f"`router:NAME` call vs the same call made directly (`scripted:echo` behind both, A/B interleaved, "
        f"medians): {r['call']['router_median_ms']:.2f} vs {r['call']['direct_median_ms']:.2f} ms, "
        f"**{r['call']['overhead_median_ms']:.2f} ms** added (the policy's version check in the store included).",
        "",
    ]
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    section = "\n".join(lines)
    pattern = re.compile(r"## Optimize: router\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(lambda _: section.rstrip("\n") + "\n", text) if pattern.search(text) else \
        text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
