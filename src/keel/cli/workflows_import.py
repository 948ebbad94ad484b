"""``keel workflows import``: Agent Builder workflows (JSON or exported code) -> Keel specs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def import_(paths: list[Path] = typer.Argument(..., help="Agent Builder workflow JSON files or exported Agents SDK "  # noqa: B008
                                               "code (.py, .ts); the form is read from the content."),
            output: Path | None = typer.Option(None, "--output", "-o", help="File to write (one input), or a "  # noqa: B008
                                               "directory for NAME.yaml files (several). Default: YAML on stdout."),
            publish: bool = typer.Option(False, "--publish", help="Also publish each imported workflow."),
            report: Path | None = typer.Option(None, "--report", help="Write the mapping decisions as JSON "  # noqa: B008
                                               "here instead of on stderr.")) -> None:
    """Import Agent Builder workflows: the workflow JSON it kept, or the Agents SDK code its Code export
    produced (Python, TypeScript; read, never executed).

    Each workflow becomes a Keel YAML spec that passes `keel workflows validate`. What Keel has no
    equivalent for (hosted web search, code interpreter, image generation, OpenAI vector stores,
    ChatKit widgets) becomes a marked placeholder; the report lists every decision and how to finish
    each placeholder. Nothing is written unless every input imports and validates.
    """
    from keel.workflows import SpecError
    from keel.workflows import validate as check
    from keel.workflows.importers import import_file
    from keel.workflows.loader import parse_spec

    results = []
    for p in paths:
        r = import_file(p)
        try:
            check(parse_spec(r.yaml, file=f"{r.spec['name']}.yaml (imported from {p})"))
        except SpecError as e:
            from keel.cli.workflows import print_spec_error

            print_spec_error(e)
            print(f"error: {p}: the imported workflow does not validate; nothing was written", file=sys.stderr)
            raise typer.Exit(2) from None
        results.append(r)

    targets: list[Path | None] = [None] * len(results)
    if output is not None:
        if len(results) > 1 or output.is_dir():
            output.mkdir(parents=True, exist_ok=True)
            names = [r.spec["name"] for r in results]
            targets = [output / (n if names.count(n) == 1 else f"{n}-{i + 1}") for i, n in enumerate(names)]
            targets = [t.with_name(t.name + ".yaml") for t in targets]  # type: ignore[union-attr]
        else:
            targets = [output]
    elif len(results) > 1:
        from keel.workflows import WorkflowError

        raise WorkflowError("several workflows cannot all go to stdout", hint="give a directory: -o DIR")
    for r, t in zip(results, targets, strict=True):
        if t is None:
            sys.stdout.write(r.yaml)
        else:
            t.write_text(r.yaml, encoding="utf-8")
            print(f"wrote {t} ({r.spec['name']}: {len(r.spec['nodes'])} nodes, "
                  f"{len(r.report.placeholders())} placeholder(s))", file=sys.stderr)
    if report is not None:
        report.write_text(json.dumps([r.report.as_json() for r in results], indent=2, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    else:
        for r in results:
            print(r.report.text(), file=sys.stderr)
    if publish:
        from keel.store import open_store
        from keel.workflows.versions import Versions

        versions = Versions(open_store())
        for r, t in zip(results, targets, strict=True):
            loaded = parse_spec(r.yaml, file=str(t) if t else None)
            version, created = versions.publish(loaded)
            state = f"published {version.name} version {version.version}" if created else \
                f"{version.name} is unchanged: still version {version.version}"
            print(state, file=sys.stderr)
