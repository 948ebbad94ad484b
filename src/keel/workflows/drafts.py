"""Drafts: the working copy of a workflow a visual editor saves, one per workflow name.

A draft is YAML text with a ``revision`` (1, 2, 3... bumped on every save), who saved it last
and when. A save names the revision it was based on (``base_revision``, 0 for "there was no
draft"); when another save came first, :class:`DraftConflict` carries the current draft and
nothing is written, so the caller can show both and let the user resolve it. A draft may be
invalid (work in progress); only publishing and previewing need a valid one.

- :meth:`Drafts.publish` makes a version through :meth:`keel.workflows.Versions.publish`, the
  path ``keel workflows publish`` takes. A draft that differs from the latest version only in
  its ``layout`` (not part of the digest) publishes no new version: the latest one is returned
  with ``created=False`` and the layout stays in the draft. The draft is kept after publishing.
- :meth:`Drafts.preview` snapshots a valid draft as an unlisted *preview version* (version 0,
  table ``workflow_previews``), which :class:`~keel.workflows.engine.Engine` runs like any
  version: durable, resumable, approvals answered by the usual routes. The same draft text with
  the same models reuses its snapshot.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from keel.store import SQLiteStore
from keel.workflows.errors import SpecError, WorkflowError, WorkflowNotFoundError
from keel.workflows.loader import LoadedSpec, parse_spec
from keel.workflows.versions import Versions, WorkflowVersion, resolved_models, spec_digest

__all__ = ["PREVIEW_VERSION", "Draft", "DraftConflict", "Drafts"]

PREVIEW_VERSION = 0
"""The version number preview runs record (published versions start at 1)."""

MAX_SOURCE_CHARS = 1_000_000
"""Largest draft text kept (a workflow of 2,000 nodes is a few hundred kilobytes)."""


@dataclass(frozen=True)
class Draft:
    """The working copy of one workflow."""

    name: str
    source: str
    """The YAML (or JSON) text, as the editor left it."""
    revision: int
    """1 for the first save, then one more per save."""
    digest: str | None
    """The spec's digest when the text parses as a spec (compare with a version's), else None."""
    created_at: float
    updated_at: float
    updated_by: str | None
    """Who saved it last (``key:<id> (<name>)`` under ``keel serve`` with keys, ``web UI`` in open mode)."""


class DraftConflict(WorkflowError):
    """A save (or publish) named a revision that is no longer the draft's: someone saved meanwhile.
    ``current`` is the draft as it is now (None when it was deleted)."""

    def __init__(self, name: str, base_revision: int, current: Draft | None) -> None:
        now = current.revision if current is not None else 0
        super().__init__(
            f"the draft of {name!r} is at revision {now}, not {base_revision}: it was saved meanwhile"
            + (f" by {current.updated_by}" if current is not None and current.updated_by else ""),
            hint="reload the draft, merge your changes into it, and save with its revision as base_revision")
        self.current = current
        self.base_revision = base_revision


def _draft(row: dict[str, Any]) -> Draft:
    return Draft(name=row["name"], source=row["source"], revision=row["revision"], digest=row["digest"],
                 created_at=row["created_at"], updated_at=row["updated_at"], updated_by=row["updated_by"])


def _digest(source: str) -> str | None:
    try:
        return spec_digest(parse_spec(source).spec)
    except SpecError:
        return None


class Drafts:
    """Read, save, publish and preview drafts in a store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def get(self, name: str) -> Draft | None:
        rows = self.store.query("SELECT * FROM workflow_drafts WHERE name = ?", (name,))
        return _draft(rows[0]) if rows else None

    def list(self) -> list[Draft]:
        return [_draft(r) for r in self.store.query("SELECT * FROM workflow_drafts ORDER BY name")]

    def save(self, name: str, source: str, *, base_revision: int, by: str | None = None) -> Draft:
        """Store ``source`` as revision ``base_revision + 1``; :class:`DraftConflict` unless the
        draft is at ``base_revision`` now (0: there is no draft yet)."""
        if len(source) > MAX_SOURCE_CHARS:
            raise WorkflowError(f"the draft of {name!r} is {len(source):,} characters, more than "
                                f"{MAX_SOURCE_CHARS:,}", hint="split the workflow, or edit the YAML file and publish it "
                                "with `keel workflows publish`")
        digest, now = _digest(source), time.time()
        with self.store.transaction():
            if base_revision == 0:  # the transaction holds the write lock: no save can come between
                changed = 0 if self.get(name) is not None else self.store.execute(
                    "INSERT INTO workflow_drafts (name, source, revision, digest, created_at, updated_at, "
                    "updated_by) VALUES (?, ?, 1, ?, ?, ?, ?)", (name, source, digest, now, now, by))
            else:
                changed = self.store.execute(
                    "UPDATE workflow_drafts SET source = ?, revision = revision + 1, digest = ?, updated_at = ?, "
                    "updated_by = ? WHERE name = ? AND revision = ?", (source, digest, now, by, name, base_revision))
            current = self.get(name)
        if changed != 1 or current is None:
            raise DraftConflict(name, base_revision, current)
        return current

    def delete(self, name: str) -> bool:
        """Drop the draft of ``name`` (its published versions stay); whether there was one."""
        return self.store.execute("DELETE FROM workflow_drafts WHERE name = ?", (name,)) == 1

    def loaded(self, draft: Draft) -> LoadedSpec:
        """The draft parsed (:class:`SpecError` if it does not parse), named as its source."""
        loaded = parse_spec(draft.source, file=f"draft:{draft.name}@r{draft.revision}")
        if loaded.spec.name != draft.name:
            raise WorkflowError(f"the draft of {draft.name!r} names the workflow {loaded.spec.name!r}",
                                hint=f"set `name: {draft.name}` (a draft keeps the name of its workflow)")
        return loaded

    def _at(self, name: str, revision: int) -> Draft:
        draft = self.get(name)
        if draft is None:
            raise WorkflowNotFoundError(f"workflow {name!r} has no draft",
                                        hint="save one first (PUT /ui/api/canvas/workflows/NAME/draft)")
        if draft.revision != revision:
            raise DraftConflict(name, revision, draft)
        return draft

    def publish(self, name: str, *, revision: int, tools: Any = None,
                models: dict[str, str] | None = None) -> tuple[WorkflowVersion, bool]:
        """Validate the draft at ``revision`` and publish it as the next version; ``(version,
        created)`` as :meth:`Versions.publish` (``created`` is False for an unchanged meaning)."""
        from keel.workflows.validate import compile_workflow

        loaded = self.loaded(self._at(name, revision))
        compile_workflow(loaded, tools=tools)
        return Versions(self.store).publish(loaded, models=models)

    def preview(self, name: str, source: str, *, revision: int, tools: Any = None,
                aliases: dict[str, str] | None = None) -> WorkflowVersion:
        """An unlisted, runnable snapshot of ``source`` (the draft at ``revision``, or the latest
        version's text when there is no draft: revision 0). Validated first (:class:`SpecError`)."""
        from keel.workflows.validate import compile_workflow

        loaded = parse_spec(source, file=f"preview:{name}@r{revision}")
        if loaded.spec.name != name:
            raise WorkflowError(f"the draft of {name!r} names the workflow {loaded.spec.name!r}",
                                hint=f"set `name: {name}` (a draft keeps the name of its workflow)")
        if aliases is None:
            from keel.config import get_settings

            aliases = get_settings().models
        models = dict(sorted(resolved_models(loaded.spec, aliases).items()))
        compile_workflow(loaded, tools=tools, models=models)
        from keel.connectors.use import check_spec

        check_spec(loaded, self.store)  # a preview may use only the connectors a publish could
        key = hashlib.sha256(json.dumps([source, models]).encode()).hexdigest()
        versions = Versions(self.store)
        rows = self.store.query("SELECT id FROM workflow_previews WHERE name = ? AND digest = ?", (name, key))
        if rows:
            return versions.by_id(rows[0]["id"])
        row = {"id": uuid.uuid4().hex, "name": name, "spec": loaded.spec.model_dump_json(by_alias=True),
               "source": source, "digest": key, "models": json.dumps(models) if models else None,
               "draft_revision": revision, "created_at": time.time()}
        self.store.execute(f"INSERT INTO workflow_previews ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                           tuple(row.values()))
        return versions.by_id(row["id"])
