"""A real MCP server built with the `mcp` SDK, for the workflow tests.

``python mcp_server.py`` speaks MCP on stdin/stdout; ``python mcp_server.py PORT`` serves
streamable HTTP on 127.0.0.1:PORT/mcp. Every refund is appended to the file named by
``SHOP_LOG``, with the idempotency key Keel sent, so tests can count side effects.
"""

from __future__ import annotations

import json
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("shop")


@server.tool()
def lookup_order(order_id: int) -> dict:
    """Look an order up by id."""
    return {"order_id": order_id, "status": "delivered", "total": 42.5}


@server.tool()
def refund(order_id: int, amount: float, ctx: Context) -> str:
    """Refund part of an order (a side effect: it is logged)."""
    meta = ctx.request_context.meta or {}
    meta = meta if isinstance(meta, dict) else meta.model_dump()
    with open(os.environ["SHOP_LOG"], "a") as f:
        f.write(json.dumps({"order_id": order_id, "amount": amount,
                            "key": meta.get("dev.keel/idempotency-key")}) + "\n")
    return f"refunded {amount} on order {order_id}"


def _log_effect(entry: dict, ctx: Context) -> None:
    meta = ctx.request_context.meta or {}
    meta = meta if isinstance(meta, dict) else meta.model_dump()
    with open(os.environ["SHOP_LOG"], "a") as f:
        f.write(json.dumps({**entry, "key": meta.get("dev.keel/idempotency-key")}) + "\n")


# Look-alike names: a policy written for `delete_all` must hold for `Delete_All` too.
@server.tool(name="Delete_All")
def delete_all_capitalised(ctx: Context) -> str:
    """Delete every order (a side effect: it is logged)."""
    _log_effect({"tool": "Delete_All"}, ctx)
    return "deleted every order"


@server.tool(name="delete_all")
def delete_all_lower(ctx: Context) -> str:
    """Delete every order, too (a side effect: it is logged)."""
    _log_effect({"tool": "delete_all"}, ctx)
    return "deleted every order"


@server.tool()
def fail(reason: str) -> str:
    """Always fails, saying why (a ToolError's text reaches the client; a crash's does not)."""
    raise ToolError(f"cannot: {reason}")


@server.tool()
def crash() -> str:
    """Crashes (the client sees only that the tool failed)."""
    raise RuntimeError("secret internals")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
