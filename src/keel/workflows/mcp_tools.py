"""MCP: the MCP node, and MCP servers' tools inside Agent nodes, through the official ``mcp`` SDK.

A server is named by a string: ``stdio:COMMAND ARGS`` starts a subprocess that speaks MCP on
its stdin/stdout (it gets a minimal environment plus the spec's ``env``, never Keel's secrets);
an ``http://`` or ``https://`` URL is a streamable-HTTP server. Connections live for one node
step and are opened only when needed: a re-executed step replays memoized results and tool
lists without connecting.

Exactly once: each call's result is memoized as soon as it arrives, and the call carries the
step's idempotency key in its request ``_meta`` (``dev.keel/idempotency-key``), so a server
with side effects can make its effect once even if a call in flight at a crash is repeated.

Approval: a tool whose policy is ``always`` waits for a person through the same durable
approvals as a Human approval node (``keel approvals approve``); the run holds nothing in
memory meanwhile, and continues from the memoized turns when the call is answered. Policies
match tool names normalised, and a tool no policy names needs approval
(:mod:`keel.workflows.tool_policy`); when the tool list is fetched, the tools no policy names
are reported (a ``warning`` run event, the server log, and ``keel.mcp.unnamed_tools`` on the
node's span).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.models import Tool
from keel.workflows.nodes import NodeFailure, StepOutcome
from keel.workflows.spec import McpNode, McpServer
from keel.workflows.tool_policy import MCP_DEFAULT, Decision, decide
from keel.workflows.tracing import Span

if TYPE_CHECKING:
    from keel.workflows.engine import Engine, _ActiveRun

__all__ = ["IDEMPOTENCY_META_KEY", "McpSessions", "McpTool", "WaitForApproval", "check_server",
           "resolve_servers", "run_mcp_node"]

IDEMPOTENCY_META_KEY = "dev.keel/idempotency-key"
"""Key of the idempotency key in a tool call's ``_meta``."""

log = logging.getLogger("keel.workflows.mcp")


class WaitForApproval(Exception):
    """A tool call needs a person's approval first; the run is parked."""

    def __init__(self, approval: Any) -> None:
        super().__init__(approval.id)
        self.approval = approval


def check_server(server: str) -> str | None:
    """What is wrong with a server string, or None: its form, and for ``stdio:`` whether the
    command can be started here (found on PATH, or an executable file)."""
    if server.startswith("stdio:"):
        try:
            argv = shlex.split(server[len("stdio:"):])
        except ValueError as e:
            return f"cannot split the stdio command: {e}"
        if not argv:
            return "the stdio: server names no command"
        command = argv[0]
        if os.sep in command or (os.altsep and os.altsep in command):
            if not os.path.isfile(command) or not os.access(command, os.X_OK):
                return f"the MCP server command {command!r} is not an executable file"
        elif shutil.which(command) is None:
            return f"the MCP server command {command!r} is not found on PATH"
        return None
    if server.startswith(("http://", "https://")):
        return None
    return f"MCP server {server!r} is neither `stdio:COMMAND ARGS` nor an http(s):// URL"


def resolve_servers(store: Any, workflow: str, servers: list[McpServer], run: Any = None) -> list[McpServer]:
    """``servers`` with ``connector:`` entries filled in from the registry (docs/connectors.md);
    a connector that went away, no longer allows ``workflow`` or does not allow the API key that
    started ``run`` fails the node."""
    from keel.connectors.use import resolve, run_key
    from keel.errors import KeelError

    try:
        key = run_key(store, run) if run is not None and any(s.connector for s in servers) else None
        return resolve(store, workflow, servers, key=key)
    except KeelError as e:
        raise NodeFailure(f"{e.message} -- {e.hint}" if e.hint else e.message, kind="mcp") from None


def _target(server: str, env: dict[str, str]) -> Any:
    from mcp import StdioServerParameters

    if server.startswith("stdio:"):
        argv = shlex.split(server[len("stdio:"):])
        return StdioServerParameters(command=argv[0], args=argv[1:], env=env or None)
    return server


