"""API keys for ``keel serve``: stored hashed, scoped to workflows, revocable.

A key reads ``keel_sk_<id>_<secret>``. Only ``id`` (public, shown in lists and access
logs) and the SHA-256 of the whole key are stored, so a copy of the store gives no
working key. ``scopes`` lists the workflow names a key may call (``*``: all);
``roles`` what else it may do in those workflows (:data:`ROLES`): ``approver`` decides
approvals, ``admin`` reads every caller's runs, traces, approvals and evals (and decides
approvals too). See docs/security.md, "API keys, roles and tenancy".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

from keel.errors import UserError
from keel.store import SQLiteStore

__all__ = ["CHANNEL", "KEY_PATTERN", "ROLES", "ApiKey", "ApiKeyError", "Keys"]

PREFIX = "keel_sk_"
KEY_PATTERN = re.compile(r"keel_sk_[a-z0-9]{8}_[A-Za-z0-9_-]{20,}")
"""What a Keel API key looks like (used to redact keys from logs)."""
ROLES = ("approver", "admin")
"""Roles a key may have besides its workflow scopes."""
CHANNEL = "keel_keys"
"""The PostgreSQL channel :meth:`Keys.revoke` notifies: every server listening drops the keys it
has cached (:meth:`Keys.forget`)."""
_CACHED_KEYS = 1000


class ApiKeyError(UserError):
    """No such key, or a key cannot be created as asked."""


@dataclass(frozen=True)
class ApiKey:
    """One API key as stored (never the secret itself)."""

    id: str
    """Public prefix id, e.g. ``a1b2c3d4``: appears in lists and logs."""
    name: str
    scopes: tuple[str, ...]
    """Workflow names this key may call; ``*`` allows every workflow."""
    daily_tokens: int | None
    """Cap on input + output tokens per UTC day for this key (None: no cap)."""
    daily_cost_usd: float | None
    user_daily_tokens: int | None
    """Cap per end user (``X-Keel-User`` or the OpenAI ``user`` field) per UTC day."""
    user_daily_cost_usd: float | None
    created_at: float
    revoked_at: float | None
    last_used_at: float | None
    roles: tuple[str, ...] = ()
    """Of :data:`ROLES`: ``approver`` may decide approvals of its workflows; ``admin`` may read
    every caller's runs, traces, approvals and evals in its workflows, and decide approvals."""

    def allows(self, workflow: str) -> bool:
        return "*" in self.scopes or workflow in self.scopes


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _row(r: dict) -> ApiKey:
    return ApiKey(r["id"], r["name"], tuple(json.loads(r["scopes"])), r["daily_tokens"], r["daily_cost_usd"],
                  r["user_daily_tokens"], r["user_daily_cost_usd"], r["created_at"], r["revoked_at"],
                  r["last_used_at"], tuple(json.loads(r.get("roles") or "[]")))


