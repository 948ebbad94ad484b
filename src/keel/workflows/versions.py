"""Published versions: immutable, numbered 1, 2, 3... per workflow name.

Publishing validates the spec, then stores its source text and canonical JSON, with the
model aliases it uses as the publishing process resolved them (``models``), so a version runs
with the models it was published with wherever it runs. Publishing an unchanged spec with
unchanged models returns the latest version instead of a new one. The ``layout`` section
(where a canvas draws the nodes) is not part of the digest: publishing a spec whose only change
is its layout returns the latest version, whose stored source keeps the layout it was published
with (the canvas keeps the new one in the workflow's draft, :mod:`keel.workflows.drafts`).

Preview versions (:mod:`keel.workflows.drafts`) are runnable like versions but never listed:
``version`` 0, stored apart in ``workflow_previews``; :meth:`Versions.by_id` finds them, so a
preview run resumes and answers approvals like any other.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.store import SQLiteStore
from keel.workflows.errors import WorkflowNotFoundError
from keel.workflows.loader import LoadedSpec, parse_spec
from keel.workflows.spec import WorkflowSpec

__all__ = ["Versions", "WorkflowVersion", "model_strings", "resolved_models", "spec_digest"]


@dataclass(frozen=True)
class WorkflowVersion:
    """One published version of a workflow."""

    id: str
    name: str
    version: int
    spec: WorkflowSpec
    source: str
    """The spec text as published (YAML or JSON), so errors can still name lines."""
    source_file: str | None
    digest: str
    """SHA-256 of the canonical JSON of the spec."""
    published_at: float
    models: dict[str, str] = field(default_factory=dict)
    """Model string as the spec writes it (an alias such as ``kb-answer``, or a ``local:`` path
    relative to the project) -> the model string it stood for when this version was published.
    Runs of the version resolve through it first, then through the running process's settings
    (empty for versions published before Keel stored it)."""

    def model_for(self, model: str) -> str:
        """The model string ``model`` (as a node writes it) stood for at publish time, or ``model``."""
        return self.models.get(model, model)

    def loaded(self) -> LoadedSpec:
        return parse_spec(self.source, file=self.source_file or f"{self.name}@v{self.version}")


def _canonical(spec: WorkflowSpec) -> str:
    # Fields added later are left out while unset, so a spec published before them keeps its digest.
    # The layout never counts: moving a node on a canvas does not change what a run does.
    exclude = {"layout", "limits"} if spec.limits is None else {"layout"}
    doc = spec.model_dump(mode="json", by_alias=True, exclude=exclude)
    for node in doc.get("nodes", []):
        _drop_unset(node, _LATER_NODE_FIELDS)
    if isinstance(doc.get("limits"), dict):
        _drop_unset(doc["limits"], _LATER_LIMITS)
    return json.dumps(doc, sort_keys=True, ensure_ascii=False)


# Fields added after the first versions were published, with the value that means "unset":
# left out of the digest at that value (tests/workflows/test_digest_stability.py pins digests).
_LATER_NODE_FIELDS: dict[str, Any] = {
    "allow_requester": False,  # issue 13
    "http": None, "max_tool_result_tokens": None,  # issue 19, tools
    "agent_tools": [], "handoffs": [], "description": "",  # issue 19, multi-agent
    "memory": None,  # issue 18, memory by compaction
    "widget": None,  # issue 21, widget outputs
}
_LATER_LIMITS: dict[str, Any] = {"max_agent_depth": 3, "max_agent_turns": 1_000}  # issue 19


def _drop_unset(doc: dict[str, Any], fields: dict[str, Any]) -> None:
    for key, unset in fields.items():
        if key in doc and doc[key] == unset:
            del doc[key]


def spec_digest(spec: WorkflowSpec) -> str:
    """What a version's ``digest`` is: SHA-256 of the spec's canonical JSON (layout left out)."""
    return hashlib.sha256(_canonical(spec).encode()).hexdigest()


def model_strings(spec: WorkflowSpec) -> list[str]:
    """Every model string the spec's nodes name (Agent models, Guardrails judges), in order."""
    found: list[str] = []
    for node in spec.nodes:
        if isinstance(getattr(node, "model", None), str):
            found.append(node.model)
        if node.type == "guardrails":
            found += [c.model for c in node.resolved_checks() if getattr(c, "model", None)]
    return list(dict.fromkeys(found))


