"""``keel eval ...``: run evals (with a CI gate), resume, list, show, compare; retrieval evals and
generative benchmarking of context collections."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(help="Run evals with OpenAI-compatible graders, compare runs, gate CI.", no_args_is_help=True)

RUN_EPILOG = (
    "Exit codes: 0 the run finished and passed the gate; 1 the gate failed (--fail-under or "
    "--max-regression), or every item of a target errored (nothing was graded); 2 the eval definition "
    "or options are wrong. Items that errored are counted and reported, and count as not passed."
)


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\r{done}/{total} items", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _finish(store, summary, *, as_json: bool, html: Path | None, baseline: str | None,
            fail_under: float | None, max_regression: float | None) -> None:
    from keel.evals.report import (
        check_gate,
        load_baseline,
        print_summary,
        raise_for_gate,
        summary_json,
    )

    base = None
    comparison = None
    if baseline:
        if Path(baseline).is_file():
            base = load_baseline(Path(baseline))
        else:
            from keel.evals import compare_runs, summarize

            base = summarize(store, baseline)
            comparison = compare_runs(store, base.run_id, summary.run_id)
    if as_json:
        print(summary_json(summary))
    else:
        print_summary(summary)
    if html:
        from keel.evals.html import render_html

        html.write_text(render_html(store, summary, comparison=comparison), encoding="utf-8")
        print(f"wrote {html}", file=sys.stderr)
    if (max_regression is not None) and base is None:
        from keel.evals.errors import EvalSpecError

        raise EvalSpecError("--max-regression needs --baseline RUN_ID or a summary JSON file",
                            hint="save one with `keel eval show RUN --json > baseline.json`")
    raise_for_gate(check_gate(summary, fail_under=fail_under, baseline=base, max_regression=max_regression))


@app.command("run", epilog=RUN_EPILOG)
def run(eval_file: Path = typer.Argument(..., help="A Keel eval (YAML/JSON), an OpenAI eval (JSON) or a promptfoo config."),  # noqa: B008
        data: Path | None = typer.Option(None, "--data", help="Items (JSONL/CSV); needed for OpenAI definitions."),  # noqa: B008
        model: str | None = typer.Option(None, "--model", "-m", help="OpenAI definitions: the model under test."),
        judge_model: str | None = typer.Option(None, "--judge-model", help="OpenAI definitions: the model for every judge."),
        concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1, help="Items in flight."),
        fail_under: float | None = typer.Option(None, "--fail-under", min=0, max=1,
                                                help="Fail (exit 1) if a target's pass rate is below this (0-1)."),
        max_regression: float | None = typer.Option(None, "--max-regression", min=0, max=1,
                                                    help="Fail (exit 1) if a pass rate fell more than this (0-1) "
                                                         "below --baseline."),
        baseline: str | None = typer.Option(None, "--baseline", help="Run id, or a summary JSON from `keel eval show --json`."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
        html: Path | None = typer.Option(None, "--html", help="Also write a self-contained HTML report here."),  # noqa: B008
        file: list[str] = typer.Option([], "--file", metavar="FILE_ID=PATH", help="OpenAI definitions: FILE_ID=PATH, a local copy of "  # noqa: B008
                                       "an uploaded file the run reads (repeatable)."),
        run_file: Path | None = typer.Option(None, "--run", metavar="RUN.json", help="OpenAI definitions: an eval run's JSON (GET "  # noqa: B008
                                             "/v1/evals/{id}/runs/{run_id}); its data_source is run.")) -> None:
    """Run an eval: sample every target on every item, grade, store, report.

    EVAL_FILE is a Keel eval, an OpenAI eval as GET /v1/evals/{id} returns it, or a promptfoo
    config (promptfooconfig.yaml); see docs/migrate.md.
    """
    from keel.evals import load_eval, run_eval
    from keel.evals.spec import parse_eval
    from keel.store import open_store

    options = {k: v for k, v in (("data_file", str(data) if data else None), ("model", model),
                                 ("judge_model", judge_model), ("files", _file_map(file)),
                                 ("run", _run_json(run_file) if run_file else None)) if v}
    spec = load_eval(eval_file, **options)
    if data and spec.dataset != str(data):
        spec = parse_eval({**spec.model_dump(mode="json"), "dataset": str(data)})
    store = open_store()
    summary = asyncio.run(run_eval(store, spec, concurrency=concurrency, progress=_progress))
    _finish(store, summary, as_json=as_json, html=html, baseline=baseline, fail_under=fail_under,
            max_regression=max_regression)


def _file_map(values: list[str]) -> dict[str, str]:
    from keel.evals.errors import EvalSpecError

    out = {}
    for v in values:
        file_id, sep, path = v.partition("=")
        if not sep or not file_id or not path:
            raise EvalSpecError(f"--file {v!r} is not FILE_ID=PATH", hint="e.g. --file file-abc123=items.jsonl")
        if not Path(path).is_file():
            raise EvalSpecError(f"--file {file_id}: {path} does not exist", hint="check the path")
        out[file_id] = path
    return out


def _run_json(path: Path) -> dict:
    from keel.evals.errors import EvalSpecError
    from keel.safeload import load_json

    try:
        value = load_json(path.read_text(encoding="utf-8"), where=str(path))
    except FileNotFoundError:
        raise EvalSpecError(f"--run {path} does not exist", hint="check the path") from None
    except ValueError as e:
        raise EvalSpecError(f"--run {path}: not valid JSON: {e}") from None
    if not isinstance(value, dict) or not isinstance(value.get("data_source"), dict):
        raise EvalSpecError(f"--run {path}: not an eval run (no data_source)",
                            hint="save one with GET /v1/evals/{eval_id}/runs/{run_id}")
    return value


@app.command("resume")
def resume(run_id: str = typer.Argument(..., help="The run to finish (a unique prefix is enough)."),
           concurrency: int | None = typer.Option(None, "--concurrency", "-c", min=1, help="Items in flight."),
           as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON.")) -> None:
    """Finish a stopped run; items already graded are not redone (no model is asked twice)."""
    from keel.evals import resume_eval
    from keel.store import open_store

    store = open_store()
    summary = asyncio.run(resume_eval(store, run_id, concurrency=concurrency, progress=_progress))
    _finish(store, summary, as_json=as_json, html=None, baseline=None, fail_under=None, max_regression=None)


@app.command("list")
def list_(limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many (newest first).")) -> None:
    """List recent eval runs."""
    from keel.evals import list_runs
    from keel.store import open_store

    runs = list_runs(open_store(), limit=limit)
    if not runs:
        print("no eval runs yet: `keel eval run EVAL_FILE`")
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))
        score = ""
        if r.summary:
            rates = [t["pass_rate"] for t in r.summary.get("targets", [])]
            score = f"pass {min(rates) * 100:.1f}%" if rates else ""
        print(f"{r.id}  {when}  {r.name:<20} {r.status:<11} {score}")


@app.command("show")
def show(run_id: str = typer.Argument(..., help="Run id (a unique prefix is enough)."),
         as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (usable as --baseline)."),
         errors: bool = typer.Option(False, "--errors", help="List the errored items."),
         html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report here.")) -> None:  # noqa: B008
    """Show a run's summary, its errored items, or write its HTML report.

    Results of workflow targets (and of datasets built from runs) carry the workflow run's id:
    `keel runs show ID` prints its trace.
    """
    from keel.evals import iter_results, summarize
    from keel.evals.report import print_summary, summary_json
    from keel.store import open_store

    store = open_store()
    summary = summarize(store, run_id)
    if as_json:
        print(summary_json(summary))
    else:
        print_summary(summary)
    if errors:
        for r in iter_results(store, summary.run_id):
            if r.status == "error":
                run = f" [workflow run {r.workflow_run_id}]" if r.workflow_run_id and r.workflow_run_id not in (r.error or "") else ""
                print(f"{r.target} item {r.idx}: {r.error}{run}")
    if html:
        from keel.evals.html import render_html

        html.write_text(render_html(store, summary), encoding="utf-8")
        print(f"wrote {html}", file=sys.stderr)


@app.command("compare")
def compare(run_a: str = typer.Argument(..., help="The baseline run."),
            run_b: str = typer.Argument(..., help="The run to compare with it."),
            max_regression: float | None = typer.Option(None, "--max-regression", min=0, max=1,
                                                        help="Exit 1 if a pass rate fell more than this (0-1)."),
            as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
            html: Path | None = typer.Option(None, "--html", help="Write run B's HTML report with the regressions.")) -> None:  # noqa: B008
    """Compare two runs target by target and item by item (regressions and improvements)."""
    from keel.evals import compare_runs, summarize
    from keel.evals.report import check_gate, print_comparison, raise_for_gate
    from keel.store import open_store

    store = open_store()
    cmp = compare_runs(store, run_a, run_b)
    if as_json:
        print(cmp.model_dump_json(indent=2))
    else:
        print_comparison(cmp)
    summary_b = summarize(store, cmp.run_b)
    if html:
        from keel.evals.html import render_html

        html.write_text(render_html(store, summary_b, comparison=cmp), encoding="utf-8")
        print(f"wrote {html}", file=sys.stderr)
    if max_regression is not None:
        raise_for_gate(check_gate(summary_b, baseline=summarize(store, cmp.run_a), max_regression=max_regression))


RETRIEVAL_EPILOG = (
    "Judgments (--judgments): a JSONL file with one query per line, "
    '{"id": "q1", "query": "how do I rotate keys?", "relevant": {"security.md": 2, "keys.md": 1}} '
    "(or a list of ids; grade 1 = relevant, higher = more); a Keel dataset NAME[@VERSION] of such items, "
    "e.g. one made by `keel eval generate-queries`; or a SMART test-collection folder (Cranfield, ADI). "
    "Ids are sources (the paths or record ids ingested) or chunk hashes (what generate-queries writes). "
    "Metrics follow trec_eval: recall@K, precision@K, mrr@K or mrr, ndcg@K, map@K or map, hit@K. "
    "Exit codes: 0 done (and the gate passed); 1 a --fail-under threshold was missed; 2 bad options or judgments."
)


def _gate_pairs(values: list[str]) -> dict[str, float]:
    from keel.evals.errors import EvalSpecError

    out = {}
    for v in values:
        metric, eq, number = v.partition("=")
        try:
            out[metric.strip().lower()] = float(number)
        except ValueError:
            eq = ""
        if not eq:
            raise EvalSpecError(f"--fail-under {v!r} is not METRIC=VALUE", hint="e.g. --fail-under ndcg@10=0.6")
    return out


@app.command("retrieval", epilog=RETRIEVAL_EPILOG)
def retrieval(collection: str = typer.Argument(..., help="The context collection to search (`keel context list`)."),
              judgments: str = typer.Option(..., "--judgments", "-j", help="JSONL file, dataset NAME[@VERSION], or SMART folder."),
              metric: list[str] = typer.Option([], "--metric", help="Metric to report; repeatable or comma-separated (default: recall@5,recall@10,precision@10,mrr@10,ndcg@10,map@10)."),  # noqa: B008
              mode: str = typer.Option("hybrid", "--mode", help="Search mode: hybrid, dense or bm25."),
              unit: str = typer.Option("auto", "--unit", help="What the judgment ids name: source, chunk, or auto (chunk hashes -> chunk)."),
              depth: int | None = typer.Option(None, "--depth", min=1, help="Results per query (default: 100, or the largest @K)."),
              where: str | None = typer.Option(None, "--where", "-w", help="Metadata filter on the collection, as in `keel context search`."),
              rerank: str | None = typer.Option(None, "--rerank", help="Rerank with this model before scoring."),
              fail_under: list[str] = typer.Option([], "--fail-under", help="METRIC=VALUE: exit 1 if the mean is below it; repeatable."),  # noqa: B008
              worst: int = typer.Option(5, "--worst", min=0, help="Show this many lowest-scoring queries."),
              as_json: bool = typer.Option(False, "--json", help="Print the report as JSON (with --per-query, every query)."),
              per_query: bool = typer.Option(False, "--per-query", help="With --json: include each query's scores and ranking.")) -> None:
    """Score a context collection's retrieval against relevance judgments (IR metrics).

    Searches the collection for every judged query and reports the mean of each metric
    over the queries that have a relevant document, plus the queries that scored worst.
    Use it to compare search modes, embedders (fork the collection) or rerankers on your
    own documents; `keel eval generate-queries` writes judgments when you have none.

    Example: keel eval retrieval handbook --judgments gold.jsonl --mode bm25 --fail-under ndcg@10=0.6
    """
    import json

    from keel.context import Collection
    from keel.evals.errors import EvalGateFailed, EvalSpecError
    from keel.evals.retrieval import DEFAULT_METRICS, evaluate_collection, load_gold, parse_metrics
    from keel.store import open_store

    if mode not in ("hybrid", "dense", "bm25"):
        raise EvalSpecError(f"unknown search mode {mode!r}", hint="use hybrid, dense or bm25")
    if unit not in ("auto", "chunk", "source"):
        raise EvalSpecError(f"unknown unit {unit!r}", hint="use auto, chunk or source")
    metrics = metric or list(DEFAULT_METRICS)
    labels = [label for label, _, _ in parse_metrics(metrics)]
    gates = _gate_pairs(fail_under)
    for m in gates:
        if m not in labels:
            raise EvalSpecError(f"--fail-under {m}: not among the metrics reported ({', '.join(labels)})",
                                hint=f"add --metric {m}")
    gold = load_gold(judgments, store=open_store())
    flt = None
    if where:
        from keel.context.filters import parse_where

        flt = parse_where(where)
    with Collection.open(collection, create=False) as col:
        report = evaluate_collection(col, gold, metrics=metrics, mode=mode, unit=unit, depth=depth,  # type: ignore[arg-type]
                                     where=flt, rerank=rerank, progress=_progress)
    if as_json:
        print(json.dumps(report.to_json(per_query=per_query), indent=2, ensure_ascii=False))
    else:
        print(f"{report.collection} ({report.mode}, judged by {report.unit}): {len(report.queries)} queries"
              + (f", {report.skipped} without a relevant document skipped" if report.skipped else "")
              + (f", median search {report.latency_ms_p50:g} ms" if report.latency_ms_p50 is not None else ""))
        width = max(len(k) for k in report.metrics)
        for k, v in report.metrics.items():
            print(f"  {k:<{width}}  {v:.4f}")
        if worst and report.queries:
            key = next((lab for lab in labels if lab.startswith("ndcg")), labels[0])
            print(f"lowest {key}:")
            for q in report.worst(key, worst):
                rank = q.first_relevant_rank
                print(f"  {q.id}  {q.scores[key]:.3f}  first relevant at "
                      f"{rank if rank else f'> {report.depth}'}  {q.query[:70]}")
    missed = [f"{m} {report.metrics[m]:.4f} < {v:g}" for m, v in gates.items() if report.metrics[m] < v]
    if missed:
        raise EvalGateFailed("retrieval gate failed: " + "; ".join(missed),
                             hint="see the lowest-scoring queries above")


GENERATE_EPILOG = (
    "Chroma's generative benchmarking: (1) the model keeps only chunks a user could ask about "
    "(--criteria; --no-filter keeps all), (2) writes --per-chunk queries for each, in the style of "
    "your users (--context, --example), (3) each query is checked without a model: --min-words to "
    "--max-words words, no run of --max-copied-words words copied from its chunk, no near-duplicates. "
    "Every kept query is judged relevant to the chunk it came from (its content hash). The gold set is "
    "stored as a versioned dataset (--name, default COLLECTION-gold) and, with --out, written as JSONL; "
    "then run `keel eval retrieval COLLECTION --judgments NAME`."
)


@app.command("generate-queries", epilog=GENERATE_EPILOG)
def generate_queries(collection: str = typer.Argument(..., help="The context collection whose chunks the queries are written for."),
                     model: str = typer.Option(..., "--model", "-m", help="Model that filters chunks and writes queries (any Keel model string)."),
                     per_chunk: int = typer.Option(1, "--per-chunk", min=1, max=20, help="Queries per kept chunk."),
                     max_chunks: int | None = typer.Option(None, "--max-chunks", min=1, help="Sample this many chunks (seeded)."),
                     context: str = typer.Option("", "--context", help="Who your users are and what they ask; steers the style."),
                     example: list[str] = typer.Option([], "--example", help="A real user query to imitate; repeatable."),  # noqa: B008
                     criteria: str | None = typer.Option(None, "--criteria", help="Which chunks to keep (replaces the default criteria)."),
                     no_filter: bool = typer.Option(False, "--no-filter", help="Write queries for every chunk (no model filter)."),
                     min_words: int = typer.Option(3, "--min-words", min=1, help="Drop queries shorter than this."),
                     max_words: int = typer.Option(40, "--max-words", min=1, help="Drop queries longer than this."),
                     max_copied_words: int = typer.Option(8, "--max-copied-words", min=2, help="Drop queries that copy this many consecutive words of their chunk."),
                     seed: int = typer.Option(0, "--seed", help="Seed for the chunk sample and the model."),
                     concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, help="Model calls in flight."),
                     name: str | None = typer.Option(None, "--name", "-n", help="Dataset to store the gold set as (default COLLECTION-gold)."),
                     out: Path | None = typer.Option(None, "--out", "-o", help="Also write the gold set as JSONL here.")) -> None:  # noqa: B008
    """Write a gold set of queries from a collection's own chunks (generative benchmarking).

    Example: keel eval generate-queries handbook -m openai:gpt-4.1 --max-chunks 200
    --context "support engineers searching the product handbook" --example "sso login loop"
    """
    import json

    from keel.context import Collection
    from keel.evals.datasets import DatasetRow, Datasets
    from keel.evals.errors import DatasetError
    from keel.evals.generative import DEFAULT_CRITERIA, GenerationOptions, collection_chunks
    from keel.evals.generative import generate_queries as generate
    from keel.store import open_store

    options = GenerationOptions(model=model, per_chunk=per_chunk, context=context, examples=tuple(example),
                                filter_chunks=not no_filter, criteria=criteria or DEFAULT_CRITERIA,
                                max_chunks=max_chunks, seed=seed, min_words=min_words, max_words=max_words,
                                max_copied_words=max_copied_words, concurrency=concurrency)
    with Collection.open(collection, create=False) as col:
        chunks = collection_chunks(col)
    if not chunks:
        raise DatasetError(f"collection {collection!r} has no chunks", hint=f"add documents: `keel context add {collection} PATH`")
    report = asyncio.run(generate(chunks, options, progress=_progress))
    print(report.summary())
    for label, why in report.failures[:5]:
        print(f"  failed: {label}: {why}", file=sys.stderr)
    if not report.queries:
        raise DatasetError("no query passed the checks, so there is no gold set",
                           hint="see the reasons above; loosen --criteria, --max-copied-words or --min-words")
    items = [q.to_item() for q in report.queries]
    if out:
        out.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    dataset = name or f"{collection}-gold"
    info = Datasets(open_store()).import_rows(dataset, (DatasetRow(i, item) for i, item in enumerate(items)),
                                              source=f"generate-queries {collection} --model {model}")
    print(f"gold set {info.ref}: {info.item_count} queries; score it with "
          f"`keel eval retrieval {collection} --judgments {info.ref}`")
