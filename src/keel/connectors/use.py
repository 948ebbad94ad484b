"""Connectors in workflows: checked when a spec is published, resolved when a node runs.

At publish (:func:`check_spec`) every ``mcp: [{connector: NAME}]`` entry must name a connector
of the registry that lets this workflow use it, may narrow its tool allow-list but not widen
it, and may make a tool's approval stricter but not looser. At run time (:func:`resolve`) each
entry becomes a :class:`ConnectorServer`: the connector's server and decrypted credentials,
its tools and policies. The credentials are registered with :mod:`keel.secrets`, so error
text that echoes them is scrubbed before it is stored or shown.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from keel.connectors.registry import Connector, ConnectorError, Connectors
from keel.workflows.spec import AgentNode, McpNode, McpServer, WorkflowSpec

__all__ = ["ConnectorServer", "check_spec", "resolve", "resolve_node"]


class ConnectorServer(McpServer):
    """An ``mcp:`` entry with its connector filled in (never stored, never printed)."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Headers for an HTTP server (credentials)."""
    auth: Any = Field(default=None, exclude=True)
    """The OAuth ``httpx.Auth`` of an ``--oauth`` connector (:func:`keel.connectors.oauth.provider`)."""
    pooled: tuple[str, str] | None = None
    """``(name, version)``: the session is borrowed from :mod:`keel.connectors.pool`."""


def _entries(spec: WorkflowSpec):
    """``(node index, node, mcp entry index, "http" or None, entry)`` for each use of a connector."""
    for idx, node in enumerate(spec.nodes):
        if isinstance(node, AgentNode):
            for i, entry in enumerate(node.mcp):
                if entry.connector is not None:
                    yield idx, node, i, entry
            if node.http is not None and node.http.connector is not None:
                yield idx, node, "http", node.http
        elif isinstance(node, McpNode) and node.connector is not None:
            yield idx, node, None, node


def problems(spec: WorkflowSpec, connectors: Connectors) -> list[tuple[str, str, str, tuple]]:
    """``(node id, message, hint, path)`` for each connector entry that cannot be used."""
    out: list[tuple[str, str, str, tuple]] = []
    known: dict[str, Connector | None] = {}
    for idx, node, i, entry in _entries(spec):
        name = entry.connector
        assert name is not None
        at = ("nodes", idx) if i is None else ("nodes", idx, "http") if i == "http" else ("nodes", idx, "mcp", i)
        path = (*at, "connector")
        if name not in known:
            known[name] = connectors.find(name)
        c = known[name]
        if c is None:
            names = [x.name for x in connectors.list()]
            out.append((node.id, f"connector {name!r} is not in the registry"
                        + (f" (it has: {', '.join(names)})" if names else " (it is empty)"),
                        f"ask an admin to add it (keel connectors add {name} --server ...), or fix the name",
                        path))
            continue
        if not c.allows(spec.name):
            out.append((node.id, f"connector {name!r} may not be used by workflow {spec.name!r} (it allows: "
                        f"{', '.join(c.workflows) or 'no workflow'})",
                        f"ask an admin to allow it (keel connectors add {name} ... --workflow {spec.name} "
                        "--replace), or use another connector", path))
            continue
        if i == "http":  # the built-in HTTP tool: hosts and methods may narrow the connector's
            out.extend((node.id, msg, hint, (*at, *where)) for msg, hint, where in _http_problems(c, entry))
            continue
        if c.kind != "mcp":
            out.append((node.id, f"connector {name!r} is an HTTP API for the http tool, not an MCP server",
                        f"use it as the node's http tool: http: {{connector: {name}}}", path))
            continue
        if isinstance(entry, McpNode):  # one tool, one policy
            tools = [entry.tool]
            approval = {entry.tool: entry.approval} if "approval" in entry.model_fields_set else {}
        else:
            tools, approval = entry.tools, entry.approval
        if tools is not None and c.tools is not None:
            extra = [t for t in tools if t not in c.tools]
            if extra:
                out.append((node.id, f"tools {', '.join(extra)} are not in the allow-list of connector {name!r}",
                            f"the connector allows: {', '.join(c.tools)}",
                            (*at, "tool" if isinstance(entry, McpNode) else "tools")))
        loosened = [t for t, p in approval.items() if p == "never" and _policy(c, t) == "always"]
        if loosened:
            out.append((node.id, f"approval makes {', '.join(loosened)} `never`, but connector {name!r} "
                        "requires approval for it", "a spec may only make a connector's policy stricter; "
                        "drop the entry, or ask an admin to change the connector's approval", (*at, "approval")))
    return out


