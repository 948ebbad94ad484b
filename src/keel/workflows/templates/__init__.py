"""Runnable workflow templates, shipped inside the package: ``keel init --template NAME [DIR]``.

Each template is a folder holding ``workflow.yaml``, a ``keel.toml`` that names its models by
alias, a README and whatever the workflow needs (tools, sample documents).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from keel.workflows.errors import WorkflowError

__all__ = ["SAMPLE_COLLECTIONS", "TEMPLATES", "catalog", "create_project", "template_dir"]

def catalog(root: Path) -> dict[str, str]:
    """Template name -> what it does (the ``description:`` line of its workflow.yaml), for the
    template folders under ``root``. Plain text reading: the CLI calls it to build ``keel init
    --help`` without importing the workflow engine."""
    out: dict[str, str] = {}
    for d in sorted(root.iterdir()):
        spec = d / "workflow.yaml"
        if spec.is_file():
            m = re.search(r"^description:\s*(.+)$", spec.read_text(encoding="utf-8"), re.MULTILINE)
            out[d.name] = m.group(1).strip() if m else ""
    return out


TEMPLATES: dict[str, str] = catalog(Path(__file__).parent)
"""Template name -> what it does."""

SAMPLE_COLLECTIONS: dict[str, dict[str, str]] = {
    "knowledge-assistant": {"handbook": "docs"},
    "code-review": {"repo": "repo"},
}
"""Template name -> the context collections its File search nodes read -> the folder of the project
to ingest into each (``keel context add COLLECTION ./FOLDER``, as its README says)."""


def template_dir(name: str) -> Path:
    """The folder of template ``name`` inside the package; an unknown name raises
    :class:`WorkflowError` with the closest name and the list of templates as its hint."""
    if name not in TEMPLATES:
        import difflib

        close = difflib.get_close_matches(name, list(TEMPLATES), n=1)
        raise WorkflowError(f"no template named {name!r}",
                            hint=(f"did you mean {close[0]!r}? " if close else "")
                            + f"templates: {', '.join(TEMPLATES)} (`keel init` lists them)")
    return Path(__file__).parent / name


def create_project(template: str, dest: str | Path | None = None) -> Path:
    """Materialise template ``template`` as a project folder at ``dest`` and return its path.

    ``dest`` defaults to ``./TEMPLATE``; it may exist only as an empty directory (parents are
    created). The folder then holds ``workflow.yaml`` (the graph; its ``name`` is the template's
    name), ``keel.toml`` (the model aliases the graph uses, to point at any provider), a
    ``README.md`` saying how to run it, and what the workflow needs: ``support_tools.py`` (Python
    tools, imported from the project folder) for ``customer-service``, a ``docs/`` folder of
    markdown to ingest into the ``handbook`` collection for ``knowledge-assistant``.

    Run Keel from inside the folder (``keel workflows validate workflow.yaml``, ``keel run
    workflow.yaml``) so it reads ``keel.toml`` and finds the tools. Nothing is published,
    ingested or run here: the caller decides (``keel.workflows.publish``, ``keel.context``).

    Raises :class:`WorkflowError` (with a hint, never a traceback in the CLI) for an unknown
    template or a ``dest`` that is a file or a non-empty directory.
    """
    source = template_dir(template)
    target = Path(dest) if dest is not None else Path(template)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise WorkflowError(f"{target} already exists and is not empty",
                            hint="pick a new directory: keel init --template NAME DIR")
    def ignore(folder: str, names: list[str]) -> set[str]:
        # an __init__.py at a template's top is packaging, not the project's; a sample package's
        # (code-review's repo/shop/) is part of the sample
        top = {"__init__.py"} if Path(folder) == source else set()
        return {n for n in names if n == "__pycache__" or n.endswith(".pyc")} | (set(names) & top)

    shutil.copytree(source, target, dirs_exist_ok=True, ignore=ignore)
    return target
