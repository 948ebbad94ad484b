"""The result of an optimization: every candidate with its validation scores, the best one,
the diff of its instructions from the seed's, and what it cost (calls and tokens)."""

from __future__ import annotations

import difflib
from typing import Any

__all__ = ["build_report", "instructions_diff"]


def instructions_diff(a: str, b: str) -> str:
    """A unified diff of two instructions, line by line."""
    def lines(text: str) -> list[str]:
        return [line + "\n" for line in text.splitlines()]

    return "".join(difflib.unified_diff(lines(a), lines(b),
                                        fromfile="seed", tofile="best", n=2)) or "(no change)"


def build_report(search: Any) -> dict[str, Any]:
    """The JSON the run stores as its result (``keel optimize show`` prints it)."""
    from keel.models.pricing import cost_of
    from keel.models.types import Usage

    best = search.best()
    front = search.front()
    tokens = search.calls.tokens()
    by_kind = {r["kind"]: r for r in search.calls.store.query(
        "SELECT kind, COUNT(*) AS n, COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(output_tokens), 0) AS o "
        "FROM optimize_calls WHERE run_id = ? GROUP BY kind", (search.run_id,))}
    cost: float | None = 0.0
    for kind, model in (("rollout", search.target.model_string), ("reflect", search.options.reflection_model)):
        row = by_kind.get(kind)
        if row is None:
            continue
        c = cost_of(model, Usage(input_tokens=int(row["i"]), output_tokens=int(row["o"])))
        cost = None if c is None or cost is None else cost + c
    return {
        "kind": search.target.kind,
        "target": search.target.label,
        "splits": {"learn": [r.idx for r in search.train], "validate": [r.idx for r in search.val]},
        "candidates": [{"id": c.id, "parent": c.parent, "origin": c.origin, "instructions": c.instructions,
                        "mean": round(c.mean, 4), "scores": {str(k): v for k, v in sorted(c.val.items())},
                        "on_front": c.id in front} for c in search.candidates],
        "best": best.id,
        "seed_score": round(search.candidates[0].mean, 4),
        "best_score": round(best.mean, 4),
        "diff": instructions_diff(search.candidates[0].instructions, best.instructions),
        "iterations": search.events,
        "unusable_reflections": search.garbage,
        "cost": {"budget": search.options.budget, "calls": search.calls.used,
                 "rollouts": int(by_kind.get("rollout", {}).get("n", 0)),
                 "reflections": int(by_kind.get("reflect", {}).get("n", 0)),
                 **{k: v for k, v in tokens.items() if k != "calls_stored"},
                 "usd": None if cost is None else round(cost, 6)},
    }
