"""``keel runs ...``: list runs, show one as a trace tree, cancel one, resume interrupted ones."""

from __future__ import annotations

import asyncio
import json
import time

import typer

app = typer.Typer(help="Inspect workflow runs and resume the ones a crash interrupted.", no_args_is_help=True)


@app.command("list")
def list_(workflow: str | None = typer.Option(None, "--workflow", "-w", help="Only runs of this workflow."),
          status: str | None = typer.Option(None, "--status",
                                            help="running, waiting, succeeded, failed or cancelled."),
          limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many (newest first)."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List recent runs, newest first."""
    from dataclasses import asdict

    from keel.store import open_store
    from keel.workflows import Runs

    rows = Runs(open_store()).list(workflow=workflow, status=status, limit=limit)
    if as_json:
        print(json.dumps([asdict(r) for r in rows], default=str))
        return
    if not rows:
        print("no runs yet: `keel run WORKFLOW --input ...`")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at))
        took = f"{(r.finished_at - r.created_at) * 1000:.0f} ms" if r.finished_at else "-"
        print(f"{r.id}  {when}  {r.workflow} v{r.version}  {r.status:<9} {took}")


@app.command("show")
def show(run_id: str = typer.Argument(..., help="Run id (a unique prefix is enough)."),
         as_json: bool = typer.Option(False, "--json", help="Print the spans as JSON.")) -> None:
    """Show a run as a tree of its trace: nodes, model calls (tokens, latency) and tool calls."""
    from dataclasses import asdict

    from keel.store import open_store
    from keel.workflows import Runs, Spans

    store = open_store()
    run = Runs(store).get(run_id)
    spans = Spans(store).for_trace(run.trace_id)
    if as_json:
        print(json.dumps({"run": asdict(run), "spans": [asdict(s) for s in spans]}, default=str))
        return
    print(f"run {run.id}  {run.workflow} v{run.version}  {run.status}  trace {run.trace_id}")
    if run.error:
        print(f"error: {run.error}")
    children: dict[str | None, list] = {}
    ids = {s.span_id for s in spans}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in ids else None, []).append(s)

    def line(s: object) -> str:
        a = s.attributes  # type: ignore[attr-defined]
        took = f"{s.duration_ms:.1f} ms" if s.duration_ms is not None else "open"  # type: ignore[attr-defined]
        extra = []
        if s.kind == "node" and a.get("keel.node.port") not in (None, "next"):  # type: ignore[attr-defined]
            extra.append(f"-> {a['keel.node.port']}")
        if "gen_ai.usage.input_tokens" in a:
            extra.append(f"tokens in {a['gen_ai.usage.input_tokens']} out {a.get('gen_ai.usage.output_tokens')}")
        if s.kind == "tool":  # type: ignore[attr-defined]
            extra.append(f"args {a.get('keel.tool.arguments', '')}")
        status = "" if s.status == "ok" else f" [{s.status}{': ' + s.error if s.error else ''}]"  # type: ignore[attr-defined]
        return f"{s.name}  {took}{'  ' + '  '.join(extra) if extra else ''}{status}"  # type: ignore[attr-defined]

    def walk(parent: str | None, prefix: str) -> None:
        kids = sorted(children.get(parent, []), key=lambda s: (s.started_at, s.attributes.get("keel.step", 0)))
        for i, s in enumerate(kids):
            last = i == len(kids) - 1
            print(f"{prefix}{'└── ' if last else '├── '}{line(s)}")
            walk(s.span_id, prefix + ("    " if last else "│   "))

    for root in children.get(None, []):
        print(line(root))
        walk(root.span_id, "")
    if run.status == "succeeded":
        print(f"output: {json.dumps(run.output, ensure_ascii=False)}")


@app.command("cancel")
def cancel(run_id: str = typer.Argument(..., help="Run id (a unique prefix is enough)."),
           reason: str | None = typer.Option(None, "--reason", help="Why (stored in the run's error)."),
           by: str | None = typer.Option(None, "--by", help="Who cancels (recorded).")) -> None:
    """Cancel a running or waiting run, wherever it executes.

    The run becomes `cancelled` at once and its pending approvals are closed; the process
    executing it (a `keel serve`, a worker) stops it at its next step boundary.
    """
    from keel.store import open_store
    from keel.workflows import Engine

    result = Engine(open_store()).cancel(run_id, by=by, reason=reason)
    print(f"run {result.run_id}: {result.status}")


@app.command("resume")
def resume(run_id: str | None = typer.Argument(None, help="One run to resume; default: every interrupted run."),
           concurrency: int = typer.Option(16, "--concurrency", "-c", min=1, help="Runs resumed at once."),
           watch: float | None = typer.Option(None, "--watch", min=0.1,
                                              help="Keep going: look again every this many seconds (a worker).")
           ) -> None:
    """Resume runs interrupted by a crash (from their last completed step) and approvals that timed out.

    With --watch it runs as a worker until interrupted (Ctrl-C).
    """
    from keel.store import open_store
    from keel.workflows import Engine

    async def go() -> list:
        engine = Engine(open_store())
        try:
            if watch is not None:
                await engine.serve(interval=watch, concurrency=concurrency)
            if run_id:
                return [await engine.resume(engine.runs.get(run_id).id)]
            return await engine.recover(concurrency=concurrency)
        finally:
            await engine.aclose()

    results = asyncio.run(go())
    for r in results:
        print(f"run {r.run_id}: {r.status}" + (f" ({r.error})" if r.error else ""))
    if not results:
        print("nothing to resume")
