"""``keel eval ...``: run evals (with a CI gate), resume, list, show, compare."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(help="Run evals with OpenAI-compatible graders, compare runs, gate CI.", no_args_is_help=True)

RUN_EPILOG = (
    "Exit codes: 0 the run finished and passed the gate; 1 the gate failed (--fail-under or "
    "--max-regression); 2 the eval definition or options are wrong. Items that errored are counted "
    "and reported, and count as not passed."
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
def run(eval_file: Path = typer.Argument(..., help="A Keel eval (YAML/JSON) or an OpenAI Evals definition (JSON)."),  # noqa: B008
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
        html: Path | None = typer.Option(None, "--html", help="Also write a self-contained HTML report here.")) -> None:  # noqa: B008
    """Run an eval: sample every target on every item, grade, store, report."""
    from keel.evals import load_eval, run_eval
    from keel.evals.spec import parse_eval
    from keel.store import open_store

    options = {k: v for k, v in (("data_file", str(data) if data else None), ("model", model),
                                 ("judge_model", judge_model)) if v}
    spec = load_eval(eval_file, **options)
    if data and spec.dataset != str(data):
        spec = parse_eval({**spec.model_dump(mode="json"), "dataset": str(data)})
    store = open_store()
    summary = asyncio.run(run_eval(store, spec, concurrency=concurrency, progress=_progress))
    _finish(store, summary, as_json=as_json, html=html, baseline=baseline, fail_under=fail_under,
            max_regression=max_regression)


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
    """Show a run's summary, its errored items, or write its HTML report."""
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
                print(f"{r.target} item {r.idx}: {r.error}")
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
