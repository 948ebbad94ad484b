"""OAuth 2.1 for HTTP connectors, as the MCP authorization spec describes it.

The protocol is the MCP SDK's :class:`mcp.client.auth.OAuthClientProvider`: on the server's
401 it discovers the protected-resource metadata (RFC 9728) and the authorization server's
metadata (RFC 8414), registers a client (RFC 7591), runs the authorization code grant with
PKCE (S256) and the resource indicator (RFC 8707), and refreshes an expired access token.
Keel adds what the SDK leaves to its caller (docs/connectors.md, decision 0030):

- :class:`SealedTokens`: the registration and tokens live in the connector's credentials,
  sealed like every other credential (:class:`~keel.connectors.secretbox.SecretBox`), with
  the access token's expiry, so a token loaded after a restart is refreshed when it expires;
- :func:`login` (``keel connectors login NAME``): a listener on 127.0.0.1 for the redirect,
  the URL printed (and opened in a browser when there is one);
- at run time (:func:`provider`) there is nobody to log in: a refresh the authorization server
  refuses (expired or revoked) becomes a :class:`~keel.connectors.ConnectorError` naming the
  connector and ``keel connectors login NAME``;
- one refresh across processes: an expired access token is refreshed by whichever process
  takes the connector's refresh lease (:meth:`~keel.connectors.Connectors.claim_refresh`, a
  compare-and-swap on its row, migration ``0323``); the others wait for the pair it stores and
  use it, so a rotating refresh token is spent once (two ``keel serve``, serve and a worker).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets as _secrets
import socket
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from keel.connectors.registry import Connector, ConnectorError, Connectors

__all__ = ["SealedTokens", "login", "login_needed", "provider"]

CALLBACK_PATH = "/callback"
REFRESH_LEASE = 60.0
"""Seconds a process may hold a connector's refresh lease: a holder that dies mid-refresh keeps
the others waiting at most this long, then one of them refreshes."""
logger = logging.getLogger(__name__)


class SealedTokens:
    """The SDK's ``TokenStorage`` over a connector's sealed credentials."""

    def __init__(self, registry: Connectors, connector: Connector) -> None:
        self.registry = registry
        self.name = connector.name
        self.state: dict[str, Any] = dict(connector.credentials.oauth)
        self.deferred = False
        """While True (a login in progress) the state is kept in memory only: a login that is
        abandoned or times out leaves the stored, working tokens as they were."""

    def expires_at(self) -> float | None:
        return self.state.get("expires_at")

    def reload(self) -> dict[str, Any]:
        """The state as stored now (another process may have refreshed the tokens)."""
        self.state = dict(self.registry.get(self.name, secrets=True).credentials.oauth)
        return self.state

    def _save(self) -> None:
        from keel import secrets

        tokens = self.state.get("tokens") or {}
        secrets.register(tokens.get("access_token"), tokens.get("refresh_token"),
                         (self.state.get("client") or {}).get("client_secret"))
        if not self.deferred:
            self.registry.save_oauth(self.name, self.state)

    async def get_tokens(self):
        from mcp.shared.auth import OAuthToken

        tokens = self.state.get("tokens")
        return OAuthToken.model_validate(tokens) if tokens else None

    async def set_tokens(self, tokens) -> None:
        self.state["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        self.state["expires_at"] = time.time() + tokens.expires_in if tokens.expires_in else None
        self._save()

    async def get_client_info(self):
        from mcp.shared.auth import OAuthClientInformationFull

        client = self.state.get("client")
        return OAuthClientInformationFull.model_validate(client) if client else None

    async def set_client_info(self, client_info) -> None:
        self.state["client"] = client_info.model_dump(mode="json", exclude_none=True)
        self._save()


class _LoginNeeded(Exception):
    """Raised inside the SDK's flow when it would send a person to the authorization server."""


