"""Keel's store: all durable state (model calls today; runs, traces, evals later).

The default is an embedded SQLite file, ``$KEEL_HOME/keel.db``, in WAL mode.
The schema is written in portable SQL so that PostgreSQL can back it too.
"""

from __future__ import annotations

from pathlib import Path

from keel.store._sqlite import SQLiteStore
from keel.store.migrations import MIGRATIONS, Migration
from keel.store.model_calls import ModelCallRecord, ModelCalls

__all__ = ["MIGRATIONS", "Migration", "ModelCallRecord", "ModelCalls", "SQLiteStore", "open_store"]

Store = SQLiteStore

DB_FILENAME = "keel.db"


def open_store(home: str | Path | None = None) -> SQLiteStore:
    """Open (creating and migrating as needed) the store under ``home`` or ``KEEL_HOME``."""
    if home is None:
        from keel.config import get_settings

        home = get_settings().home
    return SQLiteStore(Path(home) / DB_FILENAME)
