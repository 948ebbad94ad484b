"""``keel run WORKFLOW``: run a workflow, streaming node events."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import typer

EPILOG = """Examples:

  keel run support --input "I want a refund"

  keel run ./support.yaml --input-json '{"order": 42}' --json | jq .output

WORKFLOW is a published name (latest version unless --version), or a spec file,
which is published first (unchanged files keep their version). With --json,
events go to stderr and stdout is one JSON document {"run_id", "status", "output"}.
A run that reaches a Human approval node stops with status "waiting"; answer it
with `keel approvals approve ID` and the run continues.
"""


def run(
    workflow: str = typer.Argument(..., help="Published workflow name, or a path to a spec file."),
    input: str | None = typer.Option(None, "--input", "-i", help="The input as text ('-' reads standard input)."),
    input_json: str | None = typer.Option(None, "--input-json", help="The input as a JSON value."),
    version: int | None = typer.Option(None, "--version", "-v", help="Run this published version (default: latest)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print node events."),
) -> None:
    """Run a workflow until it finishes or waits for an approval."""
    from keel.workflows import WorkflowError, arun

    if input is not None and input_json is not None:
        raise WorkflowError("give --input or --input-json, not both", hint="text: --input; JSON: --input-json")
    value: object = ""
    if input_json is not None:
        try:
            from keel.safeload import load_json

            value = load_json(input_json, where="--input-json")
        except json.JSONDecodeError as e:
            raise WorkflowError(f"--input-json is not valid JSON: {e}", hint="quote it for the shell: '{\"a\": 1}'") \
                from None
    elif input == "-":
        value = sys.stdin.read()
    elif input is not None:
        value = input
    events = sys.stderr if as_json else sys.stdout
    on_event = None if quiet else (lambda e: print_event(e, events))
    path = Path(workflow)
    target: str | Path = path if path.suffix in (".yaml", ".yml", ".json") or path.is_file() else workflow
    if version is not None and isinstance(target, Path):
        raise WorkflowError("--version applies to published workflows, not files",
                            hint="publish the file, then run it by name with --version")
    result = asyncio.run(arun(target, value, version=version, on_event=on_event))
    if as_json:
        from keel.workflows.cel_values import json_safe

        # NaN and infinities (from an input or a tool) are not JSON: print them as strings.
        print(json.dumps(json_safe(result.to_json()), ensure_ascii=False, allow_nan=False))
    else:
        print_result(result)
    if result.status == "failed":
        raise typer.Exit(1)


def print_event(e: object, out: object) -> None:
    from keel.workflows import NodeEvent

    assert isinstance(e, NodeEvent)
    if e.kind == "node_started":
        return
    if e.kind == "node_finished":
        port = f" -> {e.port}" if e.port and e.port != "next" else ""
        print(f"  ok   {e.node_id} ({e.node_type}){port}  {e.duration_ms:.1f} ms", file=out, flush=True)
    elif e.kind == "node_failed":
        print(f"  FAIL {e.node_id} ({e.node_type}): {e.error}", file=out, flush=True)
    elif e.kind == "waiting":
        print(f"  wait {e.node_id} ({e.node_type}): waiting for approval", file=out, flush=True)
    elif e.kind == "warning":
        print(f"  warn {e.node_id} ({e.node_type}): {e.text}", file=out, flush=True)


def print_result(result: object) -> None:
    from keel.workflows import RunResult

    assert isinstance(result, RunResult)
    print(f"run {result.run_id}: {result.status}")
    if result.status == "succeeded":
        out = result.output
        print(out if isinstance(out, str) else json.dumps(out, ensure_ascii=False, indent=2))
    elif result.status == "failed":
        print(f"error: {result.error}", file=sys.stderr)
        print(f"  fix: see the trace with `keel runs show {result.run_id}`", file=sys.stderr)
    elif result.approval is not None:
        print(f"approval {result.approval.id}: {result.approval.message}")
        print(f"answer with `keel approvals approve {result.approval.id}` (or reject)")
