"""The model router: which of two models should answer a request, learned from the user's evals.

``keel router train NAME --run RUN --strong TARGET --weak TARGET`` reads an eval run in which two
model targets answered the same items, and keeps, per item, the query (the user's last message),
its embedding and the score each model got (table ``router_examples``, migration 0311_router).

Policies (``--policy``):

- ``knn`` (default): embed the query, find the ``k`` nearest training queries (cosine), and
  predict the **gain** of the strong model as their ``strong - weak`` score, averaged with each
  neighbour weighted by its cosine similarity (clipped at 0): the standard distance-weighted kNN
  regression, so a closer item counts more and two queries rarely tie. ``k`` is chosen when the
  router is trained, unless given: the ``k`` of :data:`K_GRID` whose leave-one-out predictions on
  the training items have the least squared error (each item predicted by its neighbours, itself
  left out; no held-out data is used). The request goes to the strong model when the gain is at
  least the **threshold**. The threshold is calibrated on the same leave-one-out predictions so
  that a target share of the training items (``--strong-share``, default 0.5) would go to the
  strong model. A well-tuned kNN matched learned routers in published comparisons (arXiv 2505.12601).
- ``cascade``: the weak model answers first; the answer is escalated to the strong model when it
  broke the request's output schema or tool contract (Keel's structured-output failure) or when a
  verifier model (``--verifier``) does not accept it.

The query embedder of a new router (``--embedder``, default ``auto``) is ``minilm-onnx`` — the full
MiniLM vectors through ONNX Runtime, about 4 ms a query on this class of CPU — when ``keel[onnx]``
is installed, and ``minilm-static`` otherwise: MiniLM's own word-piece vectors, mean-pooled, without
its transformer layers (well under a millisecond, slightly worse routing); the NumPy forward pass
(``minilm``, 12-25 ms a query) is too slow for a router that must decide in a few milliseconds.
The embedder is recorded in the trained router (``RouterSpec.embedder``) and a router always embeds
requests with the embedder it was trained with, so routers trained before keep their vectors
(a router trained with ``minilm`` is run through ONNX Runtime when it is installed: the same vectors).
``keel router report`` shows quality against the share of strong calls along the threshold, so the
trade can be chosen with numbers.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from keel.errors import UserError
from keel.ids import new_id
from keel.store import SQLiteStore

__all__ = ["Decision", "Policy", "RouterError", "RouterSpec", "StaticMiniLM", "curve", "default_embedder",
           "get_embedder", "load_policy", "train_router"]


class RouterError(UserError):
    """A router cannot be trained, found or used as asked."""


@dataclass(frozen=True)
class RouterSpec:
    """One trained router (stored as JSON in ``router_policies.spec``)."""

    name: str
    strong: str
    """Model string of the strong (expensive) model."""
    weak: str
    """Model string of the weak (cheap) model."""
    policy: str = "knn"
    """``knn`` or ``cascade``."""
    embedder: str = "minilm-static"
    """The query embedder it was trained with, and routes with (see :func:`routing_embedder`)."""
    k: int = 10
    """Neighbours that vote (chosen by leave-one-out error at training unless given)."""
    weighting: str = "uniform"
    """``similarity`` (each neighbour's vote weighted by its cosine, what training stores now) or
    ``uniform`` (the plain mean: routers stored before the weighting existed)."""
    strong_share: float = 0.5
    """The share of training queries the threshold sends to the strong model."""
    threshold: float = 0.0
    verifier: str | None = None
    """Cascade: a model asked whether the weak answer is acceptable (answers yes or no)."""
    runs: tuple[str, ...] = ()
    """The eval runs it learned from."""
    examples: int = 0
    version: int = 1


@dataclass(frozen=True)
class Decision:
    """Where one request went and why (recorded in the model call's tags and the trace)."""

    model: str
    choice: str
    """``strong`` or ``weak`` (a cascade's first answer: ``weak``; after escalation: ``strong``)."""
    reason: str
    score: float | None = None
    ms: float = 0.0


# -- embedders ---------------------------------------------------------------------------------


class StaticMiniLM:
    """MiniLM's word-piece input vectors, mean-pooled and normalised: no transformer layers, so a
    query embeds in well under a millisecond (and means less than the full model's vector)."""

    name = "minilm-static"
    dim = 384
    _lock = threading.Lock()
    _table: np.ndarray | None = None
    _tok = None

    def _load(self) -> None:
        with self._lock:
            if StaticMiniLM._table is None:
                from keel.context.embedders import MiniLMEmbedder

                m = MiniLMEmbedder.load()
                StaticMiniLM._tok = m.tokenizer
                StaticMiniLM._table = m.w["embeddings.word_embeddings.weight"].astype(np.float32)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._load()
        assert self._table is not None and self._tok is not None
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, enc in enumerate(self._tok.encode_batch(list(texts))):
            ids = [t for t in enc.ids if t not in (0, 100, 101, 102)]  # [PAD] [UNK] [CLS] [SEP]
            if ids:
                v = self._table[ids].mean(0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out


def _onnx_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def default_embedder() -> str:
    """The query embedder a new router gets when none is named (``--embedder auto``): MiniLM through
    ONNX Runtime, int8-quantised, when ``keel[onnx]`` is installed (inside the 5 ms a router may add at
    p99, decision 0032), else the static word-piece vectors."""
    return "minilm-int8" if _onnx_installed() else "minilm-static"


def get_embedder(spec: str):
    """The embedder of a router's embedder string (``minilm-static`` or any :mod:`keel.context` embedder)."""
    if spec == "minilm-static":
        return StaticMiniLM()
    from keel.context.embedders import get_embedder as context_embedder

    try:
        return context_embedder(spec)
    except UserError as e:
        if not str(e).startswith("unknown embedder"):
            raise
        raise RouterError(f"unknown query embedder {spec!r}",
                          hint="use --embedder auto (the default: minilm-onnx with keel[onnx], else minilm-static), "
                               "minilm-onnx, minilm-int8, minilm-static, minilm, or an embedder string of "
                               "docs/context.md such as openai:text-embedding-3-small") from None


def routing_embedder(spec: str):
    """The embedder a router trained with ``spec`` embeds requests with: the same one, except that
    ``minilm`` (the NumPy forward pass) runs through ONNX Runtime when it is installed and no runtime
    is forced by ``KEEL_EMBEDDER_RUNTIME``: the same vectors, 3x faster."""
    import os

    if spec == "minilm" and not os.environ.get("KEEL_EMBEDDER_RUNTIME", "").strip() and _onnx_installed():
        return get_embedder("minilm-onnx")
    return get_embedder(spec)


def _pack(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype=np.float32).tobytes()).decode()


def _unpack(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.float32)


# -- the policy --------------------------------------------------------------------------------


@dataclass
class Policy:
    """A trained router, loaded for deciding."""

    spec: RouterSpec
    vectors: np.ndarray
    """(n, dim) unit vectors of the training queries."""
    gains: np.ndarray
    """(n,) strong score minus weak score, per training query."""
    strong_scores: np.ndarray
    weak_scores: np.ndarray
    queries: list[str] = field(default_factory=list)
    _embedder: object = None

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = routing_embedder(self.spec.embedder)
        return self._embedder

    def predict(self, vectors: np.ndarray, *, leave_out_self: bool = False) -> np.ndarray:
        """The predicted gain of the strong model for each row of ``vectors``."""
        sims = vectors @ self.vectors.T
        return knn_gain(sims, self.gains, self.spec.k, self.spec.weighting, leave_out_self=leave_out_self)

    def decide(self, query: str) -> Decision:
        started = time.perf_counter()
        gain = float(self.predict(self.embedder.embed([query]))[0])
        strong = gain >= self.spec.threshold
        ms = (time.perf_counter() - started) * 1000
        weighted = ", similarity-weighted" if self.spec.weighting == "similarity" else ""
        reason = (f"kNN: the {min(self.spec.k, len(self.gains))} nearest eval items gain {gain:+.2f} with the strong "
                  f"model{weighted} ({'>=' if strong else '<'} threshold {self.spec.threshold:+.2f}, calibrated to "
                  f"{self.spec.strong_share:.0%} strong calls)")
        return Decision(self.spec.strong if strong else self.spec.weak, "strong" if strong else "weak", reason,
                        gain, ms)


K_GRID = (5, 10, 15, 20, 30, 40, 60, 80)
"""The ``k`` values training tries when none is given (those below the number of items)."""


def knn_gain(sims: np.ndarray, gains: np.ndarray, k: int, weighting: str = "similarity", *,
             leave_out_self: bool = False) -> np.ndarray:
    """The predicted gain per row of ``sims`` (query x training item cosines): the mean of the ``k``
    nearest items' gains, weighted by their cosine clipped at 0 (``similarity``) or not (``uniform``)."""
    if leave_out_self:
        sims = sims.copy()
        np.fill_diagonal(sims, -np.inf)
    k = min(k, sims.shape[1] - (1 if leave_out_self else 0))
    if k <= 0:
        return np.zeros(sims.shape[0], dtype=np.float32)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    g = gains[top]
    if weighting == "uniform":
        return g.mean(axis=1)
    w = np.clip(np.take_along_axis(sims, top, axis=1), 0.0, None)
    total = w.sum(axis=1)
    out = g.mean(axis=1)  # no neighbour with a positive cosine: the plain mean
    ok = total > 0
    out[ok] = (w[ok] * g[ok]).sum(axis=1) / total[ok]
    return out


def choose_k(vectors: np.ndarray, gains: np.ndarray, weighting: str = "similarity",
             grid: Sequence[int] = K_GRID) -> tuple[int, float]:
    """``(k, error)``: the ``k`` of ``grid`` whose leave-one-out predictions of the training items'
    gains have the least mean squared error (the smallest ``k`` among equals)."""
    sims = vectors @ vectors.T
    n = vectors.shape[0]
    best: tuple[float, int] | None = None
    for k in [k for k in grid if k < n] or [max(1, n - 1)]:
        err = float(np.mean((knn_gain(sims, gains, k, weighting, leave_out_self=True) - gains) ** 2))
        if best is None or err < best[0] - 1e-12:
            best = (err, k)
    assert best is not None
    return best[1], best[0]


def calibrate(gains_loo: np.ndarray, share: float) -> float:
    """The threshold that sends ``share`` of the (leave-one-out) predicted gains to the strong model."""
    if share <= 0:
        return float("inf")
    if share >= 1:
        return float("-inf")
    ordered = np.sort(gains_loo)[::-1]
    n = max(1, round(share * len(ordered)))
    return float(ordered[n - 1])


def curve(strong: np.ndarray, weak: np.ndarray, predicted_gain: np.ndarray,
          shares: Sequence[float] = tuple(i / 10 for i in range(11))) -> list[dict[str, float]]:
    """Quality (mean score of the model chosen) against the share of strong calls, along the threshold:
    the items with the highest predicted gain go to the strong model first."""
    order = np.argsort(-predicted_gain, kind="stable")
    n = len(order)
    lo, hi = float(weak.mean()), float(strong.mean())
    rows = []
    for share in shares:
        m = round(share * n)
        chosen = weak.copy()
        chosen[order[:m]] = strong[order[:m]]
        q = float(chosen.mean())
        pgr = (q - lo) / (hi - lo) if hi != lo else float("nan")
        threshold = float(predicted_gain[order[m - 1]]) if 0 < m <= n else float("inf")
        rows.append({"share": m / n if n else 0.0, "quality": q, "pgr": pgr, "threshold": threshold})
    return rows


def apgr(rows: list[dict[str, float]]) -> float:
    """Average performance gap recovered over the curve (RouteLLM's APGR, trapezoid over shares)."""
    xs = [r["share"] for r in rows]
    ys = [r["pgr"] for r in rows]
    return float(np.trapezoid(ys, xs)) if hasattr(np, "trapezoid") else float(np.trapz(ys, xs))


# -- storage -----------------------------------------------------------------------------------


def _outcomes(store: SQLiteStore, runs: list[str], strong: str, weak: str,
              grader: str | None) -> tuple[list[str], list[float], list[float], list[str]]:
    from keel.optimize.graded import graded_calls

    by: dict[tuple[str, int], dict[str, object]] = {}
    run_ids: list[str] = []
    found_targets: set[str] = set()
    for call in graded_calls(store, runs=runs):
        found_targets.add(call.target)
        if call.run_id not in run_ids:
            run_ids.append(call.run_id)
        if call.target not in (strong, weak):
            continue
        g = call.grade(grader)
        if g is None:
            continue
        key = (call.run_id, call.idx)  # the two targets answered the same item of the same run
        row = by.setdefault(key, {"query": call.query_text()})
        row[call.target] = float(g)
        row[f"{call.target}:model"] = call.model
    missing = [t for t in (strong, weak) if t not in found_targets]
    if missing:
        raise RouterError(
            f"eval run(s) {', '.join(runs)} have no model target named {', '.join(map(repr, missing))}",
            hint="name two model targets that answered the same items: "
                 + (", ".join(sorted(found_targets)) or "(the runs have no model targets)"))
    both = [r for r in by.values() if strong in r and weak in r]
    models = [str(both[0][f"{strong}:model"]), str(both[0][f"{weak}:model"])] if both else []
    return ([str(r["query"]) for r in both], [float(r[strong]) for r in both],  # type: ignore[arg-type]
            [float(r[weak]) for r in both], models)  # type: ignore[arg-type]


def train_router(store: SQLiteStore, name: str, *, runs: list[str], strong: str, weak: str,
                 policy: str = "knn", strong_share: float = 0.5, k: int | None = None, embedder: str = "auto",
                 grader: str | None = None, verifier: str | None = None, strong_model: str | None = None,
                 weak_model: str | None = None) -> RouterSpec:
    """Learn a router from eval runs where targets ``strong`` and ``weak`` answered the same items;
    store it as the next version of ``name``. ``k=None``: chosen by leave-one-out error (:func:`choose_k`).
    ``embedder="auto"``: :func:`default_embedder`; the spec records the embedder actually used."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise RouterError(f"router name {name!r} is not allowed",
                          hint="use letters, digits, '.', '_' and '-' (at most 64), e.g. support-router")
    if policy not in ("knn", "cascade"):
        raise RouterError(f"unknown policy {policy!r}", hint="use --policy knn or --policy cascade")
    if not 0 <= strong_share <= 1:
        raise RouterError(f"--strong-share {strong_share:g} is out of range", hint="give a share in [0, 1]")
    if strong == weak:
        raise RouterError("--strong and --weak name the same target", hint="name two different model targets")
    queries, s, w, models = _outcomes(store, runs, strong, weak, grader)
    if len(queries) < 4:
        raise RouterError(f"only {len(queries)} item(s) were answered and graded by both {strong!r} and {weak!r}; "
                          "a router needs at least 4", hint="run the eval on more items, with both targets")
    if embedder == "auto":
        embedder = default_embedder()
    vectors = get_embedder(embedder).embed(queries)
    gains = np.asarray(s, dtype=np.float32) - np.asarray(w, dtype=np.float32)
    if k is None:
        k, _err = choose_k(vectors, gains)
    if k < 1:
        raise RouterError(f"--k {k} is out of range", hint="give at least 1 neighbour, or leave --k out to choose it")
    pol = Policy(RouterSpec(name, strong_model or models[0], weak_model or models[1], k=k, weighting="similarity"),
                 vectors, gains, np.asarray(s), np.asarray(w))
    threshold = calibrate(pol.predict(vectors, leave_out_self=True), strong_share)
    rows = store.query("SELECT MAX(version) AS v FROM router_policies WHERE name = ?", (name,))
    version = int(rows[0]["v"] or 0) + 1
    spec = RouterSpec(name=name, strong=strong_model or models[0], weak=weak_model or models[1], policy=policy,
                      embedder=embedder, k=k, weighting="similarity", strong_share=strong_share, threshold=threshold, verifier=verifier,
                      runs=tuple(runs), examples=len(queries), version=version)
    pid = new_id()
    with store.transaction():
        store.execute("INSERT INTO router_policies (id, name, version, spec, created_at) VALUES (?, ?, ?, ?, ?)",
                      (pid, name, version, json.dumps(asdict(spec)), time.time()))
        store.executemany(
            "INSERT INTO router_examples (policy_id, idx, query, embedding, strong_score, weak_score) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(pid, i, q, _pack(vectors[i]), s[i], w[i]) for i, q in enumerate(queries)])
    return spec


_cache: dict[tuple[str, str], tuple[str, Policy]] = {}
_cache_lock = threading.Lock()


def load_policy(store: SQLiteStore, name: str, *, version: int | None = None) -> Policy:
    """The newest (or the given) version of router ``name``."""
    sql = "SELECT id, spec FROM router_policies WHERE name = ?" + (" AND version = ?" if version else "") + \
        " ORDER BY version DESC LIMIT 1"
    rows = store.query(sql, (name, version) if version else (name,))
    if not rows:
        names = [r["name"] for r in store.query("SELECT DISTINCT name FROM router_policies ORDER BY name")]
        raise RouterError(f"no router named {name!r}" + (f" (version {version})" if version else ""),
                          hint="train one: keel router train NAME --run RUN --strong TARGET --weak TARGET"
                               + (f" (routers: {', '.join(names)})" if names else ""))
    pid = rows[0]["id"]
    key = (str(getattr(store, "path", id(store))), name if version is None else f"{name}@{version}")
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == pid:
            return hit[1]
    data = json.loads(rows[0]["spec"])
    data["runs"] = tuple(data.get("runs", ()))
    spec = RouterSpec(**data)
    ex = store.query("SELECT query, embedding, strong_score, weak_score FROM router_examples WHERE policy_id = ? "
                     "ORDER BY idx", (pid,))
    vectors = np.stack([_unpack(r["embedding"]) for r in ex]) if ex else np.zeros((0, 384), np.float32)
    s = np.asarray([r["strong_score"] for r in ex], dtype=np.float32)
    w = np.asarray([r["weak_score"] for r in ex], dtype=np.float32)
    pol = Policy(spec, vectors, s - w, s, w, [r["query"] for r in ex])
    with _cache_lock:
        _cache[key] = (pid, pol)
    return pol
