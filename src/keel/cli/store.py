"""``keel store``: move the store to PostgreSQL, and prune what is old."""

from __future__ import annotations

import json
import sys

import typer

app = typer.Typer(help="The store: copy an embedded store to PostgreSQL; prune old runs, logs and model calls.",
                  no_args_is_help=True)

COPY_EPILOG = """Examples:

\b
  keel store copy --to postgresql://keel:secret@db:5432/keel
  keel store copy --to postgresql://keel@db/keel --replace     # the target held rows: empty it first

Copies every table of the embedded store ($KEEL_HOME/keel.db) and every collection
($KEEL_HOME/collections) into the PostgreSQL database, then checks each table: row
counts and an order-independent checksum on both sides; exit code 1 if any differs.
Stop the servers and workers that use the embedded store first (rows written during
the copy are not copied). Afterwards, set KEEL_STORE_URL (or store = in keel.toml) to
the URL. docs/store.md, "Moving to PostgreSQL"."""

PRUNE_EPILOG = """Examples:

\b
  keel store prune --older-than 30d --dry-run    # counts, deletes nothing
  keel store prune --older-than 30d
  keel store prune --older-than 12h --json

Deletes runs that finished (succeeded, failed, cancelled) before the cutoff with their
steps, memos, approvals, spans, events and model calls; request logs, model calls and
spans older than the cutoff that belong to no kept run. Runs still running or waiting on
an approval are never deleted, however old. To prune periodically, set retention = "30d"
in keel.toml (or KEEL_RETENTION): `keel serve` applies it every hour. Works on the
embedded store and on PostgreSQL alike. docs/store.md, "Retention"."""


@app.command(epilog=COPY_EPILOG)
def copy(to: str = typer.Option(..., "--to", help="The target: postgresql://USER:PASSWORD@HOST:PORT/DATABASE."),
         replace: bool = typer.Option(False, "--replace",
                                      help="Empty the target's Keel tables (and drop same-named collections) "
                                           "first, instead of refusing a non-empty target."),
         collections: bool = typer.Option(True, "--collections/--no-collections",
                                          help="Also copy the context collections."),
         as_json: bool = typer.Option(False, "--json", help="Print the verification as JSON."),
         ) -> None:
    """Copy the embedded store (and collections) to PostgreSQL, verified by counts and checksums."""
    from keel.config import get_settings
    from keel.errors import ConfigError
    from keel.store import SQLiteStore, open_store
    from keel.store.copy import copy_store

    settings = get_settings()
    if to.split(":", 1)[0].lower() not in ("postgresql", "postgres"):
        raise ConfigError(f"--to must be a PostgreSQL URL, got {to.split(':', 1)[0]!r}",
                          hint="pass --to postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    src = open_store(settings.home, url="")
    if not isinstance(src, SQLiteStore):
        raise ConfigError("the source must be the embedded store")
    dst = open_store(url=to)
    bar = _Bar()
    try:
        report = copy_store(src, dst, home=settings.home, target_url=to, replace=replace,
                            progress=bar.update, collections=collections)
    finally:
        bar.close()
        src.close()
        dst.close()
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for t in [*report.tables, *report.collections]:
            mark = "ok" if t.ok else "MISMATCH"
            print(f"{mark:8} {t.name}: {t.target_rows} of {t.source_rows} rows"
                  + ("" if t.ok else f" (checksum {t.source_checksum[:12]} -> {t.target_checksum[:12]})"))
        print("copy verified: every table has the same rows on both sides" if report.ok
              else "copy NOT verified: see the MISMATCH lines")
    if not report.ok:
        raise typer.Exit(1)


class _Bar:
    """A rich progress bar on stderr: one line per table, rows copied so far."""

    def __init__(self) -> None:
        self._progress = None
        self._tasks: dict[str, int] = {}

    def update(self, what: str, n: int) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      TextColumn("{task.completed:,} rows"), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=False,
                                      disable=not sys.stderr.isatty())
            self._progress.start()
        if what not in self._tasks:
            self._tasks[what] = self._progress.add_task(what, total=None)
        self._progress.update(self._tasks[what], completed=n)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()


@app.command(epilog=PRUNE_EPILOG)
def prune(older_than: str = typer.Option(..., "--older-than",
                                         help="Age: 30d, 12h, 90m, 2w (a bare number is days)."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; delete nothing."),
          as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
          ) -> None:
    """Delete old finished runs (with everything they hold), request logs and model calls."""
    from keel.store import open_store
    from keel.store.retention import parse_age
    from keel.store.retention import prune as do_prune

    age = parse_age(older_than)
    store = open_store()
    try:
        report = do_prune(store, older_than=age, dry_run=dry_run)
    finally:
        store.close()
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return
    c = report.counts
    verb = "would delete" if dry_run else "deleted"
    print(f"{verb} {c.get('workflow_runs', 0)} runs ({c.get('workflow_steps', 0)} steps, "
          f"{c.get('workflow_memos', 0)} memos, {c.get('workflow_approvals', 0)} approvals, "
          f"{c.get('run_events', 0)} events), {c.get('trace_spans', 0)} spans, {c.get('model_calls', 0)} model calls, "
          f"{c.get('serve_requests', 0)} request log rows older than {older_than}")
