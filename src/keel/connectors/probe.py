"""``keel connectors test``: start or reach a connector's server with its credentials and list
its tools, turning each way it can fail into a :class:`ConnectorError` that names the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keel.connectors.registry import Connector, ConnectorError

__all__ = ["ProbedTool", "probe", "probe_http"]


@dataclass(frozen=True)
class ProbedTool:
    name: str
    description: str
    allowed: bool
    """In the connector's allow-list (or it has none)."""
    policy: str
    """``always`` (needs approval) or ``never``."""


async def probe(c: Connector, *, timeout: float = 30, registry: Any = None) -> list[ProbedTool]:
    """The tools ``c`` (with its credentials decrypted) exposes. Raises :class:`ConnectorError`
    when the server will not start, cannot be reached, or refuses the credentials."""
    import anyio

    from keel import secrets
    from keel.workflows.mcp_tools import McpSessions, check_server
    from keel.workflows.nodes import NodeFailure
    from keel.workflows.tool_policy import MCP_DEFAULT, decide

    problem = check_server(c.server)
    if problem:
        raise ConnectorError(f"connector {c.name!r}: {problem}",
                             hint=f"fix its server: keel connectors add {c.name} --server ... --replace")
    secrets.register(*c.credentials.values())
    hint = ("check its credentials (keel connectors add ... --env/--header ... --replace) and that the "
            "server runs by itself")

    auth = None
    if c.oauth is not None:  # tokens from `keel connectors login`, refreshed (and stored) when expired
        from keel.connectors.oauth import provider
        from keel.connectors.registry import Connectors

        if not c.credentials.oauth.get("tokens"):
            raise ConnectorError(f"connector {c.name!r} uses OAuth and nobody has logged in yet",
                                 hint=f"log in: keel connectors login {c.name}")
        auth = provider(registry if registry is not None else Connectors(_store()), c)
        auth.connector_name = c.name

    async def listed():
        sessions = McpSessions()
        try:
            client = await sessions.client(c.server, c.credentials.env, c.credentials.headers, auth)
            return await client.list_tools()
        finally:
            await sessions.aclose()

    try:
        with anyio.fail_after(timeout):
            result = await listed()
    except NodeFailure as e:
        if getattr(auth, "login_failure", None) is not None:
            raise auth.login_failure from None
        refused = None if auth is not None else await _refused(c)
        if refused:
            raise ConnectorError(f"connector {c.name!r}: its server refused the credentials ({refused})",
                                 hint=f"store the right ones: keel connectors add {c.name} --server {c.server} "
                                      "--header NAME=VALUE --replace") from None
        raise ConnectorError(f"connector {c.name!r}: {e.message}", hint=hint) from None
    except TimeoutError:
        raise ConnectorError(f"connector {c.name!r}: its server did not answer within {timeout:g} s",
                             hint=hint) from None
    except Exception as e:  # the server answered the handshake, then refused the call
        raise ConnectorError(f"connector {c.name!r}: cannot list its tools: {type(e).__name__}: {e}",
                             hint=hint) from None
    names = [t.name for t in result.tools]
    missing = [t for t in c.tools or [] if t not in names]
    if missing:
        raise ConnectorError(f"connector {c.name!r} allows tools its server does not have: {', '.join(missing)} "
                             f"(it has: {', '.join(names)})",
                             hint=f"fix the allow-list: keel connectors add {c.name} ... --tool NAME --replace")
    policies = decide(c.approval, names, default=MCP_DEFAULT)
    return [ProbedTool(t.name, t.description or "", c.tools is None or t.name in c.tools, policies[t.name].policy)
            for t in result.tools]


def _store() -> Any:
    from keel.store import open_store

    return open_store()


async def _refused(c: Connector) -> str | None:
    """``HTTP 401 ...`` if an HTTP server answers the connector's headers with 401 or 403 (the MCP
    SDK reports only "an error response"), else None."""
    if not c.server.startswith(("http://", "https://")):
        return None
    import httpx

    try:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(c.server, headers={**c.credentials.headers, "Accept":
                                                     "application/json, text/event-stream"},
                                  json={"jsonrpc": "2.0", "id": 0, "method": "ping"})
    except httpx.HTTPError:
        return None
    if r.status_code in (401, 403):
        return f"HTTP {r.status_code} {r.reason_phrase}: {r.text[:200].strip()}"
    return None


async def probe_http(c: Connector, *, timeout: float = 30) -> int:
    """Send a GET to an ``--http`` connector's base URL with its headers; the status. Raises
    :class:`ConnectorError` when it cannot be reached or answers 401/403 (wrong credentials)."""
    import httpx

    from keel import secrets

    secrets.register(*c.credentials.values())
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            r = await client.get(c.server, headers=c.credentials.headers)
    except httpx.HTTPError as e:
        raise ConnectorError(f"connector {c.name!r}: cannot reach {c.server}: {type(e).__name__}: {e}",
                             hint=f"check the URL: keel connectors add {c.name} --http URL ... --replace") from None
    if r.status_code in (401, 403):
        raise ConnectorError(f"connector {c.name!r}: {c.server} refused the credentials (HTTP {r.status_code} "
                             f"{r.reason_phrase}: {r.text[:200].strip()})",
                             hint=f"store the right ones: keel connectors add {c.name} --http {c.server} "
                                  "--header NAME=VALUE --replace")
    return r.status_code
