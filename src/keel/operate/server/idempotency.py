"""Idempotency keys for starting runs: ``POST /v1/workflows/{name}/runs`` with an
``Idempotency-Key`` header.

A client that lost the answer to a POST (a timeout, a dropped connection, a load balancer that
moved it to another server) sends it again with the same key, and gets the run the first request
started instead of a second run: the same ``id``, its state now (and, with ``wait``, its result).

The first request with a key reserves it in the store (``run_idempotency``: the caller's API key
id, the key, the run id it will start, a fingerprint of the request) with one
``INSERT ... ON CONFLICT DO NOTHING``; PostgreSQL's primary key makes that atomic across every
server sharing the store, SQLite's writer lock across the processes of one home. Whoever inserts
starts the run; the others read the reservation:

- same fingerprint: the reserved run (202 while its row is being written, as for an async start);
- another request under the same key: 422, the key is the client's bug (Stripe's rule);
- a reservation whose run never appeared within :data:`STALE_SECONDS` (its server died between
  the two writes): taken over, a new run started.

A request refused before its run starts (a bad input, a cap) gives its key back. Keys are scoped
to the caller's API key and kept :data:`KEEP_SECONDS`; older ones are deleted as new ones come.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from keel.ids import new_id
from keel.operate.server.errors import ApiError

__all__ = ["HEADER", "KEEP_SECONDS", "STALE_SECONDS", "Idempotency", "key_from_headers"]

HEADER = "Idempotency-Key"
MAX_KEY = 255
STALE_SECONDS = 60.0
"""A reservation whose run is not in the store after this long belongs to a server that died."""
KEEP_SECONDS = 24 * 3600.0
"""How long a key is remembered (a retry a day later starts a new run)."""
_SWEEP_EVERY = 600.0


def key_from_headers(headers: Any) -> str | None:
    """The request's ``Idempotency-Key`` (None without one); a 400 naming the header if it is malformed."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY or not all(" " <= c <= "~" for c in key):
        raise ApiError(400, f"the {HEADER} header must be 1 to {MAX_KEY} printable ASCII characters",
                       field=f"header.{HEADER}", hint="send a UUID (one per logical request, the same on its retries)")
    return key


def fingerprint(workflow: str, version: int | None, input: Any, user: str | None) -> str:
    """What makes two requests the same request (``wait`` does not: a retry may wait or not)."""
    doc = json.dumps({"workflow": workflow, "version": version, "input": input, "user": user},
                     sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(doc.encode()).hexdigest()


class Idempotency:
    """The ``run_idempotency`` table of one store."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._swept = 0.0

    def reserve(self, scope: str, key: str, fp: str) -> tuple[str, bool]:
        """(run id, True) when this request is the first with ``key``: start that run; (run id, False)
        when it is a retry of the request that reserved it."""
        now = time.time()
        if now - self._swept > _SWEEP_EVERY:
            self._swept = now
            self.store.execute("DELETE FROM run_idempotency WHERE created_at < ?", (now - KEEP_SECONDS,))
        for _ in range(3):  # a row expiring or given back between our two statements: look again
            run_id = new_id()
            if self.store.execute(
                    "INSERT INTO run_idempotency (scope, idem_key, run_id, fingerprint, created_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, idem_key) DO NOTHING",
                    (scope, key, run_id, fp, now)) == 1:
                return run_id, True
            rows = self.store.query("SELECT run_id, fingerprint, created_at FROM run_idempotency"
                                    " WHERE scope = ? AND idem_key = ?", (scope, key))
            if not rows:
                continue
            row = rows[0]
            expired = row["created_at"] < now - KEEP_SECONDS
            if row["fingerprint"] != fp and not expired:
                raise ApiError(422, f"this {HEADER} was used for a different request (another workflow, version, "
                                    "input or user)", field=f"header.{HEADER}", code="idempotency_key_reused",
                               hint="use a new key for a new request; send the same key only to retry the same one")
            orphaned = (row["created_at"] < now - STALE_SECONDS and not self.store.query(
                "SELECT 1 AS x FROM workflow_runs WHERE id = ?", (row["run_id"],)))
            if expired or orphaned:  # take it over, unless another server just did
                if self.store.execute("UPDATE run_idempotency SET run_id = ?, fingerprint = ?, created_at = ?"
                                      " WHERE scope = ? AND idem_key = ? AND run_id = ?",
                                      (run_id, fp, now, scope, key, row["run_id"])) == 1:
                    return run_id, True
                continue
            return row["run_id"], False
        raise ApiError(409, f"this {HEADER} is being used by concurrent requests right now",
                       field=f"header.{HEADER}", hint="retry in a moment")

    def release(self, scope: str, key: str, run_id: str) -> None:
        """Give the key back: the request that reserved it was refused before its run started."""
        self.store.execute("DELETE FROM run_idempotency WHERE scope = ? AND idem_key = ? AND run_id = ?"
                           " AND NOT EXISTS (SELECT 1 FROM workflow_runs WHERE id = ?)",
                           (scope, key, run_id, run_id))
