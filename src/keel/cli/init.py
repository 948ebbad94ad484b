"""``keel init --template NAME [DIR]``: start a project from a runnable workflow template."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import typer


def _templates() -> dict[str, str]:
    # keel.workflows.templates.catalog, without importing the workflow engine for every `keel` command.
    spec = importlib.util.find_spec("keel.workflows")
    root = Path(next(iter(spec.submodule_search_locations))) / "templates"  # type: ignore[union-attr]
    out = {}
    for d in sorted(root.iterdir()):
        if (d / "workflow.yaml").is_file():
            m = re.search(r"^description:\s*(.+)$", (d / "workflow.yaml").read_text(encoding="utf-8"), re.M)
            out[d.name] = m.group(1).strip() if m else ""
    return out


TEMPLATES = _templates()

EPILOG = "Templates:\n\n" + "\n\n".join(f"  {name}: {about}" for name, about in TEMPLATES.items()) + """

Examples:

  keel init --template customer-service

  keel init --template knowledge-assistant ./kb

Without --template, lists the templates. The new directory holds workflow.yaml, a
keel.toml naming its models (edit the aliases to use any provider) and a README
saying how to run it; run keel from inside it.
"""


def init(
    directory: Path | None = typer.Argument(None, help="Where to create the project (default: ./NAME)."),  # noqa: B008
    template: str | None = typer.Option(None, "--template", "-t", help="The template to start from."),
) -> None:
    """Create a project from a workflow template (or list the templates)."""
    from keel.workflows.templates import create_project

    if template is None:
        for name, about in TEMPLATES.items():
            print(f"{name:<22} {about}")
        print("\ncreate one with `keel init --template NAME [DIR]`")
        return
    target = create_project(template, directory)
    print(f"created {target} from the {template} template")
    print(f"next: cd {target} && cat README.md")
