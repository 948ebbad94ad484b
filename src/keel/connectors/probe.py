"""``keel connectors test``: start or reach a connector's server with its credentials and list
its tools, turning each way it can fail into a :class:`ConnectorError` that names the fix."""

from __future__ import annotations

from dataclasses import dataclass

from keel.connectors.registry import Connector, ConnectorError

__all__ = ["ProbedTool", "probe"]


@dataclass(frozen=True)
class ProbedTool:
    name: str
    description: str
    allowed: bool
    """In the connector's allow-list (or it has none)."""
    policy: str
    """``always`` (needs approval) or ``never``."""


async def probe(c: Connector, *, timeout: float = 30) -> list[ProbedTool]:
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
    sessions = McpSessions()
    hint = ("check its credentials (keel connectors add ... --env/--header ... --replace) and that the "
            "server runs by itself")
    try:
        with anyio.fail_after(timeout):
            client = await sessions.client(c.server, c.credentials.env, c.credentials.headers)
            result = await client.list_tools()
    except NodeFailure as e:
        raise ConnectorError(f"connector {c.name!r}: {e.message}", hint=hint) from None
    except TimeoutError:
        raise ConnectorError(f"connector {c.name!r}: its server did not answer within {timeout:g} s",
                             hint=hint) from None
    except Exception as e:  # the server answered the handshake, then refused the call
        raise ConnectorError(f"connector {c.name!r}: cannot list its tools: {type(e).__name__}: {e}",
                             hint=hint) from None
    finally:
        await sessions.aclose()
    names = [t.name for t in result.tools]
    missing = [t for t in c.tools or [] if t not in names]
    if missing:
        raise ConnectorError(f"connector {c.name!r} allows tools its server does not have: {', '.join(missing)} "
                             f"(it has: {', '.join(names)})",
                             hint=f"fix the allow-list: keel connectors add {c.name} ... --tool NAME --replace")
    policies = decide(c.approval, names, default=MCP_DEFAULT)
    return [ProbedTool(t.name, t.description or "", c.tools is None or t.name in c.tools, policies[t.name].policy)
            for t in result.tools]
