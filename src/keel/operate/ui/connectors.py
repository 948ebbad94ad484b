"""``/ui/api/connectors``: the web UI's connectors page (docs/connectors.md, "In the web UI").

``GET /ui/api/connectors`` lists the registry (credentials by name only);
``GET /ui/api/connectors/{name}/tools`` reaches one connector's server with its credentials and
answers its tools, or ``{"ok": false, "error", "hint"}`` saying why it cannot (down, refused,
needs a login). Like ``/v1/connectors``, only an admin key of every workflow (or open mode) may.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from keel.connectors.registry import NAME_PATTERN

__all__ = ["router"]


def _refused(caller: Any) -> JSONResponse | None:
    key = getattr(caller, "key", None)
    via_token = getattr(caller, "via_token", False)  # an end user's browser, never an admin
    if key is None and not via_token:  # open mode (loopback), or the UI without a server
        return None
    if key is not None and not via_token and "admin" in key.roles and "*" in key.scopes:
        return None
    from keel.operate.ui.api import _error

    return _error(403, "connectors are shown to admin keys of every workflow", type="permission_error",
                  field="header.Authorization", hint="use a key made with: keel keys create NAME --workflow '*' --admin")


def router(get_store: Callable[[], Any], caller_dep: Any) -> APIRouter:
    api = APIRouter()

    @api.get("/connectors")
    def connectors(caller: Any = caller_dep) -> Any:
        from keel.connectors import Connectors

        refused = _refused(caller)
        if refused is not None:
            return refused
        return {"connectors": [c.public() for c in Connectors(get_store()).list()]}

    @api.get("/connectors/{name}/tools")
    async def tools(name: Annotated[str, Path(pattern=NAME_PATTERN)], caller: Any = caller_dep,
                    timeout: Annotated[float, Query(gt=0, le=120)] = 20) -> Any:
        from keel.connectors import ConnectorError, Connectors
        from keel.connectors.probe import probe
        from keel.operate.ui.api import _error

        refused = _refused(caller)
        if refused is not None:
            return refused
        registry = Connectors(get_store())
        if registry.find(name) is None:
            return _error(404, f"no connector named {name!r}", type="not_found_error",
                          hint="add it: keel connectors add NAME --server ...")
        c = registry.get(name, secrets=True)
        try:
            if c.kind == "http":  # an API for the http tool: its base URL answers with these credentials
                from keel.connectors.probe import probe_http

                status = await probe_http(c, timeout=timeout)
                return {"name": name, "ok": True, "tools": [], "http": {"status": status, "hosts": c.hosts,
                                                                          "methods": c.methods}}
            found = await probe(c, timeout=timeout, registry=registry)
        except ConnectorError as e:
            return {"name": name, "ok": False, "error": e.message, "hint": e.hint}
        return {"name": name, "ok": True, "tools": [{"name": t.name, "description": t.description,
                                                      "allowed": t.allowed, "policy": t.policy} for t in found]}

    return api
