"""A real MCP server that wants an API key, for the connector tests.

``python keyed_mcp_server.py SHA256`` speaks MCP on stdin/stdout and exits at start, saying so
on stderr, unless the environment variable ``VAULT_API_KEY`` hashes to SHA256.
``python keyed_mcp_server.py SHA256 PORT`` serves streamable HTTP on 127.0.0.1:PORT/mcp and
answers 401 to any request whose ``X-Api-Key`` header does not hash to SHA256.
Only the hash is on the command line, so the key itself is nowhere but in Keel's registry.
"""

from __future__ import annotations

import hashlib
import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("vault")
WANT = sys.argv[1]


def _ok(key: str | None) -> bool:
    return key is not None and hashlib.sha256(key.encode()).hexdigest() == WANT


@server.tool()
def balance(account: str) -> dict:
    """The balance of an account."""
    return {"account": account, "balance": 1234.5}


@server.tool()
def wipe() -> str:
    """Erase every account (no connector should allow this)."""
    return "wiped"


if __name__ == "__main__":
    if len(sys.argv) > 2:
        import uvicorn
        from starlette.responses import JSONResponse

        app = server.streamable_http_app()

        async def keyed(scope, receive, send):
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                if not _ok(headers.get("x-api-key")):
                    await JSONResponse({"error": "invalid API key"}, status_code=401)(scope, receive, send)
                    return
            await app(scope, receive, send)

        uvicorn.run(keyed, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    else:
        if not _ok(os.environ.get("VAULT_API_KEY")):
            # Echoes the key it got, as careless servers do: Keel must scrub it from what it shows.
            print(f"vault: VAULT_API_KEY is missing or wrong (got {os.environ.get('VAULT_API_KEY')!r})",
                  file=sys.stderr)
            sys.exit(1)
        server.run()
