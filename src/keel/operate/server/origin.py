"""Requests that web pages make: the Host check and the same-origin and JSON checks.

A server on ``127.0.0.1`` is reachable from every web page its operator visits. Two
attacks follow, and :class:`OriginGuard` refuses both before any route runs:

- **DNS rebinding**: a page at ``http://evil.example:8000`` points its name at
  ``127.0.0.1`` and reads the API as its own origin. Its requests carry
  ``Host: evil.example:8000``. In open mode (no API key) every request must name a
  loopback host (``localhost``, ``127.0.0.1``, ``[::1]``, any port), else 403. With keys a
  proxy may use any Host: the key is the check, and a rebinding page has none.
- **Cross-site request forgery**: a page posts a form or a ``fetch`` without preflight
  (no body, ``text/plain``) to approve an approval. Every state-changing request
  (POST, PUT, PATCH, DELETE) is refused with 403 when it comes from another origin: its
  ``Origin`` is neither the request's own (``scheme://Host``) nor in ``cors_origins``, or,
  without ``Origin``, ``Sec-Fetch-Site`` says ``cross-site``. A body must be JSON
  (``Content-Type: application/json`` or ``...+json``), else 415: no browser sends that
  cross-origin without a preflight, which CORS answers only for ``cors_origins``.

Clients that are not browsers (SDKs, curl) send no ``Origin`` and pass. A few header
lookups per request: this is on the path ``benchmarks/serve.py`` measures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from keel.operate.server.errors import error_response
from keel.operate.server.settings import is_loopback

__all__ = ["OriginGuard", "loopback_host"]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_EXEMPT = frozenset({"/healthz", "/readyz"})
_LOOPBACK = frozenset({b"localhost", b"127.0.0.1", b"[::1]"})
_ALLOW_HINT = "send it from the server's own page, or allow that origin: keel serve --cors-origin ORIGIN " \
              "(cors_origins under [serve] in keel.toml)"


def loopback_host(host: bytes) -> bool:
    """Whether a ``Host`` header value (``127.0.0.1:8000``, ``[::1]``, ``localhost``) names loopback."""
    host = host.lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        name = host[:end + 1] if end > 0 else host
    else:
        name = host.partition(b":")[0]
    if name in _LOOPBACK:
        return True
    return is_loopback(name.strip(b"[]").decode("latin-1"))


def _json_type(value: bytes) -> bool:
    media = value.partition(b";")[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class OriginGuard:
    """ASGI middleware: the checks in the module docstring.

    ``open_mode()`` says whether the server runs without keys (asked only when a request
    names a host that is not loopback); ``cors_origins`` are origins allowed besides the
    request's own (``*``: any).
    """

    def __init__(self, app: Any, *, open_mode: Callable[[], bool], cors_origins: Iterable[str] = ()) -> None:
        self.app, self.open_mode = app, open_mode
        origins = [o.rstrip("/").encode() for o in cors_origins]
        self.any_origin = b"*" in origins
        self.origins = frozenset(origins)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in _EXEMPT:
            await self.app(scope, receive, send)
            return
        host = origin = fetch_site = content_type = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                fetch_site = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                has_body = value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                has_body = True
        refusal = None
        if host is not None and not loopback_host(host) and self.open_mode():
            shown = host.decode("latin-1")
            refusal = error_response(
                403, f"this server has no API keys, so it answers only requests addressed to localhost, not to "
                     f"Host {shown!r}", type="permission_error", code="open_mode_host", field="header.Host",
                hint="call it as http://127.0.0.1:PORT or http://localhost:PORT; to serve other names, create a key "
                     "(keel keys create NAME --workflow '*') and send it")
        if refusal is None and scope["method"] in _UNSAFE:
            refusal = self._cross_site(origin, fetch_site, host, scope)
            if refusal is None and has_body and (content_type is None or not _json_type(content_type)):
                sent = "no Content-Type" if content_type is None else f"Content-Type {content_type.decode('latin-1')!r}"
                refusal = error_response(
                    415, f"{scope['method']} {scope['path']} takes a JSON body, not one with {sent}",
                    code="unsupported_media_type", field="header.Content-Type",
                    hint="send the body as JSON with the header Content-Type: application/json")
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _cross_site(self, origin: bytes | None, fetch_site: bytes | None, host: bytes | None,
                    scope: dict) -> Any:
        if origin is None:
            if fetch_site != b"cross-site":
                return None
            return error_response(403, f"{scope['method']} {scope['path']} came from another site "
                                       "(Sec-Fetch-Site: cross-site) and changes state",
                                  type="permission_error", code="cross_origin", field="header.Sec-Fetch-Site",
                                  hint=_ALLOW_HINT)
        if self.any_origin or origin in self.origins:
            return None
        own = host is not None and origin.partition(b"://")[2].lower() == host.lower()
        if own:
            return None
        return error_response(403, f"{scope['method']} {scope['path']} came from the web page origin "
                                   f"{origin.decode('latin-1')!r}, which may not change state here",
                              type="permission_error", code="cross_origin", field="header.Origin", hint=_ALLOW_HINT)
