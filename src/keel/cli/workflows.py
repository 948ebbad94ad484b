"""``keel workflows ...``: validate, publish, list, diff, schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(help="Validate, publish and compare workflow specs (YAML or JSON).", no_args_is_help=True)


def print_spec_error(e: object) -> None:
    """Every problem of a SpecError as error:/fix: lines on stderr."""
    for p in e.problems:  # type: ignore[attr-defined]
        print(f"error: {p}", file=sys.stderr)
        print(f"  fix: {p.hint}", file=sys.stderr)


def print_warnings(wf: object) -> None:
    """A compiled workflow's warnings as warning:/fix: lines on stderr (they do not fail)."""
    for p in wf.warnings:  # type: ignore[attr-defined]
        print(f"warning: {p}", file=sys.stderr)
        print(f"  fix: {p.hint}", file=sys.stderr)


@app.command("validate")
def validate(files: list[Path] = typer.Argument(..., help="Spec files to check.")) -> None:  # noqa: B008
    """Check specs completely (structure, edges, reachability, CEL, variables, tools) without publishing.

    Every problem is printed as FILE:LINE (node ID): what is wrong, then a fix. Exit code 2 if any.
    Warnings (a cycle no while node bounds) are printed the same way and do not fail.
    """
    from keel.workflows import SpecError
    from keel.workflows import validate as check

    failed = False
    for f in files:
        try:
            wf = check(f)
        except SpecError as e:
            print_spec_error(e)
            failed = True
            continue
        print_warnings(wf)
        print(f"{f}: ok ({wf.spec.name}: {len(wf.spec.nodes)} nodes, {len(wf.spec.edges)} edges)")
    if failed:
        raise typer.Exit(2)


@app.command("publish")
def publish(file: Path = typer.Argument(..., help="The spec file to publish.")) -> None:  # noqa: B008
    """Validate and publish a spec as the workflow's next immutable version.

    Publishing an unchanged spec keeps the latest version (no new version is made).
    """
    from keel.store import open_store
    from keel.workflows import SpecError
    from keel.workflows import validate as check
    from keel.workflows.loader import load_spec
    from keel.workflows.versions import Versions

    try:
        loaded = load_spec(file)
        print_warnings(check(loaded))
    except SpecError as e:
        print_spec_error(e)
        raise typer.Exit(2) from None
    version, created = Versions(open_store()).publish(loaded)
    if created:
        print(f"published {version.name} version {version.version}")
    else:
        print(f"{version.name} is unchanged: still version {version.version}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List published workflows with their latest version."""
    from keel.store import open_store
    from keel.workflows.versions import Versions

    rows = Versions(open_store()).list()
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        print("no workflows published yet: `keel workflows publish FILE`")
    for r in rows:
        print(f"{r['name']:<30} v{r['latest']:<4} {r['description'][:60]}")


@app.command("diff")
def diff(name: str = typer.Argument(..., help="Workflow name."),
         v1: int = typer.Argument(..., help="Older version."),
         v2: int = typer.Argument(..., help="Newer version.")) -> None:
    """Show what changed between two published versions: nodes and edges, then the text diff."""
    from keel.store import open_store
    from keel.workflows.versions import Versions

    sys.stdout.write(Versions(open_store()).diff(name, v1, v2))


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of workflow specs (for editors; also docs/workflow.schema.json)."""
    from keel.workflows.schema import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=2))


@app.command("export")
def export(name: str = typer.Argument(..., help="Published workflow name."),
           python: bool = typer.Option(False, "--python", help="Write a standalone Python script."),
           output: Path | None = typer.Option(None, "--output", "-o", help="File to write (default: stdout)."),  # noqa: B008
           version: int | None = typer.Option(None, "--version", "-v", help="Version to export (default: latest).")
           ) -> None:
    """Export a published workflow; with --python, as a script that builds the same graph with
    Keel's Python API and runs it (python SCRIPT --input ...)."""
    from keel.store import open_store
    from keel.workflows import WorkflowError
    from keel.workflows.export import export_python
    from keel.workflows.versions import Versions

    if not python:
        raise WorkflowError("say what to export to", hint="keel workflows export NAME --python [-o FILE]")
    source = export_python(Versions(open_store()).get(name, version))
    if output is None:
        sys.stdout.write(source)
        return
    output.write_text(source, encoding="utf-8")
    print(f"wrote {output}: run it with `python {output} --input ...`")


from keel.cli.workflows_import import import_ as _import  # noqa: E402

app.command("import")(_import)