def _http_problems(c: Connector, entry: Any) -> list[tuple[str, str, tuple]]:
    if c.kind != "http":
        return [(f"connector {c.name!r} is an MCP server, not an HTTP API for the http tool",
                 f"list it under mcp: [{{connector: {c.name}}}], or name an --http connector", ("connector",))]
    out = []
    wider = [h for h in entry.allow_hosts if h not in c.hosts]
    if wider:
        out.append((f"allow_hosts {', '.join(wider)} are not among the hosts of connector {c.name!r}",
                    f"the connector allows: {', '.join(c.hosts)} (a spec may only narrow them)", ("allow_hosts",)))
    if "methods" in entry.model_fields_set:
        more = [m for m in entry.methods if m not in c.methods]
        if more:
            out.append((f"methods {', '.join(more)} are not allowed by connector {c.name!r}",
                        f"the connector allows: {', '.join(c.methods)}", ("methods",)))
    return out


def resolve_http(store: Any, workflow: str, config: Any, *, key: tuple[str, str] | None = None) -> Any:
    """An Agent node's ``http: {connector: NAME}`` as the tool's config: the connector's hosts
    (or the spec's narrower ones), methods and credential headers. Raises :class:`ConnectorError`
    if the connector went away, is not an ``--http`` one, or does not allow the workflow or key."""
    from keel import secrets

    c = Connectors(store).get(config.connector, secrets=True)
    found = _http_problems(c, config)
    if found:
        raise ConnectorError(found[0][0], hint=found[0][1])
    if not c.allows(workflow):
        raise ConnectorError(f"connector {c.name!r} no longer lets workflow {workflow!r} use it",
                             hint=f"ask an admin: keel connectors add {c.name} ... --workflow {workflow} --replace")
    _check_key(c, key)
    secrets.register(*c.credentials.values())
    methods = config.methods if "methods" in config.model_fields_set else c.methods
    return config.model_copy(update={"allow_hosts": config.allow_hosts or list(c.hosts), "methods": list(methods),
                                     "headers": dict(c.credentials.headers)})


def _policy(c: Connector, tool: str) -> str:
    from keel.workflows.tool_policy import MCP_DEFAULT, decide

    return decide(c.approval, [tool], default=MCP_DEFAULT)[tool].policy


def check_spec(loaded: Any, store: Any) -> None:
    """Raise :class:`~keel.workflows.errors.SpecError` (lines and nodes named) if a connector
    entry of ``loaded`` cannot be used; reads the store only when the spec names a connector."""
    if not any(True for _ in _entries(loaded.spec)):
        return
    from keel.workflows.errors import Problem, SpecError

    found = problems(loaded.spec, Connectors(store))
    if found:
        raise SpecError([
            Problem(msg, hint, file=loaded.where.file, line=loaded.where.line(path), node_id=node_id,
                    path="".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip("."))
            for node_id, msg, hint, path in found])


