"""``keel approvals ...``: list and answer Human approval nodes and tool calls that need approval."""

from __future__ import annotations

import asyncio
import json
import time

import typer

from keel.cli.run import print_event, print_result

app = typer.Typer(help="List and answer pending approvals (Human approval nodes, MCP tool calls); "
                       "answering continues the run.",
                  no_args_is_help=True)


@app.command("list")
def list_(all_: bool = typer.Option(False, "--all", help="Include answered and expired approvals."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List pending approvals (oldest first)."""
    from dataclasses import asdict

    from keel.workflows import approvals

    rows = approvals(status=None if all_ else "pending")
    if as_json:
        print(json.dumps([asdict(a) for a in rows]))
        return
    if not rows:
        print("no pending approvals")
    for a in rows:
        age = time.time() - a.created_at
        print(f"{a.id}  {a.status:<8} {a.workflow}/{a.node_id}  run {a.run_id[:12]}  {age / 3600:.1f} h  {a.message}")


def decider(by: str | None) -> str:
    """Who decides from this command line, as recorded: ``cli:<os user>`` (the local operator),
    then ``as <by>`` when ``--by`` names someone."""
    import getpass

    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        user = "unknown"
    return f"cli:{user}" + (f" as {by}" if by else "")


def _answer(approval_id: str, approved: bool, by: str | None, comment: str | None, as_json: bool) -> None:
    import sys

    from keel.workflows import aapprove

    result = asyncio.run(aapprove(approval_id, approved=approved, by=decider(by), comment=comment,
                                  on_event=lambda e: print_event(e, sys.stderr if as_json else sys.stdout)))
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print_result(result)  # a failed run: its error and where to see the trace, on stderr
    if result.status == "failed":  # the decision is recorded, but the run it continued did not succeed
        raise typer.Exit(1)


@app.command("approve")
def approve(approval_id: str = typer.Argument(..., help="Approval id (a unique prefix is enough)."),
            by: str | None = typer.Option(None, "--by", help="A name recorded after cli:<os user> ('cli:ann as lin')."),
            comment: str | None = typer.Option(None, "--comment", help="A note, recorded with the decision."),
            as_json: bool = typer.Option(False, "--json", help="Print the run's result as JSON.")) -> None:
    """Approve, and continue the run here until it finishes or waits again."""
    _answer(approval_id, True, by, comment, as_json)


@app.command("reject")
def reject(approval_id: str = typer.Argument(..., help="Approval id (a unique prefix is enough)."),
           by: str | None = typer.Option(None, "--by", help="A name recorded after cli:<os user> ('cli:ann as lin')."),
           comment: str | None = typer.Option(None, "--comment", help="A note, recorded with the decision."),
           as_json: bool = typer.Option(False, "--json", help="Print the run's result as JSON.")) -> None:
    """Reject, and continue the run: a Human approval node takes its 'rejected' edge, an MCP node
    fails (its 'error' edge); an Agent's tool call is not made and its model is told so."""
    _answer(approval_id, False, by, comment, as_json)
