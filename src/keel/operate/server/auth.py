"""Who is calling: an API key (``Authorization: Bearer keel_sk_...`` or ``X-API-Key``),
the end user it acts for (``X-Keel-User``), and an optional provider key of its own.

With no active key in the store the server is *open*, and then only to clients on
loopback: ``keel serve`` refuses a non-loopback ``--host`` until a key exists, and
each request from a non-loopback address is refused too (belt and braces behind a
proxy). Once one key exists, every request needs one, until the server restarts even
if the last key is revoked (:meth:`~keel.operate.server.keys.Keys.required`). In open mode
a bearer token that is not a Keel key (an OpenAI SDK's placeholder) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from keel.operate.server.errors import ApiError
from keel.operate.server.keys import ApiKey
from keel.operate.server.settings import is_loopback

__all__ = ["PROVIDER_KEY_HEADER", "USER_HEADER", "Caller", "authenticate", "caller"]

USER_HEADER = "X-Keel-User"
PROVIDER_KEY_HEADER = "X-Keel-Provider-Key"
_MAX_USER = 200


@dataclass(frozen=True)
class Caller:
    key: ApiKey | None
    """None in open mode (no keys exist, loopback only)."""
    end_user: str | None = None
    provider_key: str | None = None

    def allow(self, workflow: str) -> None:
        """Raise 403 unless this caller may use ``workflow``."""
        if self.key is not None and not self.key.allows(workflow):
            raise ApiError(403, f"API key {self.key.id} ({self.key.name}) is not scoped to workflow {workflow!r}",
                           type="permission_error", code="scope",
                           hint=f"use a key whose scope includes it: keel keys create NAME --workflow {workflow}")

    def may_see(self, workflow: str) -> bool:
        return self.key is None or self.key.allows(workflow)

    def with_user(self, user: str | None) -> Caller:
        """The same caller acting for ``user`` (an OpenAI ``user`` field), unless a header named one."""
        if user is None or self.end_user is not None:
            return self
        return Caller(self.key, _check_user(user, "user"), self.provider_key)


def _check_user(user: str, field: str) -> str:
    if not user or len(user) > _MAX_USER:
        raise ApiError(400, f"{field} must be 1 to {_MAX_USER} characters", field=field,
                       hint="send a stable, opaque id of your end user (not an email)")
    return user


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "the Authorization header is not 'Bearer <key>'", type="authentication_error",
                           field="header.Authorization", hint="send Authorization: Bearer keel_sk_...")
        return value.strip()
    return request.headers.get("x-api-key") or None


def authenticate(request: Request) -> Caller:
    """The :class:`Caller` of ``request``, or a 401/403 :class:`ApiError`."""
    services = request.app.state.keel
    token = _token(request)
    if token is not None and not token.startswith("keel_") and not services.keys.required():
        token = None  # open mode: an OpenAI SDK's placeholder api_key ("any string", docs/serve.md)
    key = None
    if token is not None:
        key = services.keys.verify(token)
        if key is None:
            raise ApiError(401, "the API key is unknown or revoked", type="authentication_error",
                           field="header.Authorization", code="invalid_api_key",
                           hint="create one with `keel keys create NAME --workflow WORKFLOW`")
        request.state.key_id = key.id
    elif services.keys.required():  # sticky: revoking the last key does not reopen a running server
        raise ApiError(401, "this server needs an API key", type="authentication_error",
                       field="header.Authorization", code="missing_api_key",
                       hint="send Authorization: Bearer keel_sk_... (create keys with `keel keys create`)")
    else:
        client = request.client.host if request.client else ""
        if not is_loopback(client):
            raise ApiError(403, "this server has no API keys, so it answers only on loopback",
                           type="permission_error", code="open_mode_loopback_only",
                           hint="create a key with `keel keys create NAME --workflow WORKFLOW` and send it")
    user = request.headers.get(USER_HEADER)
    if user is not None:
        user = _check_user(user, f"header.{USER_HEADER}")
        request.state.end_user = user
    provider_key = request.headers.get(PROVIDER_KEY_HEADER) or None
    if provider_key is not None and not services.settings.allow_provider_keys:
        raise ApiError(400, "this deployment does not accept callers' own provider keys",
                       field=f"header.{PROVIDER_KEY_HEADER}",
                       hint="drop the header, or set allow_provider_keys = true under [serve] in keel.toml")
    return Caller(key, user, provider_key)


async def caller(request: Request) -> Caller:
    """:func:`authenticate` as an async dependency: run on the event loop (one indexed read),
    not in the thread pool FastAPI uses for sync dependencies."""
    return authenticate(request)
