"""``keel router report``: quality against the share of strong calls, along the threshold.

On the training items each item is scored by its neighbours with itself left out (so the curve
is not the router remembering its answers); with ``--run`` on held-out eval runs. The random
router's curve is the straight line between the two models (its expected quality at each share).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.optimize.router import RouterError, _outcomes, apgr, curve, load_policy
from keel.store import SQLiteStore

__all__ = ["router_report"]


def _json_float(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)


def router_report(store: SQLiteStore, name: str, *, runs: list[str] | None = None, strong: str | None = None,
                  weak: str | None = None) -> dict[str, Any]:
    policy = load_policy(store, name)
    spec = policy.spec
    if runs:
        if not strong or not weak:
            raise RouterError("a report on held-out runs needs --strong and --weak (their eval target names)",
                              hint=f"e.g. keel router report {name} --run RUN --strong TARGET --weak TARGET")
        queries, s_l, w_l, _ = _outcomes(store, runs, strong, weak, None)
        if not queries:
            raise RouterError(f"no item of {', '.join(runs)} was answered by both {strong!r} and {weak!r}",
                              hint="name two model targets that answered the same items")
        s, w = np.asarray(s_l, np.float32), np.asarray(w_l, np.float32)
        predicted = policy.predict(policy.embedder.embed(queries))
        source = f"held-out runs {', '.join(runs)}"
    else:
        s, w = policy.strong_scores, policy.weak_scores
        predicted = policy.predict(policy.vectors, leave_out_self=True)
        source = "training items, each left out of its own vote"
    rows = curve(s, w, predicted)
    lo, hi = float(w.mean()), float(s.mean())
    rand = [{"share": r["share"], "quality": lo + r["share"] * (hi - lo), "pgr": r["share"] if hi != lo else 0.0}
            for r in rows]
    chosen = predicted >= spec.threshold
    at = {"share": float(chosen.mean()), "quality": float(np.where(chosen, s, w).mean())}
    for r in rows:
        r["threshold"] = _json_float(r["threshold"])
        r["pgr"] = _json_float(r["pgr"])
    return {"name": name, "version": spec.version, "policy": spec.policy, "items": len(s), "source": source,
            "strong": spec.strong, "weak": spec.weak, "strong_quality": hi, "weak_quality": lo,
            "curve": rows, "random": rand,
            "apgr": apgr([{**r, "pgr": r["pgr"] or 0.0} for r in rows]), "random_apgr": apgr(rand),
            "threshold": _json_float(spec.threshold), "at_threshold": at}
