"""``POST /chatkit``: the endpoint a ChatKit front end's ``api.url`` points at.

One route takes every ChatKit request (a JSON object whose ``type`` is ``threads.create``,
``threads.add_user_message``, ``threads.list``, ``items.list``, ...). Streaming requests
answer with Server-Sent Events (``data: {event}``), the others with JSON. The request is
authenticated like the rest of the API (``Authorization: Bearer keel_sk_...`` once keys
exist; ``X-Keel-User`` names the end user), and a caller sees only its own threads.

Everything that can be checked before a stream starts is, so that a bad request gets a
plain HTTP error in Keel's JSON shape (``{"error": {message, field, hint}}``) instead of
a broken stream: malformed JSON or an unknown request type (400), an unknown thread (404),
an unknown workflow (404), a workflow the key is not scoped to (403), a cap reached (429).
What fails later, inside a run, arrives in the stream as ChatKit's ``error`` event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from chatkit.store import NotFoundError
from chatkit.types import ChatKitReq, ErrorEvent, ThreadsCreateReq
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter, ValidationError

from keel.operate.server.chatkit_server import KeelChatKitServer, NoWorkflowError
from keel.operate.server.chatkit_store import ChatContext
from keel.operate.server.errors import ApiError
from keel.workflows import WorkflowNotFoundError

__all__ = ["router"]

log = logging.getLogger("keel.serve.chatkit")

_REQUEST = TypeAdapter(ChatKitReq)
_TYPES = ("threads.create", "threads.add_user_message", "threads.add_client_tool_output", "threads.retry_after_item",
          "threads.custom_action", "threads.get_by_id", "threads.list", "items.list", "items.feedback",
          "threads.update", "threads.delete", "attachments.create", "attachments.delete")
_BODY = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["type"],
    "properties": {"type": {"type": "string", "enum": list(_TYPES)},
                   "params": {"type": "object"},
                   "metadata": {"type": "object", "description": "metadata.workflow picks the workflow of a new "
                                                                 "thread"}}}}},
    "required": True}
_HELP = "see docs/chatkit.md for the request shapes (ChatKit's server protocol)"


def _parse(body: bytes) -> Any:
    try:
        return _REQUEST.validate_json(body)
    except ValidationError as e:
        err = e.errors()[0]
        if err["type"] == "json_invalid":
            raise ApiError(400, f"the ChatKit request is not valid JSON: {err.get('ctx', {}).get('error', '')}",
                           field="body", code="json_invalid",
                           hint="send a JSON object like {\"type\": \"threads.list\", \"params\": {}}") from None
        loc = [str(p) for p in err.get("loc", ())]
        # The discriminated union puts the request type first in the location: drop it.
        if loc and loc[0] in _TYPES:
            loc = loc[1:]
        field = ".".join(loc) or "body"
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            raise ApiError(400, f"unknown ChatKit request type {_type_of(body)!r}", field="type",
                           code=err["type"], hint=f"use one of: {', '.join(_TYPES)}") from None
        raise ApiError(400, f"invalid ChatKit request: {field}: {err['msg']}", field=field, code=err["type"],
                       hint=_HELP) from None


def _type_of(body: bytes) -> Any:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc.get("type") if isinstance(doc, dict) else None


def router(services: Any) -> APIRouter:
    """The ChatKit route, bound to the server's shared ``services`` (see ``app.py``)."""
    server = KeelChatKitServer(services)
    r = APIRouter(tags=["chatkit"])

    @r.post("/chatkit", summary="ChatKit server protocol (threads, items, streamed responses)",
            openapi_extra={"requestBody": _BODY},
            responses={200: {"description": "JSON, or text/event-stream for threads.create, "
                                            "threads.add_user_message and other streaming requests"},
                       400: {"description": "Malformed request"}, 404: {"description": "Unknown thread or workflow"}})
    async def chatkit(request: Request, caller: Any = Depends(services.auth)) -> Response:  # noqa: B008
        body = await request.body()
        req = _parse(body)
        requested = (req.metadata or {}).get("workflow") or request.headers.get("x-keel-workflow") \
            or request.query_params.get("workflow")
        if requested is not None and not isinstance(requested, str):
            raise ApiError(400, "metadata.workflow must be a string", field="metadata.workflow",
                           hint="name a published workflow, e.g. {\"workflow\": \"support\"}")
        owner = f"{caller.key.id if caller.key else ''}/{caller.end_user or ''}"
        context = ChatContext(owner=owner, workflow=requested, caller=caller, request_state=request.state)
        await _precheck(server, req, context, request)
        try:
            result = await server.process(body, context)
            if hasattr(result, "json_events"):
                return StreamingResponse(_never_broken(result), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            return Response(content=result.json, media_type="application/json")
        except NotFoundError as e:
            raise ApiError(404, str(e), type="not_found_error",
                           hint="list this caller's threads with {\"type\": \"threads.list\"}") from None
        except RuntimeError as e:
            if "AttachmentStore" in str(e):
                raise ApiError(400, "Keel's ChatKit backend does not take attachments", field="type",
                               hint="send text messages; put documents in a context collection instead "
                                    "(keel context add NAME PATH)") from None
            raise

    return r


async def _never_broken(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The SDK's event stream; should it fail midway, a ChatKit ``error`` event ends it instead
    of a connection cut short (the details go to the server log, not to the client)."""
    try:
        async for chunk in stream:
            yield chunk
    except Exception:  # anything at all: the client still gets a well-formed ending
        log.warning("a ChatKit stream failed midway", exc_info=True)
        event = ErrorEvent(code="custom", message="Keel could not finish this response; try again.",
                           allow_retry=True)
        yield b"data: " + event.model_dump_json().encode() + b"\n\n"


async def _precheck(server: KeelChatKitServer, req: Any, context: ChatContext, request: Request) -> None:
    """Refuse with a plain HTTP error what would otherwise fail inside the stream."""
    params = getattr(req, "params", None)
    if getattr(getattr(params, "input", None), "attachments", None):
        raise ApiError(400, "Keel's ChatKit backend does not take attachments", field="params.input.attachments",
                       hint="send text messages; put documents in a context collection instead "
                            "(keel context add NAME PATH)")
    thread_id = getattr(params, "thread_id", None)
    caller = context.caller
    workflow = None
    try:
        if isinstance(req, ThreadsCreateReq):
            workflow = server.choose_workflow(context.workflow)
            context.workflow = workflow
        elif thread_id is not None:
            thread = await server.store.load_thread(thread_id, context)
            item_id = getattr(params, "item_id", None)
            if item_id is not None:
                try:
                    await server.store.load_item(thread_id, item_id, context)
                except NotFoundError:
                    raise ApiError(404, f"no item {item_id!r} in ChatKit thread {thread_id!r}",
                                   type="not_found_error", field="params.item_id",
                                   hint="list the thread's items with items.list") from None
            if req.type == "threads.add_client_tool_output":
                raise ApiError(400, "Keel's workflows do not call ChatKit client tools", field="type",
                               hint="send the user's message with threads.add_user_message")
            if req.type in ("threads.add_user_message", "threads.retry_after_item", "threads.custom_action"):
                workflow = server.thread_workflow(thread, context)
    except NotFoundError:
        raise ApiError(404, f"no ChatKit thread {thread_id!r} for this caller", type="not_found_error",
                       field="params.thread_id",
                       hint="create one with threads.create, or list yours with threads.list") from None
    except WorkflowNotFoundError as e:
        raise ApiError(404, e.message, type="not_found_error", field="metadata.workflow", hint=e.hint) from None
    except NoWorkflowError as e:
        raise ApiError(400, e.message, field="metadata.workflow", hint=e.hint) from None
    if workflow is not None:
        request.state.workflow = workflow
        if caller is not None:
            caller.allow(workflow)
            if req.type != "threads.custom_action":
                server.services.budgets.check(caller.key, caller.end_user)
