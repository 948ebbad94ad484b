"""Published workflows as MCP tools, with the official ``mcp`` SDK.

Each published workflow (its latest version) is one tool named after it:

- **input schema**: the Start node's ``input_schema`` when it is an object schema (the
  arguments are the run's input); another schema is wrapped as ``{"input": <schema>}``;
  a workflow without one takes ``{"input": string}`` (its ``input_as_text``);
- **result**: the run's output as text (JSON text for structured outputs) and as
  ``structuredContent`` (the output object, or ``{"output": value}`` for other values);
  ``_meta["keel/run_id"]`` names the run, so its trace is one ``keel runs show`` away;
- a run that waits for a Human approval answers with the approval's id and how to answer
  it; a failed run or a refused input is a tool error (``isError``) the model can read;
- a tool name that is no published workflow is a protocol error (JSON-RPC ``-32602``).

Two transports share :func:`build_mcp_server`:

- streamable HTTP, mounted at ``/mcp`` by ``keel serve`` (:func:`http_app`): stateless, so
  any worker answers any request; each request is authenticated by the server's guard,
  and the caller's key scopes the tools it sees and calls and is charged for the runs;
- stdio, ``keel mcp`` (:func:`serve_stdio`), for hosts that start a subprocess: the local
  user's own store and settings, no keys.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from keel.errors import KeelError

if TYPE_CHECKING:  # the mcp SDK and FastAPI load when a server is built, not for `keel mcp --list`
    import mcp_types as types
    from mcp.server.lowlevel import Server

__all__ = ["browser_page", "build_mcp_server", "http_app", "serve_stdio", "tool_input_schema"]

_TEXT_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The question or text the workflow works on"}},
    "required": ["input"],
}


def tool_input_schema(start: Any) -> tuple[dict[str, Any], bool]:
    """The MCP input schema for a workflow whose Start node is ``start``, and whether the
    arguments are the input as they are (else the input is ``arguments["input"]``)."""
    schema = getattr(start, "input_schema", None)
    if not schema:
        return _TEXT_INPUT, False
    if schema.get("type") == "object":
        return schema, True
    return {"type": "object", "properties": {"input": schema}, "required": ["input"]}, False


def _start_node(version: Any) -> Any:
    return next(n for n in version.spec.nodes if n.type == "start")


def _error(text: str) -> types.CallToolResult:
    import mcp_types as types

    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _explain(e: Any) -> str:
    return f"{e.message} (fix: {e.hint})" if e.hint else e.message


def _caller(ctx: Any, *, http: bool) -> Any:
    """The authenticated caller of an HTTP request (set by the server's guard); None on stdio."""
    if not http:
        return None
    scope = getattr(ctx.request, "scope", None) or {}
    caller = scope.get("state", {}).get("keel_caller")
    if caller is None:
        import mcp_types as types
        from mcp.shared.exceptions import MCPError

        raise MCPError(types.INVALID_REQUEST, "this MCP request was not authenticated by keel serve")
    return caller


def _note(ctx: Any, **values: Any) -> None:
    """Record ``values`` for the server's access log (workflow, run_id, ...), on HTTP."""
    scope = getattr(getattr(ctx, "request", None), "scope", None)
    if isinstance(scope, dict):
        scope.setdefault("state", {}).update(values)


def build_mcp_server(runner: Any, budgets: Any, *, http: bool, caller_system_messages: str = "accept") -> Server:
    """An MCP server whose tools are the published workflows ``runner`` knows.

    ``runner`` is a :class:`~keel.operate.server.runner.Runner` and ``budgets`` its
    :class:`~keel.operate.server.budgets.Budgets`. With ``http=True`` each request must carry
    the caller the server's guard authenticated (``scope["state"]["keel_caller"]``).
    ``caller_system_messages``: what a conversation's system/developer messages in the
    arguments become (``[serve] caller_system_messages``, :mod:`.caller_roles`; ``keel mcp``
    on stdio is the local user's, like the CLI: ``accept``).
    """
    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    from keel import __version__
    from keel.operate.server.caller_roles import run_input_with_caller_roles
    from keel.operate.server.errors import ApiError
    from keel.workflows import WorkflowNotFoundError

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        caller = _caller(ctx, http=http)
        tools = []
        for row in runner.versions.list():
            if caller is not None and not caller.may_see(row["name"]):
                continue
            schema, _ = tool_input_schema(_start_node(runner.version(row["name"], None)))
            description = row["description"] or f"Run the Keel workflow {row['name']}"
            tools.append(types.Tool(name=row["name"], description=description, input_schema=schema))
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        caller = _caller(ctx, http=http)
        try:
            if caller is not None and not caller.may_see(params.name):
                raise WorkflowNotFoundError(params.name)  # a tool this key cannot see does not exist for it
            version = runner.version(params.name, None)
        except WorkflowNotFoundError:
            known = [r["name"] for r in runner.versions.list() if caller is None or caller.may_see(r["name"])]
            raise MCPError(types.INVALID_PARAMS,
                           f"unknown tool {params.name!r}: no published workflow has that name "
                           f"(tools: {', '.join(known) or 'none; publish one with keel workflows publish FILE'})",
                           data={"tool": params.name, "tools": known}) from None
        _note(ctx, workflow=version.name, version=version.version)
        _, as_is = tool_input_schema(_start_node(version))
        args = params.arguments or {}
        if not as_is and "input" not in args:
            return _error(f"missing argument 'input' for tool {params.name!r} (fix: call it with {{\"input\": ...}})")
        value: Any = args if as_is else args["input"]
        try:
            if caller is not None:
                caller.allow(version.name)
                budgets.check(caller.key, caller.end_user)
            value = run_input_with_caller_roles(value, caller_system_messages,
                                                field="arguments" if as_is else "arguments.input")
            started = await runner.start(version, value, key=caller.key if caller else None,
                                         end_user=caller.end_user if caller else None,
                                         provider_key=caller.provider_key if caller else None)
            _note(ctx, run_id=started.run_id)
            result = await started.task
        except (ApiError, KeelError) as e:
            return _error(_explain(e))
        meta = {"keel/run_id": result.run_id}
        if result.status == "waiting" and result.approval is not None:
            a = result.approval
            text = (f"run {result.run_id} is waiting for approval {a.id}: {a.message} "
                    f"(an approver answers it: `keel approvals approve {a.id}`, or POST /v1/approvals/{a.id}/approve "
                    "with a key that has the approver role)")
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=text)], _meta=meta,
                structured_content={"status": "waiting", "run_id": result.run_id, "approval_id": a.id,
                                    "message": a.message})
        if result.status != "succeeded":
            return _error(f"workflow {version.name} run {result.run_id} {result.status}: {result.error}")
        out = result.output
        text = out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)
        structured = out if isinstance(out, dict) else {"output": out}
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    structured_content=structured, _meta=meta)

    return Server("keel", version=__version__,
                  instructions="Keel workflows: each tool runs one published workflow and returns its output.",
                  on_list_tools=list_tools, on_call_tool=call_tool)


