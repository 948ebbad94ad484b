"""Keel's store: all durable state (model calls today; runs, traces, evals later).

The default is an embedded SQLite file, ``$KEEL_HOME/keel.db``, in WAL mode;
``KEEL_STORE_URL=postgresql://...`` puts everything in PostgreSQL instead (:mod:`keel.store.postgres`).
The same SQL and migrations run on both (:mod:`keel.store.dialect` holds the differences).
"""

from __future__ import annotations

from pathlib import Path

from keel.store._sqlite import SQLiteStore
from keel.store.base import Store
from keel.store.migrations import MIGRATIONS, Migration
from keel.store.model_calls import ModelCallRecord, ModelCalls

__all__ = ["MIGRATIONS", "Migration", "ModelCallRecord", "ModelCalls", "SQLiteStore", "Store", "open_store"]

DB_FILENAME = "keel.db"


def open_store(home: str | Path | None = None, *, url: str | None = None, migrate: bool = True) -> Store:
    """Open (creating and migrating as needed) Keel's store: the one factory every part of Keel uses.

    ``url`` (else ``KEEL_STORE_URL``, else ``store =`` in keel.toml) picks the backend:
    ``postgresql://...`` (or ``postgres://``) opens a :class:`~keel.store.postgres.PostgresStore`;
    ``sqlite:///PATH`` a SQLite file at ``PATH``; unset, the SQLite file ``keel.db`` under
    ``home`` (else ``KEEL_HOME``). A ``home`` other than KEEL_HOME is another Keel home: its
    store is the one its own ``keel.toml`` names (else its ``keel.db``). Raises
    :class:`~keel.errors.StoreError` (one line and a fix) when the store cannot be reached or
    is newer than this Keel.
    """
    pool_size = 20
    if url is None:
        from keel.config import get_settings

        settings = get_settings()
        pool_size = settings.store_pool_size
        if home is None or _same_path(Path(home), settings.home):
            url, home = settings.store, settings.home
        else:
            url = _store_in_toml(Path(home) / "keel.toml")
    url = (url or "").strip()
    if not url:
        if home is None:
            from keel.config import get_settings

            home = get_settings().home
        return SQLiteStore(Path(home) / DB_FILENAME, migrate=migrate)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme in ("postgresql", "postgres"):
        from keel.store.postgres import PostgresStore

        return PostgresStore(url, migrate=migrate, max_size=pool_size)
    if scheme == "sqlite" and url.startswith("sqlite:///"):
        return SQLiteStore(Path(url[len("sqlite:///"):]).expanduser(), migrate=migrate)
    from keel.errors import ConfigError
    from keel.store.postgres import redact_url

    raise ConfigError(f"KEEL_STORE_URL (or `store =` in keel.toml) is not a store URL: {redact_url(url)!r}",
                      hint="use postgresql://USER:PASSWORD@HOST:PORT/DATABASE, sqlite:///PATH, or leave it "
                           "unset for the embedded store under KEEL_HOME")


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:
        return a == b


def _store_in_toml(path: Path) -> str | None:
    """``store =`` in the keel.toml at ``path`` (None when there is none)."""
    import tomllib

    try:
        value = tomllib.loads(path.read_text(encoding="utf-8")).get("store")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, str) else None
