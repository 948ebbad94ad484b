"""Eval harness overhead: N items x (string_check, fuzzy_match, rouge_l) on precomputed outputs.

    python benchmarks/evals.py              # 10,000 and 100,000 items
    python benchmarks/evals.py --items 10000

Each size runs in a fresh subprocess (its own KEEL_HOME) so peak memory (ru_maxrss) is
that run's alone. Reports import + run throughput and peak RSS. The promptfoo comparison
from the evals issue is not automated yet.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ["the", "a", "model", "answer", "paris", "rome", "city", "capital", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "eval", "grade"]


def make_items(path: Path, n: int) -> None:
    rng = random.Random(0)
    with path.open("w") as f:
        for i in range(n):
            ref = " ".join(rng.choices(WORDS, k=12))
            out = ref if i % 3 == 0 else " ".join(rng.choices(WORDS, k=12))
            f.write(json.dumps({"id": i, "answer": ref, "output": out}) + "\n")


def child(n: int) -> None:
    import asyncio

    from keel.evals import parse_eval, run_eval
    from keel.store import open_store

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "items.jsonl"
    make_items(data, n)
    spec = parse_eval({
        "name": "bench", "dataset": str(data),
        "targets": [{"type": "precomputed", "field": "output"}],
        "graders": [
            {"type": "string_check", "name": "exact", "operation": "eq",
             "input": "{{sample.output_text}}", "reference": "{{item.answer}}"},
            {"type": "text_similarity", "name": "fuzzy", "evaluation_metric": "fuzzy_match",
             "input": "{{sample.output_text}}", "reference": "{{item.answer}}", "pass_threshold": 0.8},
            {"type": "text_similarity", "name": "rouge", "evaluation_metric": "rouge_l",
             "input": "{{sample.output_text}}", "reference": "{{item.answer}}", "pass_threshold": 0.5},
        ],
    })
    store = open_store(tmp / "home")
    started = time.perf_counter()
    summary = asyncio.run(run_eval(store, spec))
    took = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"items": n, "seconds": round(took, 2), "items_per_s": round(n / took),
                      "peak_rss_mb": round(peak_mb, 1), "pass_rate": round(summary.score, 4)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--child", type=int)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    for n in args.items:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True,
                             env={**os.environ}, check=True)
        print(out.stdout.strip())


if __name__ == "__main__":
    main()
