"""Distillation: teacher -> ``keel distill export`` -> ``keel distill train`` (LoRA) -> student, graded
with ``keel eval`` next to the teacher.

**Task and teacher**: the router benchmark's (``benchmarks/router.py``): BIG-bench
``intent_recognition``, teacher = SmolLM2-135M-Instruct (Q4_1 GGUF, llama.cpp through ``local:``) with
one worked example per intent (7-shot), structured output ``{"intent": ...}``. Its answers on the
``--train`` rows come from the same cache as the router benchmark's (run that first, or this runs the
teacher itself).

**Export**: the teacher's graded calls that passed the grader, as OpenAI chat fine-tuning JSONL
(``keel distill export --target strong``); every line is checked again with ``keel distill check``
(validity = valid lines / lines).

**Student**: the same 135M model de-quantized from the GGUF by transformers, LoRA (rank 8, all
linear layers) for ``--epochs`` on the export, merged, and run through ``hf:`` (transformers, float32,
greedy, no constrained decoding: Keel validates the JSON and retries once, as for any model).

**Metrics**: test accuracy of student and teacher on the same ``--test`` held-out rows, their ratio;
generation tokens/s of each (output tokens / answer latency; llama.cpp Q4 vs transformers float32, so
the ratio says what a student costs to run this way, not what the weights could do); training tokens/s.

    nice -n 10 python benchmarks/distill.py [--train 240] [--test 60] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.optimize import load_task, smollm2
from benchmarks.router import _eval, collect, split


def _run_arm(store: Any, work: Path, name: str, rows: list[dict[str, str]], spec: dict[str, Any],
             target: dict[str, Any]) -> dict[str, float]:
    import yaml

    from keel.evals import load_eval
    from keel.evals.runner import run_eval

    (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {**spec, "name": name, "dataset": f"{name}.jsonl", "targets": [target]}
    (work / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    def progress(n: int, total: int) -> None:
        print(f"\r{name}: {n}/{total}", end="", file=sys.stderr, flush=True)

    summary = asyncio.run(run_eval(store, load_eval(work / f"{name}.yaml"), progress=progress))
    print(file=sys.stderr)
    out_tokens, seconds = 0, 0.0
    for r in store.query("SELECT sample FROM eval_results WHERE run_id = ?", (summary.run_id,)):
        sample = json.loads(r["sample"]) if r["sample"] else {}
        out_tokens += (sample.get("usage") or {}).get("output_tokens", 0)
        seconds += (sample.get("latency_ms") or 0) / 1000
    t = summary.targets[0]
    return {"accuracy": t.passed / t.items, "errored": t.errored, "tokens_per_s": out_tokens / seconds if seconds else 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=240)
    p.add_argument("--test", type=int, default=60)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-examples", type=int, default=0,
                   help="train on the first N exported lines only (0: all); for a busy machine")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "keel-bench")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    examples, prefix = load_task(args.cache)
    shots, train, test = split(examples, args.train, args.test)

    with tempfile.TemporaryDirectory(prefix="keel-bench-distill-") as tmp:
        work = Path(tmp)
        os.environ["KEEL_HOME"] = str(work / "home")
        os.chdir(work)
        from keel.optimize.distill import ExportFilter, check_file, export
        from keel.optimize.lora import TrainOptions, train_lora
        from keel.store import open_store

        store = open_store()
        collect(train, prefix, shots, work, "train", args.cache)  # the teacher's answers (cached)
        started = time.perf_counter()
        rep = export(store, work / "set", filt=ExportFilter(targets=("strong",)), val_fraction=0.0)
        export_s = time.perf_counter() - started
        files = [Path(f) for f in rep.files if f.endswith(".jsonl")]
        total = sum(1 for f in files for line in f.read_text().splitlines() if line.strip())
        valid = sum(check_file(f)[1] for f in files)
        data = work / "set" / "chat.train.jsonl"
        if args.max_examples:
            kept = data.read_text().splitlines(keepends=True)[:args.max_examples]
            data = work / "set" / "chat.train.head.jsonl"
            data.write_text("".join(kept))
        result = train_lora(data, smollm2(), work / "student",
                            TrainOptions(epochs=args.epochs, rank=8, max_length=384, save_every=10 ** 6))
        spec = _eval("test", "test.jsonl", f"local:{smollm2()}", prefix, shots)
        teacher_target = next(t for t in spec["targets"] if t["name"] == "strong")
        teacher = _run_arm(store, work, "teacher", test, spec, {**teacher_target, "name": "teacher"})
        student = _run_arm(store, work, "student", test, spec,
                           {**teacher_target, "name": "student", "model": f"hf:{work / 'student'}"})
    r = {"date": _dt.date.today().isoformat(),
         "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
         "train_rows": len(train), "max_examples": args.max_examples, "test_rows": len(test), "chat_lines": rep.chat["train"] + rep.chat["validation"],
         "export_lines": total, "valid_lines": valid, "export_s": export_s,
         "train_steps": result.steps, "train_tokens": result.tokens, "train_tokens_per_s": result.tokens_per_s,
         "train_s": result.seconds, "loss": [result.first_loss, result.last_loss],
         "teacher": teacher, "student": student}
    print(json.dumps(r, indent=2))
    if args.out:
        write_section(args.out, r)


def write_section(path: Path, r: dict[str, Any]) -> None:
    t, s = r["teacher"], r["student"]
    acc = s["accuracy"] / t["accuracy"] if t["accuracy"] else float("nan")
    tps = s["tokens_per_s"] / t["tokens_per_s"] if t["tokens_per_s"] else float("nan")
    section = "\n".join([
        "## Optimize: distillation",
        "",
        f"`nice -n 10 python benchmarks/distill.py --train {r['train_rows']} --test {r['test_rows']} "
        f"--max-examples {r['max_examples']}` — "
        f"{r['machine']}, {r['date']}. Teacher: SmolLM2-135M 7-shot (llama.cpp, Q4_1) on BIG-bench "
        f"intent_recognition; its {r['chat_lines']} passing answers of {r['train_rows']} train rows exported "
        f"as chat fine-tuning JSONL; student: the same model, LoRA rank 8, {r['train_steps']} steps (one epoch on "
        f"the first {r['train_steps']} lines), run with "
        "transformers (float32) through `hf:`.",
        "",
        "| | teacher | student | student / teacher |",
        "|---|---|---|---|",
        f"| test accuracy ({r['test_rows']} rows) | {t['accuracy']:.3f} | {s['accuracy']:.3f} | {acc:.2f}× |",
        f"| generation tokens/s | {t['tokens_per_s']:.1f} | {s['tokens_per_s']:.1f} | {tps:.2f}× |",
        f"| errored rows (invalid JSON twice) | {t['errored']} | {s['errored']} | |",
        "",
        f"Export: {r['export_lines']} lines, {r['valid_lines']} valid against OpenAI's format "
        f"(**{r['valid_lines'] / max(r['export_lines'], 1):.0%}**), written in {r['export_s']:.2f} s. "
        f"Training: {r['train_tokens']} tokens in {r['train_s']:.0f} s (**{r['train_tokens_per_s']:.0f} "
        f"tokens/s**), loss {r['loss'][0]:.3f} -> {r['loss'][1]:.3f}. The teacher is not a stronger model (none "
        "runs offline): the student learns the teacher's answers on its own prompt, so the ratio measures the "
        "loop, not a compression of a large model.",
        "",
    ])
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(r"## Optimize: distillation\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(lambda _: section.rstrip("\n") + "\n", text) if pattern.search(text) else \
        text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
