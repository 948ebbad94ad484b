"""A real streamable-HTTP MCP server protected by OAuth, for the connector tests.

``python oauth_mcp_server.py AS_URL PORT RS_SECRET`` serves MCP on 127.0.0.1:PORT/mcp. Every
request needs a bearer token that the authorization server at AS_URL says is active (RFC 7662
introspection, as client ``resource-server``) and carries the scope ``vault``; otherwise it
answers 401 with the RFC 9728 ``resource_metadata`` pointer the MCP SDK serves, from which a
client discovers the authorization server.
"""

from __future__ import annotations

import sys

import httpx
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

AS_URL, PORT, RS_SECRET = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Introspect:
    async def verify_token(self, token: str) -> AccessToken | None:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(f"{AS_URL}/introspect", data={"token": token},
                                  auth=("resource-server", RS_SECRET))
        doc = r.json() if r.status_code == 200 else {}
        if not doc.get("active"):
            return None
        return AccessToken(token=token, client_id=doc["client_id"], scopes=(doc.get("scope") or "").split(),
                           expires_at=doc.get("exp"))


server = MCPServer("vault", token_verifier=Introspect(),
                   auth=AuthSettings(issuer_url=AS_URL, resource_server_url=f"http://127.0.0.1:{PORT}/mcp",
                                     required_scopes=["vault"]))


@server.tool()
def balance(account: str) -> dict:
    """The balance of an account."""
    return {"account": account, "balance": 1234.5}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=PORT, log_level="warning")
