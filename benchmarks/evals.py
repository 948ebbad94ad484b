"""Eval harness overhead: N items x 3 graders, Keel and promptfoo (the peer) in the same run.

    python benchmarks/evals.py                      # Keel at 10k and 100k, promptfoo at 10k
    python benchmarks/evals.py --items 10000 --peer-items 10000 100000
    python benchmarks/evals.py --no-peer

Keel: (string_check eq, text_similarity fuzzy_match, text_similarity rouge_l), each with a
threshold, in two modes: ``precomputed`` (outputs already in the items: the issue's harness
number) and ``echo`` (a model target on ``scripted:echo``, which answers with its prompt: the
same shape of work as promptfoo's echo provider).

promptfoo: the same items as test cases (``tests: file://tests.jsonl``), the ``echo`` provider
on the prompt ``{{output}}``, and the closest assertions it has: ``equals``, ``levenshtein``
(edit distance <= 15 of these ~60-character strings, its character-level similarity check)
and ``rouge-n`` (threshold 0.5; promptfoo has no ROUGE-L). It is installed with
``npm install promptfoo`` into ``$KEEL_BENCH_PEERS/promptfoo`` (default
``~/.cache/keel-bench``), outside the repository. Both run with 16 items in flight
(promptfoo's ``--max-concurrency 16``; Keel's ``concurrency: 16``).

Each run is a fresh process; peak memory is that process's ru_maxrss (for promptfoo, the
node process, measured by a Python wrapper that only waits for it). CPU seconds (user +
system) are reported too: on a shared machine they move less than wall time. For
promptfoo they include node's start-up. items/s for promptfoo
uses the evaluation time it reports itself (``evaluationDurationMs``, without node's start);
the wall time includes start-up and writing its results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ["the", "a", "model", "answer", "paris", "rome", "city", "capital", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "eval", "grade"]
PEERS = Path(os.environ.get("KEEL_BENCH_PEERS", Path.home() / ".cache" / "keel-bench"))
PROMPTFOO_CONFIG = """\
prompts: ["{{output}}"]
providers: ["echo"]
defaultTest:
  assert:
    - {type: equals, value: "{{answer}}"}
    - {type: levenshtein, value: "{{answer}}", threshold: 15}
    - {type: rouge-n, value: "{{answer}}", threshold: 0.5}
