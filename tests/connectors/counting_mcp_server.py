"""A stdio MCP server that notes each start, for the connector pooling tests.

``python counting_mcp_server.py FILE`` appends its pid to FILE when it starts; its tool ``whoami``
answers ``{"pid": PID, "calls": N}`` (calls made to this process so far)."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("counter")
calls = 0


@server.tool()
def whoami(note: str = "") -> dict:
    """This server process's pid and how many calls it has answered."""
    global calls
    calls += 1
    return {"pid": os.getpid(), "calls": calls}


if __name__ == "__main__":
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()}\n")
    server.run()
