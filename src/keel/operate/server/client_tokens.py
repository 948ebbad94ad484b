"""Client tokens: short-lived credentials an app's backend mints for one end user's browser.

A browser must never hold an API key (it could act as any user of the key, and read
everything the key reads). Instead the app's backend, which holds a key, asks
``POST /v1/chatkit/sessions`` for a token bound to one user (as ChatKit's own
client-secret flow does) and hands it to the page, which sends it as
``Authorization: Bearer keel_ct_...``. A request with a token:

- acts for exactly the token's user (``X-Keel-User`` cannot name another: 403);
- has the workflow scope of the key that minted it (narrowed to one workflow if the token
  names one), never its ``approver`` / ``admin`` roles;
- stops working when it expires (at most :data:`MAX_TTL` seconds) or when the minting key
  is revoked (401).

A token reads ``keel_ct_<payload>.<signature>``: the payload is base64url JSON
``{"k": key id, "u": user, "w": workflow or null, "exp": unix seconds}`` and the signature
its HMAC-SHA256 under the server's secret: ``KEEL_SECRET_KEY`` when set (give every
worker and server of a deployment the same one), else a random secret made once and
kept in the store (table ``serve_secrets``), which every worker on that store shares.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from keel.operate.server.errors import ApiError, ErrorBody
from keel.store import SQLiteStore

__all__ = ["MAX_TTL", "PREFIX", "ClientToken", "ClientTokens", "SessionOut", "SessionRequest", "router"]

PREFIX = "keel_ct_"
MAX_TTL = 3600
"""Longest life of a client token, in seconds."""
DEFAULT_TTL = 600
_SECRET_NAME = "client_token_hmac"


@dataclass(frozen=True)
class ClientToken:
    """What a valid token says."""

    key_id: str
    user: str
    workflow: str | None
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ClientTokens:
    """Mint and verify client tokens with the server's secret."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self._secret: bytes | None = None

    def _key(self) -> bytes:
        if self._secret is None:
            env = os.environ.get("KEEL_SECRET_KEY")
            if env:
                self._secret = env.encode()
            else:
                self.store.execute(
                    "INSERT INTO serve_secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    (_SECRET_NAME, secrets.token_hex(32), time.time()))
                row = self.store.query("SELECT value FROM serve_secrets WHERE name = ?", (_SECRET_NAME,))[0]
                self._secret = row["value"].encode()
        return self._secret

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key(), (PREFIX + payload).encode(), hashlib.sha256).digest())

    def mint(self, *, key_id: str, user: str, workflow: str | None, ttl: int, now: float | None = None) -> tuple[str, int]:
        """A token and its expiry (unix seconds)."""
        expires = int((time.time() if now is None else now) + ttl)
        body = json.dumps({"k": key_id, "u": user, "w": workflow, "exp": expires}, separators=(",", ":"))
        payload = _b64(body.encode())
        return f"{PREFIX}{payload}.{self._sign(payload)}", expires

    def verify(self, token: str) -> ClientToken | None:
        """What ``token`` says, or None if it is malformed, tampered with, or expired."""
        payload, _, signature = token[len(PREFIX):].partition(".")
        if not token.startswith(PREFIX) or not payload or not signature:
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            doc = json.loads(_unb64(payload))
            claims = ClientToken(str(doc["k"]), str(doc["u"]), doc.get("w"), int(doc["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return claims if claims.expires_at > time.time() else None


class SessionRequest(BaseModel):
    user: str = Field(min_length=1, max_length=200,
                      description="Your end user's stable, opaque id: the token acts for this user only.")
    workflow: str | None = Field(default=None, max_length=100, pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$",
                                 description="Limit the token to this workflow (default: the key's scope).")
    ttl: int = Field(default=DEFAULT_TTL, ge=30, le=MAX_TTL, description="Seconds the token lives.")


class SessionOut(BaseModel):
    client_secret: str
    """The token: give it to the browser, which sends ``Authorization: Bearer <client_secret>``."""
    expires_at: int
    user: str
    workflow: str | None = None


def router(services: Any) -> APIRouter:
    """``POST /v1/chatkit/sessions``, bound to the server's ``services``."""
    r = APIRouter(tags=["chatkit"])

    @r.post("/v1/chatkit/sessions", response_model=SessionOut,
            summary="Mint a short-lived client token for one end user's browser (ChatKit's getClientSecret)",
            responses={code: {"model": ErrorBody} for code in (400, 401, 403, 422)})
    def create_session(body: SessionRequest, caller: Any = Depends(services.auth)) -> SessionOut:  # noqa: B008
        if caller.key is None:
            raise ApiError(400, "client tokens are minted with an API key, and this server has none (open mode)",
                           hint="create a key for your app's backend: keel keys create NAME --workflow WORKFLOW")
        if caller.via_token:
            raise ApiError(403, "a client token cannot mint client tokens", type="permission_error",
                           field="header.Authorization", hint="mint tokens in your backend, with its API key")
        if body.workflow is not None:
            caller.allow(body.workflow)
        token, expires = services.client_tokens.mint(key_id=caller.key.id, user=body.user, workflow=body.workflow,
                                                     ttl=body.ttl)
        return SessionOut(client_secret=token, expires_at=expires, user=body.user, workflow=body.workflow)

    return r
