"""Errors of the importers: a file that is not what ``keel workflows import`` reads."""

from __future__ import annotations

from keel.errors import UserError

__all__ = ["NotImportable"]


class NotImportable(UserError):
    """The file is not an Agent Builder workflow JSON or Agents SDK export, or is broken; or a
    workflow holds an expression Agent Builder itself refused (the node and expression named)."""