class Keys:
    """Create, list, revoke and verify keys in a store."""

    def __init__(self, store: SQLiteStore, *, since: float | None = None, cache_seconds: float = 0.0) -> None:
        self.store = store
        self.since = time.time() if since is None else since
        """When the server these keys guard started (``keel serve`` passes it to every worker)."""
        self._required = False
        self.cache_seconds = cache_seconds
        """How long :meth:`verify` may answer a key from memory without asking the store (0: never).
        ``keel serve`` on PostgreSQL caches keys and drops them all when a revocation is notified
        on :data:`CHANNEL`; this bounds how long a revocation whose notification it missed (its
        listening connection was down) goes unseen."""
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        self._generation = 0

    def create(self, name: str, *, scopes: list[str], daily_tokens: int | None = None,
               daily_cost_usd: float | None = None, user_daily_tokens: int | None = None,
               user_daily_cost_usd: float | None = None, roles: list[str] | tuple[str, ...] = ()
               ) -> tuple[ApiKey, str]:
        """A new key: ``(record, secret)``. The secret is returned once and never stored."""
        if not scopes:
            raise ApiKeyError("a key needs at least one workflow in its scope",
                            hint="pass --workflow NAME (repeatable), or --workflow '*' for every workflow")
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise ApiKeyError(f"unknown key role {unknown[0]!r}", hint=f"use one of: {', '.join(ROLES)}")
        key_id = secrets.token_hex(4)
        secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
        now = time.time()
        self.store.execute(
            "INSERT INTO serve_keys (id, name, key_hash, scopes, daily_tokens, daily_cost_usd, user_daily_tokens,"
            " user_daily_cost_usd, created_at, roles) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key_id, name, _hash(secret), json.dumps(sorted(set(scopes))), daily_tokens, daily_cost_usd,
             user_daily_tokens, user_daily_cost_usd, now, json.dumps(sorted(set(roles)))))
        return self.get(key_id), secret

    def get(self, key_id: str) -> ApiKey:
        rows = self.store.query("SELECT * FROM serve_keys WHERE id = ?", (key_id,))
        if not rows:
            raise ApiKeyError(f"no API key with id {key_id!r}", hint="list keys with `keel keys list`")
        return _row(rows[0])

    def list(self, *, include_revoked: bool = False) -> list[ApiKey]:
        sql = "SELECT * FROM serve_keys" + ("" if include_revoked else " WHERE revoked_at IS NULL")
        return [_row(r) for r in self.store.query(sql + " ORDER BY created_at")]

    def revoke(self, key_id: str) -> ApiKey:
        self.get(key_id)
        self.store.execute("UPDATE serve_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                           (time.time(), key_id))
        self.forget()
        if self.store.dialect != "sqlite":  # servers drop their cached keys (SQLite's servers cache none)
            self.store.notify(CHANNEL, key_id)
        return self.get(key_id)

    def forget(self) -> None:
        """Drop every cached key (a key was revoked): the next request of each asks the store."""
        self._generation += 1
        self._cache.clear()

    def cached(self, secret: str) -> ApiKey | None:
        """The key ``secret`` is, if :meth:`verify` found it active less than :attr:`cache_seconds`
        ago and no revocation was heard since; else None (ask :meth:`verify`)."""
        if not self._cache:
            return None
        hit = self._cache.get(_hash(secret))
        if hit is None or time.monotonic() - hit[1] >= self.cache_seconds:
            return None
        return hit[0]

    def any_active(self) -> bool:
        return bool(self.store.query("SELECT 1 FROM serve_keys WHERE revoked_at IS NULL LIMIT 1"))

    def required(self) -> bool:
        """Whether a server with these keys needs one on every request: an active key exists, or
        one was revoked since :attr:`since` (the server's start). So revoking the last key does
        not silently reopen a running server to keyless callers, in any of its workers (even one
        that never saw the key active, or that uvicorn started again); a restart does. Sticky
        once true."""
        if not self._required:
            self._required = bool(self.store.query(
                "SELECT 1 FROM serve_keys WHERE revoked_at IS NULL OR revoked_at >= ? LIMIT 1", (self.since,)))
        return self._required

    def verify(self, secret: str) -> ApiKey | None:
        """The active key ``secret`` is, or None (unknown, malformed or revoked)."""
        if not secret.startswith(PREFIX):
            return None
        cached = self.cached(secret)
        if cached is not None:
            return cached
        generation = self._generation
        key_id = secret[len(PREFIX):].split("_", 1)[0]
        rows = self.store.query("SELECT * FROM serve_keys WHERE id = ?", (key_id,))
        if not rows or rows[0]["revoked_at"] is not None:
            return None
        digest = _hash(secret)
        if not hmac.compare_digest(rows[0]["key_hash"], digest):
            return None
        self._required = True
        key = _row(rows[0])
        # Kept unless a revocation was heard while the row was read (it may predate the revoke).
        if self.cache_seconds > 0 and generation == self._generation:
            if len(self._cache) >= _CACHED_KEYS:
                self._cache.clear()
            self._cache[digest] = (key, time.monotonic())
        return key

    def active(self, key_id: str) -> ApiKey | None:
        """The key ``key_id`` if it exists and is not revoked (a client token's minting key)."""
        rows = self.store.query("SELECT * FROM serve_keys WHERE id = ?", (key_id,))
        if not rows or rows[0]["revoked_at"] is not None:
            return None
        return _row(rows[0])