class McpSessions:
    """MCP clients opened lazily during one node step; :meth:`aclose` closes them all.

    Open and close in the same task (the SDK's transports are anyio task groups).
    """

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, Any] = {}
        self._errlog: Any = None

    async def client(self, server: str, env: dict[str, str], headers: dict[str, str] | None = None,
                     auth: Any = None, pooled: tuple[str, str] | None = None) -> Any:
        """The client of ``server``. ``pooled`` (a connector's name and version) borrows the
        session the connector pool keeps open across steps and runs (keel.connectors.pool)."""
        key = json.dumps([server, sorted(env.items()), sorted((headers or {}).items()), id(auth)])
        if pooled is not None:
            from keel.connectors.pool import pool

            said: list[str] = []

            async def open_(stack: contextlib.AsyncExitStack) -> Any:
                # The pooled session outlives this step: its stderr file belongs to the session.
                errlog = stack.enter_context(tempfile.TemporaryFile("w+"))  # noqa: SIM115
                try:
                    return await self._open(stack, server, env, headers, auth, errlog)
                except Exception:
                    errlog.seek(0)
                    said.append(errlog.read()[-500:].strip())
                    raise

            try:
                return await pool().client(pooled[0], pooled[1], open_)
            except Exception as e:
                raise self._failure(server, auth, e, f" (server stderr: {said[0]})" if said and said[0] else ""
                                    ) from None
        if key not in self._clients:
            try:
                self._clients[key] = await self._open(self._stack, server, env, headers, auth)
            except Exception as e:
                raise self._failure(server, auth, e) from None
        return self._clients[key]

    async def _open(self, stack: contextlib.AsyncExitStack, server: str, env: dict[str, str],
                    headers: dict[str, str] | None, auth: Any, errlog: Any = None) -> Any:
        from mcp import Client
        from mcp.client.stdio import stdio_client

        target = _target(server, env)
        if isinstance(target, str) and (headers or auth is not None):  # a connector's credentials
            from mcp.client.streamable_http import (
                create_mcp_http_client,
                streamable_http_client,
            )

            http = await stack.enter_async_context(create_mcp_http_client(headers=headers or None, auth=auth))
            client = Client(streamable_http_client(target, http_client=http), cache=None)
        elif isinstance(target, str):
            client = Client(target, cache=None)
        else:
            # The server's stderr goes to a file (shown when it fails), not over our output.
            if errlog is None and self._errlog is None:
                self._errlog = self._stack.enter_context(tempfile.TemporaryFile("w+"))  # noqa: SIM115
            client = Client(stdio_client(target, errlog=errlog if errlog is not None else self._errlog), cache=None)
        return await stack.enter_async_context(client)

    def _failure(self, server: str, auth: Any, e: BaseException, stderr: str | None = None) -> NodeFailure:
        from keel.connectors.oauth import login_needed

        refused = login_needed(auth, getattr(auth, "connector_name", server), e)
        if refused is not None:  # nobody to log in here: say who must, and how
            return NodeFailure(f"{refused.message} -- {refused.hint}", kind="mcp")
        stderr = self._stderr() if stderr is None else stderr
        return NodeFailure(f"cannot connect to MCP server {server!r}: {_describe(e)}{stderr}", kind="mcp")

    def _stderr(self) -> str:
        if self._errlog is None:
            return ""
        self._errlog.seek(0)
        tail = self._errlog.read()[-500:].strip()
        return f" (server stderr: {tail})" if tail else ""

    async def aclose(self) -> None:
        # A server that already went away must not turn a finished step into a failure.
        with contextlib.suppress(Exception):
            await self._stack.aclose()


def down(connector: str, e: NodeFailure) -> NodeFailure:
    """``e`` (a connector's session could not be opened) as its node's failure, naming it."""
    if e.message.startswith("connector "):  # says which already (a login it needs)
        return e
    return NodeFailure(f"connector {connector!r} is down: {e.message} -- check it: keel connectors test {connector}",
                       kind="mcp")


def _timed_out(e: BaseException) -> bool:
    """A call that took too long (not a dead session: calling again would only wait again)."""
    return isinstance(e, TimeoutError) or "timed out" in str(e).lower() or "timeout" in type(e).__name__.lower()