tests: file://tests.jsonl
"""


def items(n: int):
    rng = random.Random(0)
    for i in range(n):
        ref = " ".join(rng.choices(WORDS, k=12))
        out = ref if i % 3 == 0 else " ".join(rng.choices(WORDS, k=12))
        yield {"id": i, "answer": ref, "output": out}


def keel_child(n: int, mode: str) -> None:
    import asyncio

    from keel.evals import parse_eval, run_eval
    from keel.store import open_store

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "items.jsonl"
    with data.open("w") as f:
        for it in items(n):
            f.write(json.dumps(it) + "\n")
    target = ({"type": "precomputed", "field": "output"} if mode == "precomputed"
              else {"type": "model", "model": "scripted:echo", "prompt": "{{item.output}}"})
    spec = parse_eval({
        "name": "bench", "dataset": str(data), "targets": [target], "concurrency": 16,
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
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    summary = asyncio.run(run_eval(store, spec))
    took = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    print(json.dumps({"tool": f"keel ({mode})", "items": n, "seconds": round(took, 2),
                      "items_per_s": round(n / took), "cpu_seconds": round(cpu, 2),
                      "items_per_cpu_s": round(n / cpu), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                      "pass_rate": round(summary.score, 4)}))
    shutil.rmtree(tmp, ignore_errors=True)


def promptfoo_bin() -> Path:
    """promptfoo's CLI, installed with npm outside the repository on first use."""
    home = PEERS / "promptfoo"
    cli = home / "node_modules" / ".bin" / "promptfoo"
    if not cli.exists():
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "package.json").exists():
            (home / "package.json").write_text('{"name": "keel-bench-peers", "private": true}\n')
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed (promptfoo needs Node.js >= 20 and npm)")
        r = subprocess.run([npm, "install", "promptfoo", "--no-audit", "--no-fund"], cwd=home,
                           capture_output=True, text=True)
        if r.returncode != 0 or not cli.exists():
            raise RuntimeError(f"npm install promptfoo failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return cli


def promptfoo_child(n: int) -> None:
    """Runs in its own Python process: RUSAGE_CHILDREN is then the node process's alone."""
    cli = promptfoo_bin()
    version = json.loads((cli.parent.parent / "promptfoo" / "package.json").read_text())["version"]
    tmp = Path(tempfile.mkdtemp())
    with (tmp / "tests.jsonl").open("w") as f:
        for it in items(n):
            f.write(json.dumps({"vars": {"answer": it["answer"], "output": it["output"]}}) + "\n")
    (tmp / "promptfooconfig.yaml").write_text(PROMPTFOO_CONFIG)
    env = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
           "PROMPTFOO_CONFIG_DIR": str(tmp / "config")}
    started = time.perf_counter()
    r = subprocess.run([str(cli), "eval", "-c", "promptfooconfig.yaml", "--no-cache", "--no-table",
                        "--no-progress-bar", "--max-concurrency", "16", "-o", "out.json"], cwd=tmp, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mb, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    out = tmp / "out.json"
    if not out.exists():
        tail = (r.stderr or r.stdout).strip()[-1500:]
        print(json.dumps({"tool": f"promptfoo {version}", "items": n, "error": f"exit {r.returncode}: {tail}",
                          "peak_rss_mb": round(peak_mb, 1), "seconds": round(wall, 2)}))
        shutil.rmtree(tmp, ignore_errors=True)
        return
    stats = json.loads(out.read_text())["results"]["stats"]
    eval_s = stats.get("evaluationDurationMs", stats.get("durationMs")) / 1000
    total = stats["successes"] + stats["failures"] + stats["errors"]
    print(json.dumps({"tool": f"promptfoo {version}", "items": n, "seconds": round(wall, 2),
                      "eval_seconds": round(eval_s, 2), "items_per_s": round(n / eval_s),
                      "cpu_seconds": round(cpu, 2), "items_per_cpu_s": round(n / cpu),
                      "peak_rss_mb": round(peak_mb, 1), "pass_rate": round(stats["successes"] / total, 4),
                      "errors": stats["errors"]}))
    shutil.rmtree(tmp, ignore_errors=True)


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env={**os.environ})
    if out.returncode != 0:
        return {"tool": args[0], "items": int(args[1]), "error": out.stderr.strip()[-1500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--peer-items", type=int, nargs="*", default=[10_000])
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--modes", nargs="*", default=["precomputed", "echo"])
    ap.add_argument("--keel-child", nargs=2)
    ap.add_argument("--promptfoo-child", type=int)
    args = ap.parse_args()
    if args.keel_child:
        keel_child(int(args.keel_child[0]), args.keel_child[1])
        return
    if args.promptfoo_child:
        try:
            promptfoo_child(args.promptfoo_child)
        except RuntimeError as e:
            print(json.dumps({"tool": "promptfoo", "items": args.promptfoo_child, "error": str(e)}))
        return
    results = []
    for mode in args.modes:
        for n in args.items:
            results.append(run_child("--keel-child", str(n), mode))
            print(json.dumps(results[-1]), flush=True)
    if not args.no_peer:
        for n in args.peer_items:
            results.append(run_child("--promptfoo-child", str(n)))
            print(json.dumps(results[-1]), flush=True)
    peers = {r["items"]: r for r in results if r["tool"].startswith("promptfoo") and "error" not in r}
    for r in results:
        peer = peers.get(r["items"])
        if r["tool"].startswith("keel") and peer and "error" not in r:
            print(f"{r['tool']} at {r['items']:,} items: {r['items_per_s'] / peer['items_per_s']:.1f}x promptfoo's "
                  f"items/s ({r['items_per_cpu_s'] / peer['items_per_cpu_s']:.1f}x per CPU second), "
                  f"{r['peak_rss_mb'] / peer['peak_rss_mb']:.2f}x its peak memory")
    keel = {(r["tool"], r["items"]): r for r in results if r["tool"].startswith("keel") and "error" not in r}
    for (tool, n), r in sorted(keel.items()):
        small = keel.get((tool, min(args.items)))
        if small and n != small["items"]:
            print(f"{tool}: peak memory at {n:,} items is {r['peak_rss_mb'] / small['peak_rss_mb']:.2f}x "
                  f"that at {small['items']:,}")


if __name__ == "__main__":
    main()