class _QuietLoginNeeded(logging.Filter):
    """The SDK logs every failed flow with a traceback; a run that needs a login is reported as
    a clear node error instead (and the URL it would have sent a person to is nobody's business)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[1] is not None and _has(record.exc_info[1], _LoginNeeded))


logging.getLogger("mcp.client.auth.oauth2").addFilter(_QuietLoginNeeded())


def _provider_class():
    from mcp.client.auth import OAuthClientProvider

    class KeelOAuthProvider(OAuthClientProvider):
        """The SDK's provider, with the stored expiry loaded and a refused refresh remembered."""

        refused_refresh = False
        _lease: str | None = None
        """The owner id of the refresh lease this provider holds (between taking it and the
        refresh's answer)."""

        async def async_auth_flow(self, request):
            """The SDK's flow, after waiting for this connector's refresh turn (:meth:`_refresh_turn`)."""
            lease = await self._refresh_turn()
            flow = super().async_auth_flow(request)
            try:
                outgoing = await flow.__anext__()
                while True:
                    response = yield outgoing
                    outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return
            finally:
                await flow.aclose()
                if lease is not None and self._lease == lease:  # the refresh never got its answer
                    self._release()

        async def _refresh_turn(self) -> str | None:
            """When the access token has expired: the stored pair if another process refreshed
            it already; else this connector's refresh lease, so that this process alone refreshes
            (returns its owner id; the SDK's flow then refreshes, and :meth:`_handle_refresh_response`
            gives the lease back); while another process holds it, wait for the pair it stores."""
            import anyio

            ctx = self.context
            storage = ctx.storage
            if not isinstance(storage, SealedTokens) or storage.deferred:
                return None  # a login in progress: no stored pair to share yet
            async with ctx.lock:
                if not self._initialized:
                    await self._initialize()
                if ctx.is_token_valid() or not ctx.can_refresh_token():
                    return None
            owner = f"{socket.gethostname()}:{os.getpid()}:{_secrets.token_hex(4)}"
            deadline = time.monotonic() + REFRESH_LEASE + 10  # past it (clocks apart): refresh as before
            delay, told = 0.02, False
            # Store calls run off the loop (rule 36): on PostgreSQL each is a round trip, and this
            # wait may poll for REFRESH_LEASE seconds while the process serves other requests.
            claim = functools.partial(storage.registry.claim_refresh, storage.name, owner, ttl=REFRESH_LEASE)
            while not ctx.is_token_valid() and not await self._adopt_stored():
                if await anyio.to_thread.run_sync(claim):
                    if await self._adopt_stored():  # stored between our look and the claim
                        await anyio.to_thread.run_sync(storage.registry.release_refresh, storage.name, owner)
                        return None
                    self._lease = owner
                    return owner
                if time.monotonic() > deadline:
                    return None
                if not told:
                    logger.info("connector %r: another process is refreshing its OAuth tokens; waiting for "
                                "the pair it stores", storage.name)
                    told = True
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.25)
            return None

        async def _adopt_stored(self) -> bool:
            """Take the stored pair if it is another, unexpired one (another process refreshed)."""
            import anyio

            storage = self.context.storage
            ours = self.context.current_tokens
            try:
                state = await anyio.to_thread.run_sync(storage.reload)
            except ConnectorError:  # removed meanwhile: the flow reports it
                return False
            tokens = state.get("tokens") or {}
            expires = state.get("expires_at")
            if not tokens.get("access_token") or (ours is not None and tokens["access_token"] == ours.access_token):
                return False
            if expires is not None and expires <= time.time():
                return False
            self.context.current_tokens = await storage.get_tokens()
            self.context.token_expiry_time = expires
            return True

        def _release(self) -> None:
            storage = self.context.storage
            if self._lease is not None and isinstance(storage, SealedTokens):
                owner, self._lease = self._lease, None
                storage.registry.release_refresh(storage.name, owner)

        async def _initialize(self) -> None:
            from mcp.shared.auth import OAuthMetadata, ProtectedResourceMetadata

            await super()._initialize()
            storage = self.context.storage
            if isinstance(storage, SealedTokens):
                if self.context.current_tokens is not None:
                    self.context.token_expiry_time = storage.expires_at()
                # Where to refresh, as discovered at login (the SDK would guess the MCP server's /token).
                found = storage.state.get("discovered") or {}
                if found.get("server") and self.context.oauth_metadata is None:
                    self.context.oauth_metadata = OAuthMetadata.model_validate(found["server"])
                if found.get("resource") and self.context.protected_resource_metadata is None:
                    self.context.protected_resource_metadata = ProtectedResourceMetadata.model_validate(
                        found["resource"])
                    self.context.auth_server_url = found.get("issuer")

        async def _handle_refresh_response(self, response) -> bool:
            try:
                return await self._refreshed(response)
            finally:
                self._release()  # the new pair is stored (or the refresh failed): others may go on

        async def _refreshed(self, response) -> bool:
            ok = await super()._handle_refresh_response(response)
            if ok:
                return True
            storage = self.context.storage
            if isinstance(storage, SealedTokens):
                # Another process (a worker, the server) may have refreshed first: refresh tokens
                # rotate, so ours was spent. Take the pair it stored rather than ask for a login.
                used = storage.state.get("tokens") or {}
                fresh = storage.reload()
                tokens = fresh.get("tokens") or {}
                if tokens.get("refresh_token") and tokens.get("refresh_token") != used.get("refresh_token"):
                    self.context.current_tokens = await storage.get_tokens()
                    self.context.token_expiry_time = storage.expires_at()
                    return True
            self.refused_refresh = True
            return False

    return KeelOAuthProvider