def _describe(e: BaseException) -> str:
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(_describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


async def call(sessions: McpSessions, server: str, env: dict[str, str], tool: str, arguments: dict[str, Any],
               *, idempotency_key: str, timeout: float, headers: dict[str, str] | None = None,
               auth: Any = None, pooled: tuple[str, str] | None = None) -> dict[str, Any]:
    """Call ``tool``; ``{"text": ..., "structured": ..., "is_error": bool}``. Transport errors raise
    :class:`NodeFailure`; a tool that reports an error returns ``is_error`` (it is data for the model).
    On a pooled connector session that fails, the session is reopened and the call made once more
    (with the same idempotency key); if the connector cannot be reached, its node fails naming it."""
    for attempt in (1, 2):
        try:
            client = await sessions.client(server, env, headers, auth, pooled)
        except NodeFailure as e:
            raise down(pooled[0], e) if pooled is not None else e from None
        try:
            result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout,
                                            meta={IDEMPOTENCY_META_KEY: idempotency_key})
            break
        except Exception as e:
            if pooled is not None and attempt == 1 and not _timed_out(e):
                from keel.connectors.pool import pool

                log.info("connector %s: its pooled session failed (%s); reconnecting", pooled[0], _describe(e))
                await pool().drop(pooled[0], only_if=client)
                continue
            raise NodeFailure(f"MCP tool {tool} on {server!r} failed: {_describe(e)}{sessions._stderr()}",
                              kind="tool") from None
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    return {"text": "\n".join(texts), "structured": result.structured_content, "is_error": bool(result.is_error)}


@dataclass
class McpTool:
    """One MCP server tool offered to an Agent node's model (same interface as a function tool)."""

    name: str
    tool: Tool
    server: McpServer
    sessions: McpSessions
    decision: Decision
    """The approval policy this tool follows, and why."""

    @property
    def needs_approval(self) -> bool:
        return self.decision.policy == "always"

    async def call(self, arguments: dict[str, Any], ctx: Any) -> str:
        out = await call(self.sessions, self.server.server, self.server.env, self.name, arguments,
                         idempotency_key=ctx.idempotency_key, timeout=self.server.timeout,
                         headers=getattr(self.server, "headers", None), auth=getattr(self.server, "auth", None),
                         pooled=getattr(self.server, "pooled", None))
        text = out["text"] or json.dumps(out["structured"], ensure_ascii=False)
        return f"error: {text}" if out["is_error"] else text


async def list_tools(engine: Engine, run: _ActiveRun, servers: list[McpServer], sessions: McpSessions,
                     memo_key: str, *, node_id: str, node_span: Span) -> list[McpTool]:
    """The tools of ``servers`` an Agent node offers, memoized for the step (a re-executed step
    offers the same tools without connecting), each with its approval :class:`Decision`.

    Tools no policy names are put on ``node_span`` (``keel.mcp.unnamed_tools``) and, when the list
    is fetched from the servers, reported as a ``warning`` run event and in the log."""
    memo = engine.memo_get(run.id, memo_key)
    fetched = memo is None
    if memo is not None:
        listed = json.loads(memo)
    else:
        listed = []
        for i, s in enumerate(servers):
            pooled = getattr(s, "pooled", None)
            for attempt in (1, 2):
                try:
                    client = await sessions.client(s.server, s.env, getattr(s, "headers", None),
                                                   getattr(s, "auth", None), pooled)
                except NodeFailure as e:
                    if s.connector is None:
                        raise
                    raise down(s.connector, e) from None
                try:
                    result = await client.list_tools()
                    break
                except Exception as e:
                    if pooled is not None and attempt == 1:  # a pooled session that went down: reopen it
                        from keel.connectors.pool import pool

                        await pool().drop(pooled[0], only_if=client)
                        continue
                    raise NodeFailure(f"cannot list the tools of MCP server {s.server!r}: {_describe(e)}",
                                      kind="mcp") from None
            names = {t.name for t in result.tools}
            for wanted in s.tools or []:
                if wanted not in names:
                    raise NodeFailure(f"MCP server {s.server!r} has no tool {wanted!r} (it has: "
                                      f"{', '.join(sorted(names))})", kind="mcp")
            for t in result.tools:
                if s.tools is None or t.name in s.tools:
                    schema = {k: v for k, v in (t.input_schema or {}).items() if k != "title"}
                    listed.append({"server": i, "name": t.name, "description": t.description or "",
                                   "parameters": schema or {"type": "object", "properties": {}}})
        engine.memo_put(run.id, memo_key, json.dumps(listed))
    decisions = [decide(s.approval, [t["name"] for t in listed if t["server"] == i], default=MCP_DEFAULT)
                 for i, s in enumerate(servers)]
    tools: list[McpTool] = []
    for t in listed:
        tools.append(McpTool(t["name"], Tool(name=t["name"], description=t["description"],
                                             parameters=t["parameters"]), servers[t["server"]], sessions,
                             decisions[t["server"]][t["name"]]))
    unnamed = [t for t in tools if not t.decision.named]
    if unnamed:
        node_span.attributes["keel.mcp.unnamed_tools"] = [f"{t.server.server} {t.name}" for t in unnamed]
        if fetched:
            from keel.workflows.engine import NodeEvent

            text = unnamed_warning(unnamed)
            log.warning("run %s, node %s: %s", run.id, node_id, text)
            engine._emit(NodeEvent("warning", run.id, node_id, "agent", text=text))
    return tools


