"""``/v1/connectors``: read the connector registry (docs/connectors.md), never its secrets.

Connectors are shared by every workflow, so only a caller that administers every workflow
reads them: an ``admin`` key scoped to ``*`` (or anyone in open mode, loopback only).
Credentials appear by name only (``env`` / ``headers`` list the variable and header names).
The same keys add (``POST``), remove (``DELETE``) and test (``POST .../test``) HTTP connectors;
``stdio:`` connectors are added on the command line only (their command runs on this host).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from keel.connectors.registry import NAME_PATTERN
from keel.operate.server.auth import Caller
from keel.operate.server.auth import caller as caller_dependency
from keel.operate.server.errors import ApiError
from keel.operate.server.schemas import ListOut

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["connectors"])

ConnectorName = Annotated[str, Path(pattern=NAME_PATTERN, description="A connector's name")]
CallerDep = Annotated[Caller, Depends(caller_dependency)]


def _registry(request: Request, caller: Caller) -> Any:
    if caller.key is not None and not ("admin" in caller.key.roles and "*" in caller.key.scopes):
        raise ApiError(403, f"API key {caller.key.id} ({caller.key.name}) may not manage connectors: that takes an "
                       "admin key of every workflow", type="permission_error", code="role",
                       hint="use a key made with: keel keys create NAME --workflow '*' --admin")
    from keel.connectors import Connectors

    return Connectors(request.app.state.keel.store)


@router.get("/connectors", response_model=ListOut, summary="Connectors (admin keys of every workflow)")
def list_connectors(request: Request, caller: CallerDep) -> ListOut:
    return ListOut(data=[c.public() for c in _registry(request, caller).list()])


@router.get("/connectors/{name}", summary="One connector, credentials by name only")
def get_connector(request: Request, name: ConnectorName, caller: CallerDep) -> dict[str, Any]:
    found = _registry(request, caller).find(name)
    if found is None:
        raise ApiError(404, f"no connector named {name!r}", type="not_found_error",
                       hint="list them: GET /v1/connectors (or keel connectors list)")
    return found.public()


class ConnectorIn(BaseModel):
    """A connector to add (or with ``replace``, change) over HTTP: an http(s) MCP server only.

    ``stdio:`` servers are added with ``keel connectors add`` on the host: a command an API key
    could set would run on the server's machine."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="What specs write: mcp: [{connector: NAME}]")
    server: str = Field(max_length=2000, pattern=r"^https?://",
                        description="A streamable-HTTP MCP server URL (kind http: the API's base URL)")
    kind: Literal["mcp", "http"] = Field(default="mcp", description="mcp, or http: an API for the http tool")
    hosts: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list, max_length=100, description="kind http: hosts the tool may call (default: the URL's)")
    methods: list[Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]] = Field(
        default_factory=lambda: ["GET"], min_length=1, max_length=6, description="kind http: methods allowed")
    tools: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=500, description="Allow-list (default: every tool the server lists)")
    approval: dict[Annotated[str, Field(min_length=1, max_length=200)], Literal["always", "never"]] = Field(
        default_factory=dict, max_length=500, description="Tool -> always|never; `*` for the others")
    workflows: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=200, description="Workflow names or patterns")
    keys: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=200,
        description="API keys (ids, names or patterns) whose runs may use it")
    timeout: float = Field(default=60, gt=0, le=86400, description="Seconds one tool call may take")
    headers: dict[Annotated[str, Field(min_length=1, max_length=200)], Annotated[str, Field(max_length=8000)]] = Field(
        default_factory=dict, max_length=50, description="Headers sent with every request (stored encrypted, "
        "never returned)")
    oauth: bool = Field(default=False, description="The server wants OAuth 2.1: log in with keel connectors login")
    scope: str | None = Field(default=None, max_length=2000, description="With oauth: the scopes to ask for")
    replace: bool = Field(default=False, description="Change the connector of that name")


@router.post("/connectors", status_code=201, summary="Add or replace a connector (admin keys of every workflow)")
def add_connector(request: Request, body: ConnectorIn, caller: CallerDep) -> dict[str, Any]:
    from keel import secrets
    from keel.connectors import Connector, ConnectorError, Credentials
    from keel.connectors.registry import OAuthSettings

    registry = _registry(request, caller)
    secrets.register(*body.headers.values())
    if body.scope and not body.oauth:
        raise ApiError(422, "scope is for an OAuth connector", field="scope", hint="set oauth: true")
    if body.kind == "http" and (body.oauth or body.tools is not None or body.approval):
        raise ApiError(422, "oauth, tools and approval are for MCP servers", field="kind",
                       hint="an http connector has headers, hosts and methods; approval is the node's")
    hosts = body.hosts
    if body.kind == "http" and not hosts:
        from urllib.parse import urlsplit

        parts = urlsplit(body.server)
        hosts = [f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or ""]
    c = Connector(name=body.name, server=body.server, kind=body.kind, hosts=hosts if body.kind == "http" else [],
                  methods=body.methods, tools=body.tools, approval=body.approval,
                  workflows=body.workflows, keys=body.keys, timeout=body.timeout,
                  oauth=OAuthSettings(scope=body.scope) if body.oauth else None,
                  credentials=Credentials(headers=body.headers))
    old = registry.get(body.name, secrets=True) if body.replace and registry.find(body.name) else None
    if old is not None and old.server == c.server and c.oauth is not None and old.oauth is not None:
        c.credentials.oauth = old.credentials.oauth  # the login survives a change of policy
    try:
        saved = registry.add(c, replace=body.replace)
    except ConnectorError as e:
        raise ApiError(409, e.message, type="conflict_error", field="name",
                       hint="send replace: true to change it, or DELETE /v1/connectors/NAME") from None
    return registry.get(saved.name).public()


@router.delete("/connectors/{name}", summary="Remove a connector and its credentials")
def remove_connector(request: Request, name: ConnectorName, caller: CallerDep) -> dict[str, Any]:
    registry = _registry(request, caller)
    if registry.find(name) is None:
        raise ApiError(404, f"no connector named {name!r}", type="not_found_error",
                       hint="list them: GET /v1/connectors (or keel connectors list)")
    registry.remove(name)
    return {"name": name, "deleted": True}


@router.post("/connectors/{name}/test", summary="Reach the connector's server with its credentials; its tools")
async def test_connector(request: Request, name: ConnectorName, caller: CallerDep,
                         timeout: Annotated[float, Query(gt=0, le=300)] = 30) -> dict[str, Any]:
    from keel.connectors import ConnectorError
    from keel.connectors.probe import probe

    registry = _registry(request, caller)
    if registry.find(name) is None:
        raise ApiError(404, f"no connector named {name!r}", type="not_found_error",
                       hint="list them: GET /v1/connectors (or keel connectors list)")
    c = registry.get(name, secrets=True)
    try:
        if c.kind == "http":
            from keel.connectors.probe import probe_http

            return {"name": name, "ok": True, "status": await probe_http(c, timeout=timeout), "tools": []}
        tools = await probe(c, timeout=timeout, registry=registry)
    except ConnectorError as e:
        raise ApiError(502, e.message, type="connector_error", hint=e.hint) from None
    return {"name": name, "ok": True, "tools": [{"name": t.name, "description": t.description,
                                                "allowed": t.allowed, "policy": t.policy} for t in tools]}
