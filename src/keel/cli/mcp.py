"""``keel mcp``: serve the published workflows as MCP tools over stdin/stdout."""

from __future__ import annotations

import sys

import typer

EPILOG = """Examples:

  keel mcp              # what an MCP host runs: MCP on stdin/stdout

  keel mcp --list       # the tools it offers, then exit

Each published workflow (latest version) is one tool; its Start node's input_schema is
the tool's input schema. In Claude Desktop's claude_desktop_config.json:

\b
  {"mcpServers": {"keel": {"command": "keel", "args": ["mcp"],
                           "env": {"KEEL_HOME": "/path/to/keel-home"}}}}

Runs use the store under KEEL_HOME and the keel.toml of the folder the host starts
keel in (set "cwd" when your workflows use model aliases). Over HTTP, keel serve
offers the same tools at http://127.0.0.1:8000/mcp/ (docs/mcp.md).
"""


def mcp(
    list_tools: bool = typer.Option(False, "--list", help="Print the tools and exit."),
) -> None:
    """Serve published workflows as MCP tools over stdio (for Claude Desktop and other MCP hosts)."""
    import asyncio
    import logging

    # stdout carries the protocol: anything else Keel or a library logs goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if list_tools:
        _print_tools()
        return
    if sys.stdin.isatty():
        print("keel mcp speaks MCP on stdin/stdout: start it from an MCP host (see `keel mcp --help`); "
              "Ctrl-D to quit", file=sys.stderr)
    from keel.operate.server.mcp_server import serve_stdio

    asyncio.run(serve_stdio())


def _print_tools() -> None:
    import json

    from keel.operate.server.mcp_server import tool_input_schema
    from keel.store import open_store
    from keel.workflows import Versions

    versions = Versions(open_store())
    rows = versions.list()
    if not rows:
        print("no published workflows: publish one with `keel workflows publish workflow.yaml`")
        return
    for row in rows:
        start = next(n for n in versions.get(row["name"]).spec.nodes if n.type == "start")
        schema, _ = tool_input_schema(start)
        print(f"{row['name']}  (v{row['latest']})  {row['description'] or ''}".rstrip())
        print(f"  input: {json.dumps(schema, ensure_ascii=False)}")
