"""``/v1/connectors``: read the connector registry (docs/connectors.md), never its secrets.

Connectors are shared by every workflow, so only a caller that administers every workflow
reads them: an ``admin`` key scoped to ``*`` (or anyone in open mode, loopback only).
Credentials appear by name only (``env`` / ``headers`` list the variable and header names).
Adding and changing connectors stays on the command line (``keel connectors add``), where the
credentials come from the admin's environment rather than over HTTP.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

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
        raise ApiError(403, f"API key {caller.key.id} ({caller.key.name}) may not read connectors: that takes an "
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
