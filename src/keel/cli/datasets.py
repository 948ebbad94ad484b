"""``keel datasets ...``: import CSV/JSONL files as versioned datasets, list and show them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(help="Versioned eval datasets: import CSV or JSONL, list, show.", no_args_is_help=True)


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
