"""The import report: every mapping decision an importer made, and what is left to finish.

A :class:`Report` is printed to stderr by ``keel workflows import`` (one line per decision) or
written as JSON with ``--report FILE``. Each :class:`Decision` says which node it concerns, what
was done, and -- for placeholders -- how to finish the job in Keel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

__all__ = ["Decision", "Kind", "Report"]

Kind = Literal["mapped", "changed", "placeholder", "dropped", "not_recognised"]
"""``mapped``: carried over with a different spelling; ``changed``: carried over with a change in
meaning the user should know; ``placeholder``: Keel has no equivalent, a marked stand-in was
written; ``dropped``: not carried over; ``not_recognised``: code an importer could not read."""


@dataclass(frozen=True)
class Decision:
    kind: Kind
    node: str | None
    """The Keel node id the decision concerns (None: the whole workflow)."""
    what: str
    """What was found and what became of it."""
    fix: str | None = None
    """How to finish it in Keel (placeholders and dropped settings that matter)."""

    def line(self) -> str:
        where = f" ({self.node})" if self.node else ""
        fix = f"\n    fix: {self.fix}" if self.fix else ""
        return f"{self.kind}{where}: {self.what}{fix}"


@dataclass
class Report:
    source: str
    """The imported file."""
    form: str
    """``agent_builder_json``, ``agents_sdk_python`` or ``agents_sdk_typescript``."""
    decisions: list[Decision] = field(default_factory=list)

    def add(self, kind: Kind, node: str | None, what: str, fix: str | None = None) -> None:
        d = Decision(kind, node, what, fix)
        if d not in self.decisions:
            self.decisions.append(d)

    def placeholders(self) -> list[Decision]:
        return [d for d in self.decisions if d.kind == "placeholder"]

    def as_json(self) -> dict:
        return {"source": self.source, "form": self.form, "decisions": [asdict(d) for d in self.decisions]}

    def text(self) -> str:
        head = f"{self.source}: imported from {self.form.replace('_', ' ')}"
        return "\n".join([head, *("  " + d.line() for d in self.decisions)])