def unnamed_warning(tools: list[McpTool]) -> str:
    """One line naming the MCP tools no approval policy names, and what they get instead."""
    by_server: dict[str, list[McpTool]] = {}
    for t in tools:
        by_server.setdefault(t.server.server, []).append(t)
    parts = []
    for server, ts in by_server.items():
        ask = [t.name for t in ts if t.needs_approval]
        free = [t.name for t in ts if not t.needs_approval]
        said = []
        if ask:
            said.append(f"{', '.join(ask)} (need approval)")
        if free:
            said.append(f"{', '.join(free)} (run without approval: `*: never`)")
        parts.append(f"MCP server {server!r} exposes tools no approval policy names: {'; '.join(said)}")
    return "; ".join(parts) + " -- name them under `approval:` (or limit `tools:`) to decide"


def approval_message(tool: str, server: str, arguments: dict[str, Any], reason: str = "") -> str:
    why = f" ({reason})" if reason else ""
    return f"Allow the tool call {tool}({json.dumps(arguments, ensure_ascii=False)}) on {server}?{why}"


async def run_mcp_node(engine: Engine, run: _ActiveRun, node: McpNode, env: dict[str, Any],
                       node_span: Span) -> StepOutcome:
    key = f"{run.seq}:mcp"
    headers: dict[str, str] | None = None
    auth: Any = None
    pooled: tuple[str, str] | None = None
    if node.connector is not None:  # its server, credentials and policy (docs/connectors.md)
        from keel.connectors.use import resolve_node, run_key
        from keel.errors import KeelError

        try:
            node, connector = resolve_node(engine.store, run.wf.spec.name, node, key=run_key(engine.store, run))
            headers, auth, pooled = connector.headers, connector.auth, connector.pooled
        except KeelError as e:
            raise NodeFailure(f"{e.message} -- {e.hint}" if e.hint else e.message, kind="mcp") from None
    node_span.attributes.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": node.tool,
                                 "keel.mcp.server": node.server})
    memo = engine.memo_get(run.id, key)
    if memo is not None:
        out = json.loads(memo)
    else:
        try:
            arguments = {k: run.wf.expressions[(node.id, f"arguments.{k}")].evaluate(env) for k in node.arguments}
        except Exception as e:  # CelError: a variable missing at run time
            raise NodeFailure(f"cannot build the arguments: {e}", kind="cel") from None
        if node.approval == "always":
            a = engine.gate(run, node.id, "mcp",
                            lambda: approval_message(node.tool, f"MCP server {node.server}", arguments),
                            node.approval_timeout)
            if a.status == "pending":
                return StepOutcome(None, run.ctx["last"], wait=a)
            if a.status != "approved":
                raise NodeFailure(f"the call of {node.tool} was not approved ({a.status})", kind="rejected")
        idempotency_key = f"{run.id}:{key}"
        span = Span(run.trace_id, f"execute_tool {node.tool}", "tool", parent_id=node_span.span_id, run_id=run.id,
                    attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": node.tool,
                                "keel.tool.idempotency_key": idempotency_key, "keel.mcp.server": node.server,
                                "keel.tool.arguments": json.dumps(arguments, ensure_ascii=False, default=str)})
        sessions = McpSessions()
        try:
            out = await call(sessions, node.server, node.env, node.tool, arguments,
                             idempotency_key=idempotency_key, timeout=node.timeout, headers=headers, auth=auth,
                             pooled=pooled)
        except NodeFailure as e:
            engine.spans.write(span.end(error=e.message))
            raise
        finally:
            await sessions.aclose()
        span.attributes["keel.tool.result"] = out["text"][:2000]
        engine.spans.write(span.end(error=out["text"][:2000] if out["is_error"] else None))
        engine.memo_put(run.id, key, json.dumps(out))
    if out["is_error"]:
        raise NodeFailure(f"MCP tool {node.tool} reported an error: {out['text']}", kind="tool")
    parsed = out["structured"]
    if parsed is None:
        try:
            parsed = json.loads(out["text"])
        except ValueError:
            parsed = None
    return StepOutcome("next", {"output_text": out["text"], "output_parsed": parsed})