_BROWSER_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Keel MCP endpoint</title><style>body{{font:15px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;
padding:0 1rem;color:#111827}}code,pre{{background:#f1f5f9;border-radius:6px;padding:.1rem .3rem}}
pre{{padding:.6rem .8rem;overflow:auto}}</style></head><body>
<h1>This is Keel's MCP endpoint</h1>
<p>It speaks the Model Context Protocol (streamable HTTP) to MCP clients, not to browsers:
each published workflow is one tool. Point an MCP client at this address:</p>
<pre>{url}</pre>
<p>For example, MCP Inspector: <code>npx @modelcontextprotocol/inspector</code>, transport
"Streamable HTTP", URL above{key_note}. A host that starts a subprocess instead can run
<code>keel mcp</code> (stdio).</p>
<p>To chat with the workflows in a browser, open <a href="/ui">the Keel UI</a>.</p>
</body></html>
"""


def browser_page(scope: dict[str, Any], *, keys_required: bool) -> bytes | None:
    """The short HTML page that explains this endpoint, when ``scope`` is a browser opening it
    (``GET`` that accepts ``text/html`` and carries no MCP header); else None, and the request
    goes on to the MCP transport (whose ``GET`` is a stream that stays open: a browser would
    wait on it forever)."""
    if scope.get("type") != "http" or scope.get("method") not in ("GET", "HEAD"):
        return None
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    accept = headers.get("accept", "")
    if "text/html" not in accept or "text/event-stream" in accept:
        return None
    if "mcp-session-id" in headers or "mcp-protocol-version" in headers:
        return None
    host = headers.get("host", "127.0.0.1")
    url = f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}/"
    key_note = (", with the header <code>Authorization: Bearer keel_sk_...</code> (create a key with "
                "<code>keel keys create NAME --workflow '*'</code>)") if keys_required else ""
    import html

    return _BROWSER_PAGE.format(url=html.escape(url), key_note=key_note).encode()


def http_app(services: Any) -> tuple[Any, contextlib.AbstractAsyncContextManager[None]]:
    """The streamable-HTTP ASGI app for ``keel serve`` and the lifespan to enter around it.

    Stateless (no MCP session survives a request), so requests may land on any worker; JSON
    responses. When the server listens on loopback, Host and Origin headers are checked
    against loopback and the configured CORS origins (DNS-rebinding protection).
    """
    from mcp.server.streamable_http_manager import (
        StreamableHTTPASGIApp,
        StreamableHTTPSessionManager,
    )
    from mcp.server.transport_security import TransportSecuritySettings

    from keel.operate.server.settings import is_loopback

    settings = services.settings
    security = None
    if is_loopback(settings.host):
        security = TransportSecuritySettings(
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*",
                             *settings.cors_origins])
    server = build_mcp_server(services.runner, services.budgets, http=True,
                              caller_system_messages=settings.caller_system_messages)
    manager = StreamableHTTPSessionManager(app=server, stateless=True, json_response=True,
                                           security_settings=security,
                                           max_request_body_size=settings.max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with manager.run():
            yield

    return StreamableHTTPASGIApp(manager), lifespan()


async def serve_stdio() -> None:
    """``keel mcp``: the tools over stdin/stdout until the host closes them."""
    from mcp.server.stdio import stdio_server

    from keel.operate.server.budgets import Budgets
    from keel.operate.server.runner import Runner
    from keel.store import open_store

    store = open_store()
    budgets = Budgets(store)
    runner = Runner(store, budgets, provider_key_providers=[])
    server = build_mcp_server(runner, budgets, http=False)
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await runner.aclose()
        store.close()