def run_key(store: Any, run: Any) -> tuple[str, str] | None:
    """``(id, name)`` of the API key that started ``run`` (an engine's active run), or None."""
    if getattr(run, "new", None):  # not in the store yet: its row is (id, ..., key_id, end_user)
        key_id = run.new[0][7]
    else:
        rows = store.query("SELECT key_id FROM workflow_runs WHERE id = ?", (run.id,))
        key_id = rows[0]["key_id"] if rows else None
    if not key_id:
        return None
    names = store.query("SELECT name FROM serve_keys WHERE id = ?", (key_id,))
    return key_id, names[0]["name"] if names else ""


def _check_key(c: Connector, key: tuple[str, str] | None) -> None:
    if not c.allows_key(key):
        assert key is not None
        raise ConnectorError(f"connector {c.name!r} may not be used by runs of API key {key[0]} ({key[1]}): it "
                             f"allows keys {', '.join(c.keys) or 'none'}",
                             hint=f"ask an admin: keel connectors add {c.name} ... --key {key[1] or key[0]} --replace, "
                                  "or start the run with an allowed key")


def resolve(store: Any, workflow: str, servers: list[McpServer], *, key: tuple[str, str] | None = None
            ) -> list[McpServer]:
    """``servers`` with each connector entry filled in from the registry. Raises
    :class:`ConnectorError` if a connector went away, no longer allows ``workflow``, or does not
    allow the API ``key`` (id, name) that started the run."""
    if all(s.connector is None for s in servers):
        return servers
    from keel import secrets

    registry = Connectors(store)
    out: list[McpServer] = []
    for s in servers:
        if s.connector is None:
            out.append(s)
            continue
        c = registry.get(s.connector, secrets=True)
        if not c.allows(workflow):
            raise ConnectorError(f"connector {c.name!r} no longer lets workflow {workflow!r} use it",
                                 hint=f"ask an admin: keel connectors add {c.name} ... --workflow {workflow} --replace")
        _check_key(c, key)
        secrets.register(*c.credentials.values())
        approval = dict(c.approval)
        if s.approval.get("*") == "always":
            approval = dict.fromkeys([*approval, "*"], "always")
        approval.update({t: p for t, p in s.approval.items() if p == "always"})
        auth = None
        if c.oauth is not None:
            from keel.connectors.oauth import provider

            if not c.credentials.oauth.get("tokens"):
                raise ConnectorError(f"connector {c.name!r} uses OAuth and nobody has logged in yet",
                                     hint=f"log in: keel connectors login {c.name}")

            auth = provider(registry, c)
            auth.connector_name = c.name
        out.append(ConnectorServer(server=c.server, auth=auth, pooled=(c.name, repr(c.updated_at)), tools=s.tools if s.tools is not None else c.tools,
                                   approval=approval, approval_timeout=s.approval_timeout,
                                   env=c.credentials.env, timeout=min(s.timeout, c.timeout) if "timeout"
                                   in s.model_fields_set else c.timeout, connector=c.name,
                                   headers=c.credentials.headers))
    return out


def resolve_node(store: Any, workflow: str, node: McpNode, *, key: tuple[str, str] | None = None
                 ) -> tuple[McpNode, ConnectorServer]:
    """An MCP node naming a connector, as the node with the connector's server, credentials,
    timeout and (if the connector requires it for this tool) ``approval: always``; and the
    resolved connector (headers for an HTTP server, OAuth ``auth``, ``pooled`` session key)."""
    [server] = resolve(store, workflow, [McpServer(connector=node.connector, approval_timeout=node.approval_timeout)],
                       key=key)
    assert isinstance(server, ConnectorServer) and server.server is not None
    if server.tools is not None and node.tool not in server.tools:
        raise ConnectorError(f"connector {node.connector!r} does not allow the tool {node.tool!r}",
                             hint=f"it allows: {', '.join(server.tools)}")
    approval = "always" if node.approval == "always" or server.policy(node.tool) == "always" else "never"
    timeout = min(node.timeout, server.timeout) if "timeout" in node.model_fields_set else server.timeout
    return node.model_copy(update={"server": server.server, "env": server.env, "approval": approval,
                                   "timeout": timeout}), server