def _metadata(c: Connector, redirect_uri: str):
    from mcp.shared.auth import OAuthClientMetadata

    assert c.oauth is not None
    return OAuthClientMetadata(client_name=f"Keel (connector {c.name})", redirect_uris=[redirect_uri],
                               grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                               token_endpoint_auth_method="none", scope=c.oauth.scope)


def provider(registry: Connectors, c: Connector) -> Any:
    """An ``httpx.Auth`` for connector ``c`` at run time: stored tokens, refreshed when they
    expire; never a person's login (that raises, see :func:`login_needed`)."""
    async def no_person(url: str) -> None:
        raise _LoginNeeded(url)

    async def no_callback():
        raise _LoginNeeded("")

    redirect = (c.credentials.oauth.get("client") or {}).get("redirect_uris") or ["http://127.0.0.1/callback"]
    return _provider_class()(c.server, _metadata(c, redirect[0]), SealedTokens(registry, c),
                             redirect_handler=no_person, callback_handler=no_callback)


def login_needed(auth: Any, c_name: str, error: BaseException | None = None) -> ConnectorError | None:
    """The error to report when connecting with ``auth`` failed because nobody is logged in,
    or the authorization server refused to refresh the tokens; None for other failures."""
    if auth is None or not hasattr(auth, "context"):
        return None
    if error is not None and not _has(error, _LoginNeeded):
        return None
    auth.login_failure = _login_error(auth, c_name)
    return auth.login_failure


def _login_error(auth: Any, c_name: str) -> ConnectorError:
    storage = auth.context.storage
    hint = f"log in again: keel connectors login {c_name}"
    if getattr(auth, "refused_refresh", False):
        return ConnectorError(f"connector {c_name!r}: its OAuth refresh token is expired or was revoked (the "
                              "authorization server refused to refresh the access token)", hint=hint)
    if not (isinstance(storage, SealedTokens) and storage.state.get("tokens")):
        return ConnectorError(f"connector {c_name!r} uses OAuth and nobody has logged in yet",
                              hint=f"log in: keel connectors login {c_name}")
    return ConnectorError(f"connector {c_name!r}: its server refused the OAuth access token and asked for a new "
                          "login", hint=hint)


def _has(e: BaseException, kind: type) -> bool:
    if isinstance(e, kind):
        return True
    if isinstance(e, BaseExceptionGroup):
        return any(_has(x, kind) for x in e.exceptions)
    return any(_has(x, kind) for x in (e.__cause__, e.__context__) if x is not None and x is not e)


