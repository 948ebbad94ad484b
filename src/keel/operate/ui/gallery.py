"""The template gallery's API: ``GET /ui/api/templates``, every template ``keel init --template``
creates, with what the web UI's gallery draws (``#/templates``).

One entry per template::

    {"name", "description",                      # the workflow.yaml's description: line
     "command": "keel init --template NAME",
     "nodes": [{"id", "type", "label"}],         # the graph as the spec writes it (notes left out)
     "edges": [{"from", "to", "port"}],          # port: null for a node's only exit
     "models": {alias: model string},            # keel.toml's [models]: what to point elsewhere
     "collections": {collection: folder},        # what to ingest first (File search templates)
     "evals": [{"file", "items"}],               # the eval files and how many items each asks
     "files": [path],                            # what the project folder holds
     "readme": str}                              # its README.md, as markdown

Read from the templates inside the installed package; nothing is run or imported from them.
Mounted under ``/ui/api`` by :func:`keel.operate.ui.api.router`, so the server's API-key check
applies like every UI route (the data is public, but a server with keys shows nothing to a
browser without one).
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter

__all__ = ["gallery", "router"]


def _entry(name: str, description: str, folder: Path) -> dict[str, Any]:
    from keel.workflows.templates import SAMPLE_COLLECTIONS

    spec = yaml.safe_load((folder / "workflow.yaml").read_text(encoding="utf-8")) or {}
    nodes = [{"id": n["id"], "type": n["type"], "label": n.get("model") or n.get("collection") or ""}
             for n in spec.get("nodes") or [] if n.get("type") != "note"]
    edges = [{"from": e["from"], "to": e["to"], "port": e.get("port")} for e in spec.get("edges") or []]
    toml = folder / "keel.toml"
    models = tomllib.loads(toml.read_text(encoding="utf-8")).get("models", {}) if toml.is_file() else {}
    evals = []
    for path in sorted((folder / "evals").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        data = folder / str(doc.get("dataset", ""))
        items = sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip()) \
            if data.is_file() else 0
        evals.append({"file": f"evals/{path.name}", "items": items})
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    readme = folder / "README.md"
    return {"name": name, "description": description, "command": f"keel init --template {name}",
            "nodes": nodes, "edges": edges, "models": models, "collections": SAMPLE_COLLECTIONS.get(name, {}),
            "evals": evals, "files": files,
            "readme": readme.read_text(encoding="utf-8") if readme.is_file() else ""}


@functools.cache
def gallery() -> list[dict[str, Any]]:
    """Every template, as the gallery shows it (read once per process: the package does not change)."""
    from keel.workflows.templates import TEMPLATES, template_dir

    return [_entry(name, about, template_dir(name)) for name, about in TEMPLATES.items()]


def router(caller_dep: Any) -> APIRouter:
    r = APIRouter()

    @r.get("/templates")
    def templates(caller: Any = caller_dep) -> dict[str, Any]:
        return {"templates": gallery()}

    return r
