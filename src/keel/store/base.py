"""The interface both store backends implement (:class:`~keel.store._sqlite.SQLiteStore`,
:class:`~keel.store.postgres.PostgresStore`): what the rest of Keel may call on a store."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from keel.store.group import CommitGroup
from keel.store.migrations import Migration

__all__ = ["Store"]


class Store(Protocol):
    """A Keel store. Statements are portable SQL with ``?`` placeholders (docs/store.md)."""

    dialect: str
    """``"sqlite"`` or ``"postgresql"``: for the rare statement that must differ (``FOR UPDATE
    SKIP LOCKED``, ``pg_notify``); everything else is the same SQL."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (autocommit unless inside :meth:`transaction`); rows changed."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts: ``int``, ``float``, ``str``, ``bytes`` or ``None`` values on both backends."""

    def transaction(self) -> AbstractContextManager[None]:
        """Statements of this thread inside commit together or not at all."""

    def commit_group(self) -> CommitGroup:
        """The running event loop's group commit for this store."""

    def migrate(self) -> list[str]: ...

    def applied_migrations(self) -> list[str]: ...

    def pending_migrations(self) -> list[Migration]: ...

    def integrity_check(self) -> str: ...

    def close(self) -> None: ...