class _Redirect:
    """The local redirect listener: one ``GET /callback?code=...&state=...`` on 127.0.0.1."""

    def __init__(self) -> None:
        import asyncio

        self.result: asyncio.Future = asyncio.get_running_loop().create_future()
        self.server: Any = None
        self.port = 0

    async def start(self, port: int) -> None:
        import asyncio

        try:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        except OSError as e:
            raise ConnectorError(f"cannot listen for the login's redirect on 127.0.0.1:{port}: {e.strerror}",
                                 hint="choose a free port: keel connectors login NAME --port PORT") from None
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader, writer) -> None:
        try:
            line = (await reader.readline()).decode("latin-1")
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.split()
            target = urlsplit(parts[1]) if len(parts) >= 2 else urlsplit("/")
            if target.path != CALLBACK_PATH:
                body, status = "Not found", "404 Not Found"
            else:
                query = {k: v[0] for k, v in parse_qs(target.query).items()}
                if "error" in query:
                    body = f"Keel: the authorization server said {query['error']}. You can close this tab."
                else:
                    body = "Keel: logged in. You can close this tab and return to the terminal."
                status = "200 OK"
                if not self.result.done():
                    self.result.set_result(query)
            data = body.encode()
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "
                         f"{len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def login(registry: Connectors, name: str, *, port: int = 0, timeout: float = 300,
                show_url: Any = print, open_browser: bool = True) -> int:
    """Log connector ``name`` in: register a client if needed, send a person to the authorization
    server (``show_url(url)``, and a browser when ``open_browser``), take the code at the local
    redirect, exchange it (PKCE) and store the tokens sealed. Returns how many tools the server
    lists with them. A login starts afresh: a new registration for this redirect URI, new tokens."""
    import anyio

    c = registry.get(name, secrets=True)
    if c.oauth is None:
        raise ConnectorError(f"connector {name!r} does not use OAuth",
                             hint=f"make it: keel connectors add {name} --server {c.server} --oauth --replace")
    redirect = _Redirect()
    await redirect.start(port)
    storage = SealedTokens(registry, c)
    storage.state = {}  # a fresh registration (the redirect port may differ) and fresh tokens
    storage.deferred = True  # saved once, on success: a failed login keeps the old tokens
    from mcp.shared.auth import AuthorizationCodeResult

    async def send_person(url: str) -> None:
        show_url(url)
        if open_browser:
            import webbrowser

            with contextlib.suppress(Exception):  # no browser here: the printed URL is enough
                webbrowser.open(url)

    async def wait_code() -> AuthorizationCodeResult:
        query = await redirect.result
        if "error" in query:
            raise ConnectorError(f"connector {name!r}: the authorization server refused the login: "
                                 f"{query['error']} {query.get('error_description', '')}".rstrip(),
                                 hint=f"try again: keel connectors login {name}")
        return AuthorizationCodeResult(code=query.get("code", ""), state=query.get("state"), iss=query.get("iss"))

    auth = _provider_class()(c.server, _metadata(c, f"http://127.0.0.1:{redirect.port}{CALLBACK_PATH}"), storage,
                             redirect_handler=send_person, callback_handler=wait_code)
    try:
        with anyio.fail_after(timeout):
            tools = await _list(c, auth)
    except TimeoutError:
        raise ConnectorError(f"connector {name!r}: nobody completed the login within {timeout:g} s",
                             hint=f"open the printed URL in a browser, then: keel connectors login {name}") from None
    except ConnectorError:
        raise
    except Exception as e:
        inner = _first(e, ConnectorError)
        if inner is not None:
            raise inner from None
        from keel.workflows.mcp_tools import _describe

        raise ConnectorError(f"connector {name!r}: the OAuth login failed: {_describe(e)}",
                             hint=f"check the server URL and that it supports the MCP authorization spec, then "
                                  f"keel connectors login {name}") from None
    finally:
        await redirect.close()
    if storage.state.get("tokens"):
        ctx = auth.context
        storage.state["discovered"] = {
            "server": ctx.oauth_metadata.model_dump(mode="json", exclude_none=True) if ctx.oauth_metadata else None,
            "resource": ctx.protected_resource_metadata.model_dump(mode="json", exclude_none=True)
            if ctx.protected_resource_metadata else None, "issuer": ctx.auth_server_url}
        storage.deferred = False
        storage._save()
    if not storage.state.get("tokens"):
        raise ConnectorError(f"connector {name!r}: its server answered without asking for authorization",
                             hint=f"it needs no OAuth: keel connectors add {name} --server {c.server} --replace "
                                  "(without --oauth)")
    return tools


def _first(e: BaseException, kind: type) -> Any:
    if isinstance(e, kind):
        return e
    if isinstance(e, BaseExceptionGroup):
        for x in e.exceptions:
            found = _first(x, kind)
            if found is not None:
                return found
    return None


async def _list(c: Connector, auth: Any) -> int:
    from mcp import Client
    from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(create_mcp_http_client(headers=c.credentials.headers or None,
                                                                      auth=auth))
        client = await stack.enter_async_context(Client(streamable_http_client(c.server, http_client=http),
                                                        cache=None))
        return len((await client.list_tools()).tools)
