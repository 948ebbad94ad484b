"""``keel doctor``'s store checks: the embedded SQLite file, or a PostgreSQL server.

On PostgreSQL, one line each for the connection, the server's version, its extensions
(pgvector) and the migrations (applied, pending, or unknown: a newer Keel migrated it).
Doctor never migrates a PostgreSQL store: that is left to the servers and workers that use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel.cli.doctor import Check
from keel.errors import KeelError

if TYPE_CHECKING:
    from keel.config import Settings

__all__ = ["check_store"]


def check_store(settings: Settings) -> list[Check]:
    url = (settings.store or "").strip()
    if url.split(":", 1)[0].lower() in ("postgresql", "postgres"):
        return _check_postgres(url)
    return [_check_sqlite(settings)]


def _check_sqlite(settings: Settings) -> Check:
    from keel.store import DB_FILENAME, open_store

    path = settings.home / DB_FILENAME
    try:
        store = open_store(settings.home)
        try:
            integrity = store.integrity_check()
            path = store.path  # `store = "sqlite:///PATH"` puts the file elsewhere
            mode = store.query("PRAGMA journal_mode")[0]["journal_mode"]
            applied = len(store.applied_migrations())
        finally:
            store.close()
    except KeelError as e:
        return Check("store", "fail", f"{path}: {e.message}", e.hint)
    if integrity != "ok":
        return Check("store", "fail", f"{path} is damaged: {integrity}",
                     f"move {path} aside (Keel starts a new store) and restore from a backup if you have one")
    return Check("store", "ok", f"{path} (SQLite, {mode} mode, {applied} migrations applied)")


def _check_postgres(url: str) -> list[Check]:
    from keel.store.migrations import MIGRATIONS
    from keel.store.postgres import PostgresStore, redact_url, server_version_text
    from keel.store.schema import newer_store_error, unknown_migrations

    try:
        store = PostgresStore(url, migrate=False, min_size=1, max_size=2, connect_timeout=5)
    except KeelError as e:
        return [Check("store", "fail", e.message, e.hint)]
    try:
        version = server_version_text(store.server_version)
        checks = [
            Check("store", "ok", f"{redact_url(url)} (PostgreSQL)"),
            Check("store server", "ok", f"PostgreSQL {version} (Keel needs 13 or newer)"),
            _check_pgvector(store),
        ]
        memory = _check_shared_buffers(store)
        if memory is not None:
            checks.append(memory)
        applied = store.applied_migrations()
    except KeelError as e:
        store.close()
        return [Check("store", "fail", e.message, e.hint)]
    store.close()
    unknown = unknown_migrations(applied)
    pending = [m.name for m in MIGRATIONS if m.name not in set(applied)]
    if unknown:
        err = newer_store_error(redact_url(url), unknown)
        checks.append(Check("store migrations", "fail", err.message, err.hint))
    elif pending:
        checks.append(Check("store migrations", "warn",
                            f"{len(applied)} applied, {len(pending)} pending ({', '.join(pending[:3])}"
                            f"{' ...' if len(pending) > 3 else ''})",
                            "they are applied (each in one transaction, one process at a time) by the next "
                            "`keel serve`, `keel worker` or other command that opens the store"))
    else:
        checks.append(Check("store migrations", "ok", f"all {len(applied)} applied"))
    return checks


def _check_shared_buffers(store: object) -> Check | None:
    """Whether ``shared_buffers`` holds the largest collection's HNSW index and its vectors (None: no
    such index yet). Smaller, dense searches copy pages in from the OS cache or the disk on every
    query (docs/deploy.md, "Server settings")."""
    rows = store.query(  # type: ignore[attr-defined]
        "SELECT c.relname AS name, pg_relation_size(c.oid) AS size FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = 'keel_context' AND c.relkind = 'i'"
        " AND c.relname LIKE 'chunks_hnsw_%' ORDER BY 2 DESC, 1 LIMIT 1")
    if not rows:
        return None
    name, index = rows[0]["name"], int(rows[0]["size"])
    try:
        cid, dim = (int(x) for x in name.split("_")[2:4])
    except ValueError:
        return None
    chunks = int(store.query(  # type: ignore[attr-defined]
        "SELECT COUNT(*) AS n FROM keel_context.chunks WHERE collection_id = ?", (cid,))[0]["n"])
    need = index + chunks * (4 * dim + 8)  # the index, and the rows' vectors a search reads back
    have = int(store.query("SELECT pg_size_bytes(current_setting('shared_buffers')) AS b")[0]["b"])  # type: ignore[attr-defined]
    mb = 1 << 20
    if have >= need:
        return Check("store memory", "ok", f"shared_buffers {have // mb} MB holds the largest collection's HNSW index"
                                           f" and vectors ({need // mb} MB, {chunks:,} chunks)")
    return Check("store memory", "warn",
                 f"shared_buffers {have // mb} MB is smaller than the largest collection's HNSW index and vectors "
                 f"({need // mb} MB, {chunks:,} chunks): dense searches read pages back from outside PostgreSQL's "
                 "cache, several times slower",
                 f"set shared_buffers to at least {-(-need * 5 // 4) // mb} MB in postgresql.conf and restart "
                 "PostgreSQL (docs/deploy.md, \"Server settings\")")


def _check_pgvector(store: object) -> Check:
    rows = store.query(  # type: ignore[attr-defined]
        "SELECT a.default_version AS available, e.extversion AS installed FROM pg_available_extensions a"
        " LEFT JOIN pg_extension e ON e.extname = a.name WHERE a.name = 'vector'")
    if not rows:
        return Check("store extensions", "warn",
                     "pgvector is not installed on the server: dense search of collections stored in "
                     "PostgreSQL runs in each Keel process instead (vectors loaded into memory on the first "
                     "query; docs/context.md)",
                     "install pgvector on the database server (Debian/Ubuntu: apt-get install "
                     "postgresql-NN-pgvector; or the pgvector/pgvector Docker image)")
    if rows[0]["installed"]:
        return Check("store extensions", "ok",
                     f"pgvector {rows[0]['installed']}: dense and hybrid search of collections in PostgreSQL "
                     "(HNSW indexes)")
    return Check("store extensions", "ok",
                 f"pgvector {rows[0]['available']} available, not yet created in this database: Keel creates "
                 "it with the first collection if its role may; until then dense search of collections runs in "
                 "each Keel process (CREATE EXTENSION vector; as a superuser)")
