"""Bring Agent Builder workflows into Keel: ``keel workflows import``.

Three source forms, told apart by their content (never by the file name alone):

- the workflow object Agent Builder kept (JSON, ``"object": "workflow"``, ``builtins.*`` nodes):
  :mod:`.agent_builder_json`;
- the Agents SDK Python code its "Code" export generated (``from agents import ...``), read
  with :mod:`ast` and never executed: :mod:`.agents_sdk_python`;
- the Agents SDK TypeScript code (``@openai/agents``): :mod:`.agents_sdk_typescript`.

Each reader builds an :class:`~.ir.AbGraph`; :mod:`.mapping` turns it into a Keel spec and
records every decision in a :class:`~.report.Report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.safeload import load_json
from keel.workflows.importers.errors import NotImportable
from keel.workflows.importers.report import Decision, Report

__all__ = ["MAX_BYTES", "Decision", "ImportResult", "NotImportable", "Report", "detect", "import_file",
           "import_text"]

MAX_BYTES = 5_000_000
"""Largest file read: Agent Builder workflows and their exports are tens of kilobytes."""

_EXPECTED = ("an Agent Builder workflow JSON (\"object\": \"workflow\"), or the Agents SDK code "
             "Agent Builder's Code export produced (Python: `from agents import ...`; TypeScript: "
             "`@openai/agents`)")


@dataclass
class ImportResult:
    spec: dict[str, Any]
    """The Keel spec as plain data."""
    yaml: str
    """The spec as readable YAML, with a header naming the source."""
    report: Report


def detect(text: str) -> str:
    """``agent_builder_json``, ``agents_sdk_python`` or ``agents_sdk_typescript`` from the content."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "agent_builder_json"
    if "@openai/agents" in text:
        return "agents_sdk_typescript"
    if "from agents import" in text or "import agents" in text:
        return "agents_sdk_python"
    return "unknown"


def import_text(text: str, *, source: str = "<text>") -> ImportResult:
    """Import one workflow from its text; raise :class:`NotImportable` with what was expected."""
    from keel.workflows.importers.mapping import to_keel, yaml_text

    form = detect(text)
    report = Report(source, form)
    if form == "agent_builder_json":
        from keel.workflows.importers.agent_builder_json import read_workflow_json

        try:
            data = load_json(text, where=source)
        except ValueError as e:
            raise NotImportable(f"{source}: not valid JSON ({e}); the file may be truncated",
                                hint=f"expected {_EXPECTED}") from None
        graph = read_workflow_json(data, source)
    elif form == "agents_sdk_python":
        from keel.workflows.importers.agents_sdk_python import read_python

        graph = read_python(text, source, report)
    elif form == "agents_sdk_typescript":
        from keel.workflows.importers.agents_sdk_typescript import read_typescript

        graph = read_typescript(text, source, report)
    else:
        raise NotImportable(f"{source}: not an Agent Builder workflow or Agents SDK export",
                            hint=f"expected {_EXPECTED}")
    spec = to_keel(graph, report)
    return ImportResult(spec, yaml_text(spec, report), report)


def import_file(path: str | Path) -> ImportResult:
    """Import the workflow in ``path`` (size-checked, decoded as UTF-8, format detected)."""
    p = Path(path)
    if not p.is_file():
        raise NotImportable(f"{p}: no such file", hint="give the path of an exported workflow")
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise NotImportable(f"{p}: {size / 1e6:.1f} MB is too large for a workflow (limit {MAX_BYTES // 1_000_000} MB)",
                            hint=f"expected {_EXPECTED}")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotImportable(f"{p}: not UTF-8 text", hint=f"expected {_EXPECTED}") from None
    if not text.strip():
        raise NotImportable(f"{p}: the file is empty", hint=f"expected {_EXPECTED}")
    return import_text(text, source=str(p))