def resolved_models(spec: WorkflowSpec, aliases: dict[str, str], *, base: Path | None = None) -> dict[str, str]:
    """What each model string of ``spec`` stands for under ``aliases`` (``[models]`` of keel.toml),
    with ``local:`` file paths made absolute against ``base`` (default: the current folder).
    Only strings that change are kept: the map a version is published with."""
    from keel.models.packaged import PACKAGED

    base = base or Path.cwd()
    out: dict[str, str] = {}
    for written in model_strings(spec):
        target = aliases.get(written, written)
        prefix, sep, path = target.partition(":")
        # local:smollm2-135m names a packaged model (keel models list), not a file here
        if prefix == "local" and sep and path and path not in PACKAGED and not Path(path).expanduser().is_absolute():
            target = f"local:{(base / Path(path).expanduser()).resolve()}"
        if target != written:
            out[written] = target
    return out


class Versions:
    """Read and publish workflow versions in a store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self._by_id: dict[str, WorkflowVersion] = {}
        """Versions read so far: immutable, so a lookup costs one indexed read of an id, not a
        parse of the spec (a served request looks its workflow up every time)."""

    def publish(self, loaded: LoadedSpec, *, models: dict[str, str] | None = None) -> tuple[WorkflowVersion, bool]:
        """Store ``loaded`` (already validated) as the next version; ``(version, created)``.

        ``models``: the model aliases the spec uses, resolved (see :func:`resolved_models`);
        default: as this process's settings (``[models]`` of ./keel.toml...) resolve them. A
        spec published again with other models is a new version. A spec naming a connector it
        may not use (unknown, forbidden) is refused here (:mod:`keel.connectors.use`)."""
        from keel.connectors.use import check_spec

        check_spec(loaded, self.store)
        if models is None:
            from keel.config import get_settings

            models = resolved_models(loaded.spec, get_settings().models)
        models = dict(sorted(models.items()))
        canonical = _canonical(loaded.spec)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        name = loaded.spec.name
        with self.store.transaction():
            latest = self.store.query(
                "SELECT * FROM workflow_versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
            if latest and latest[0]["digest"] == digest and _models(latest[0]) == models:
                return _version(latest[0]), False
            number = (latest[0]["version"] if latest else 0) + 1
            row = {"id": uuid.uuid4().hex, "name": name, "version": number, "spec": canonical,
                   "source": loaded.source, "source_file": loaded.where.file, "digest": digest,
                   "published_at": time.time(), "models": json.dumps(models) if models else None}
            self.store.execute(
                f"INSERT INTO workflow_versions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()))
        return _version(row), True

    def get(self, name: str, version: int | None = None) -> WorkflowVersion:
        """Version ``version`` of ``name``, or the latest one."""
        if version is None:
            rows = self.store.query(
                "SELECT id FROM workflow_versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
        else:
            rows = self.store.query(
                "SELECT id FROM workflow_versions WHERE name = ? AND version = ?", (name, version))
        if rows:
            return self.by_id(rows[0]["id"])
        known = self.store.query("SELECT version FROM workflow_versions WHERE name = ? ORDER BY version", (name,))
        if known:
            raise WorkflowNotFoundError(
                f"workflow {name!r} has no version {version}",
                hint=f"published versions: {', '.join(str(r['version']) for r in known)}")
        names = [r["name"] for r in self.store.query("SELECT DISTINCT name FROM workflow_versions")]
        close = difflib.get_close_matches(name, names, n=1)
        raise WorkflowNotFoundError(
            f"no published workflow named {name!r}",
            hint=(f"did you mean {close[0]!r}? " if close else "")
            + "publish it with `keel workflows publish FILE`, or pass the spec file's path")

    def by_id(self, version_id: str) -> WorkflowVersion:
        cached = self._by_id.get(version_id)
        if cached is not None:
            return cached
        rows = self.store.query("SELECT * FROM workflow_versions WHERE id = ?", (version_id,))
        if not rows:  # a preview of a draft (version 0), never listed but runnable
            rows = self.store.query(
                "SELECT id, name, 0 AS version, spec, source, NULL AS source_file, digest, created_at AS published_at,"
                " models FROM workflow_previews WHERE id = ?", (version_id,))
        if not rows:
            raise WorkflowNotFoundError(f"no workflow version with id {version_id}")
        if len(self._by_id) >= 256:
            self._by_id.clear()
        found = self._by_id[version_id] = _version(rows[0])
        return found

    def list(self) -> list[dict[str, Any]]:
        """One row per workflow: name, latest version, when published, description."""
        rows = self.store.query(
            "SELECT v.name, v.version, v.published_at, v.spec FROM workflow_versions v JOIN ("
            " SELECT name, MAX(version) AS version FROM workflow_versions GROUP BY name) m"
            " ON v.name = m.name AND v.version = m.version ORDER BY v.name")
        return [{"name": r["name"], "latest": r["version"], "published_at": r["published_at"],
                 "description": json.loads(r["spec"]).get("description", "")} for r in rows]

    def diff(self, name: str, a: int, b: int) -> str:
        """Unified diff of the published sources of versions ``a`` and ``b``, after a summary
        of nodes and edges added, removed and changed."""
        va, vb = self.get(name, a), self.get(name, b)
        return structural_diff(va.spec, vb.spec) + "".join(difflib.unified_diff(
            va.source.splitlines(keepends=True), vb.source.splitlines(keepends=True),
            fromfile=f"{name}@v{a}", tofile=f"{name}@v{b}"))


def structural_diff(a: WorkflowSpec, b: WorkflowSpec) -> str:
    na = {n.id: n.model_dump(mode="json") for n in a.nodes}
    nb = {n.id: n.model_dump(mode="json") for n in b.nodes}
    ea = {(e.source, e.port, e.target) for e in a.edges}
    eb = {(e.source, e.port, e.target) for e in b.edges}
    lines = []
    lines += [f"+ node {i} ({nb[i]['type']})" for i in sorted(nb.keys() - na.keys())]
    lines += [f"- node {i} ({na[i]['type']})" for i in sorted(na.keys() - nb.keys())]
    for i in sorted(na.keys() & nb.keys()):
        if na[i] != nb[i]:
            changed = sorted(k for k in na[i].keys() | nb[i].keys() if na[i].get(k) != nb[i].get(k))
            lines.append(f"~ node {i}: {', '.join(changed)}")
    lines += [f"+ edge {s} -[{p}]-> {t}" for s, p, t in sorted(eb - ea)]
    lines += [f"- edge {s} -[{p}]-> {t}" for s, p, t in sorted(ea - eb)]
    if a.description != b.description:
        lines.append("~ description")
    return ("\n".join(lines) + "\n\n") if lines else "no change in nodes or edges\n\n"


def _models(row: dict[str, Any]) -> dict[str, str]:
    return json.loads(row["models"]) if row.get("models") else {}


def _version(row: dict[str, Any]) -> WorkflowVersion:
    return WorkflowVersion(
        id=row["id"], name=row["name"], version=row["version"],
        spec=WorkflowSpec.model_validate_json(row["spec"]), source=row["source"],
        source_file=row["source_file"], digest=row["digest"], published_at=row["published_at"],
        models=_models(row))
