"""`keel context search` end to end, as a user runs it: a fresh process per query.

Ingests Keel's own docs/ into a collection with the default embedder (minilm) in a
temporary KEEL_HOME (removed afterwards), then times `keel context search docs QUERY`
as a subprocess: one warm-up, then the median of --runs. With --baseline REF, the same
searches also run on the code of git revision REF (a temporary `git worktree`, on
PYTHONPATH), interleaved with the current code (CONTRIBUTING rule 18), on the same
collection: the embedder's vectors are the same, so both read the same index.

    python benchmarks/context_cli.py [--runs 5] [--baseline 832dc94^]

Needs the context and embeddings extras (and, for a baseline before the NumPy embedder,
sentence-transformers and torch).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERIES = ["how do I rotate API keys?", "what does the grounding check do", "resume an interrupted ingest",
           "approval by another person", "structured output schema"]


def _env(home: Path, src: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_HOME"] = str(home)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


FLOOR = "python -c 'import numpy, typer'"
"""The floor: starting Python and importing what any such CLI imports (timed the same way)."""


def _search(env: dict[str, str], query: str) -> float:
    argv = [sys.executable, "-m", "keel", "context", "search", "docs", query, "-k", "5"]
    if env.get("_FLOOR"):
        argv = [sys.executable, "-c", "import numpy, typer"]
    t = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"keel context search failed:\n{done.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline", help="git revision to compare with (interleaved)")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="keel-bench-cli-"))
    worktree = None
    try:
        env = _env(home, None)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "keel", "context", "add", "docs", str(ROOT / "docs"), "-q"],
                       env=env, check=True, capture_output=True)
        ingest_s = time.perf_counter() - t
        arms = {"current": env, FLOOR: {**env, "_FLOOR": "1"}}
        if args.baseline:
            worktree = Path(tempfile.mkdtemp(prefix="keel-bench-base-")) / "tree"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.baseline],
                           check=True, capture_output=True)
            arms[f"baseline {args.baseline}"] = _env(home, worktree / "src")
        times: dict[str, list[float]] = {name: [] for name in arms}
        for arm_env in arms.values():
            _search(arm_env, "warm up")
        for i in range(args.runs):
            for name, arm_env in arms.items():
                times[name].append(_search(arm_env, QUERIES[i % len(QUERIES)]))
        cores = os.cpu_count()
        load = os.getloadavg()[0]
        print(f"\nMeasured {datetime.date.today().isoformat()} on {platform.machine()}, {cores} cores "
              f"(load average {load:.1f} at the end: the machine was shared), Python {platform.python_version()}, "
              f"with `python benchmarks/context_cli.py --runs {args.runs}"
              f"{' --baseline ' + args.baseline if args.baseline else ''}`. Collection: Keel's docs/ "
              f"(ingested in {ingest_s:.0f} s), default embedder (minilm). One warm-up, then {args.runs} "
              f"searches per arm, interleaved; the floor row starts Python and imports numpy and typer "
              f"(no Keel), for scale.\n")
        print("| code | median | min | max |\n|---|---:|---:|---:|")
        for name, ts in times.items():
            print(f"| {name} | {statistics.median(ts):.2f} s | {min(ts):.2f} s | {max(ts):.2f} s |")
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                           capture_output=True)
            shutil.rmtree(worktree.parent, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
