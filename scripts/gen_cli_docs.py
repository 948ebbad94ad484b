"""Write docs/cli.md from the `keel` command's own --help texts.

Run `python scripts/gen_cli_docs.py` after changing a command; a test fails when
the committed page differs from what this produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import typer.main

OUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def _walk(cmd: click.Command, path: list[str], parent: click.Context | None):
    ctx = click.Context(cmd, info_name=path[-1], parent=parent, terminal_width=100, max_content_width=100,
                        help_option_names=["-h", "--help"])
    yield path, cmd.get_help(ctx)
    if hasattr(cmd, "list_commands"):
        for name in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, name), [*path, name], ctx)


def render() -> str:
    from keel.cli import app

    root = typer.main.get_command(app)
    parts = ["# CLI reference", "", "Generated from `keel --help` by `scripts/gen_cli_docs.py`; do not edit.", ""]
    for path, text in _walk(root, ["keel"], None):
        parts += [f"## `{' '.join(path)}`", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)
