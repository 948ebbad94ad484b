"""``keel datasets ...``: import CSV/JSONL files or stored workflow runs as versioned datasets, list and show them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(help="Versioned eval datasets: import CSV or JSONL, build from stored runs, list, show.", no_args_is_help=True)


@app.command("import")
def import_(path: Path = typer.Argument(..., help="A .csv, .tsv or .jsonl file."),  # noqa: B008
            name: str | None = typer.Option(None, "--name", "-n", help="Dataset name (default: the file's name)."),
            format: str | None = typer.Option(None, "--format", help="csv, tsv or jsonl (default: from the suffix).")) -> None:
    """Import a file as the next version of a dataset; malformed rows are reported by line and skipped."""
    from keel.evals import Datasets
    from keel.store import open_store

    report = Datasets(open_store()).import_file(path, name=name, format=format)
    for p in report.problems:
        print(f"{path}:{p.line}: skipped: {p.reason}", file=sys.stderr)
    d = report.dataset
    if report.unchanged:
        print(f"{d.ref}: unchanged ({d.item_count} items)")
    else:
        skipped = f", {len(report.problems)} rows skipped" if report.problems else ""
        print(f"imported {d.ref}: {d.item_count} items{skipped}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List datasets and their versions."""
    from dataclasses import asdict

    from keel.evals import Datasets
    from keel.store import open_store

    rows = Datasets(open_store()).list()
    if as_json:
        print(json.dumps([asdict(d) for d in rows]))
        return
    if not rows:
        print("no datasets yet: `keel datasets import FILE`")
    for d in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.created_at))
        print(f"{d.ref:<24} {d.item_count:>8} items  {when}  {d.source or ''}")


@app.command("show")
def show(ref: str = typer.Argument(..., help="NAME (latest version) or NAME@VERSION."),
         limit: int = typer.Option(10, "--limit", "-n", min=0, help="Items to print."),
         as_json: bool = typer.Option(False, "--json", help="Print items as JSON lines.")) -> None:
    """Show a dataset version and its first items."""
    from keel.evals import Datasets
    from keel.store import open_store

    datasets = Datasets(open_store())
    d = datasets.get(ref)
    if not as_json:
        print(f"{d.ref}: {d.item_count} items from {d.source or '-'} (digest {d.digest[:12]})")
    for row in datasets.rows(d.id, limit=limit):
        line = {"item": row.item, **({"sample": row.sample} if row.sample else {})}
        print(json.dumps(line, ensure_ascii=False) if as_json else f"[{row.idx}] {json.dumps(line, ensure_ascii=False)}")


@app.command("from-runs")
def from_runs(workflow: str = typer.Argument(..., help="Workflow NAME, or NAME@VERSION for one version."),
              name: str | None = typer.Option(None, "--name", "-n", help="Dataset name (default: WORKFLOW-runs)."),
              status: list[str] = typer.Option(["succeeded"], "--status", help="Run status to take; repeat for several (succeeded, failed, waiting, running)."),  # noqa: B008
              since: str | None = typer.Option(None, "--since", help="Runs created since: 7d, 24h, 30m, 2026-05-01, 2026-05-01T09:00."),
              until: str | None = typer.Option(None, "--until", help="Runs created before this time (same forms)."),
              where: list[str] = typer.Option([], "--where", help="KEY=VALUE on the run's JSON input (dotted KEY); repeat to AND them."),  # noqa: B008
              tool: list[str] = typer.Option([], "--tool", help="Only runs whose trace called this tool; repeatable."),  # noqa: B008
              limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many runs (the most recent).")) -> None:
    """Build a dataset from stored workflow runs: each run's input, output and trace, versioned like an import.

    Items are {input, output, run_id, workflow, version, status, created_at, error}, with the run's
    output as the precomputed sample (and sample.workflow_run_id, for trace graders). Run an eval
    without targets to grade the stored runs, or with a workflow target to replay the inputs on
    another version.

    Examples: keel datasets from-runs support@3 --since 7d;
    keel datasets from-runs support --status failed --where customer.tier=gold --name gold-failures
    """
    from keel.evals.errors import DatasetError
    from keel.evals.from_runs import RunFilter, dataset_from_runs, parse_time
    from keel.store import open_store

    allowed = {"succeeded", "failed", "waiting", "running"}
    bad = [s for s in status if s not in allowed]
    if bad:
        raise DatasetError(f"unknown run status {bad[0]!r}", hint=f"use one of {', '.join(sorted(allowed))}")
    pairs: dict[str, str] = {}
    for w in where:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise DatasetError(f"--where {w!r} is not KEY=VALUE", hint="e.g. --where customer.tier=gold")
        pairs[key] = value
    now = time.time()
    f = RunFilter(workflow, statuses=tuple(dict.fromkeys(status)),
                  since=parse_time(since, now=now) if since else None,
                  until=parse_time(until, now=now, option="--until") if until else None,
                  where=pairs, tools=tuple(tool), limit=limit)
    d, unchanged = dataset_from_runs(open_store(), name or f"{f.name}-runs", f)
    if unchanged:
        print(f"{d.ref}: unchanged ({d.item_count} runs)")
    else:
        print(f"built {d.ref}: {d.item_count} runs ({f.describe()})")
