"""OpenAI-compatible endpoints: ``/v1/chat/completions``, ``/v1/responses`` and ``/v1/models``.

``model`` names a workflow, ``name`` (latest version) or ``name@version``. The
conversation becomes the run's input as ``{"messages": [...]}`` (the workflows' chat
history convention: the last user message is ``input_as_text``), and the run's output
is the assistant's answer: a string as is, an object's ``answer`` string (the convention
the templates, ChatKit and the web UI share; the rest of the object, e.g. ``sources``,
stays in the run), any other JSON as JSON text. A run that stops at a
Human approval answers with one line naming the approval, and ``keel.approval_id``.
The caller's ``system``/``developer`` messages and Responses ``instructions`` are demoted to
user content, passed on, or refused as ``[serve] caller_system_messages`` says
(:mod:`keel.operate.server.caller_roles`); ``tool`` messages are dropped.

Streaming sends the role (or ``response.created``) at once, then the answer: token by
token as the model writes it when an Agent node's text is the run's answer whichever way
the run goes on (see :mod:`keel.workflows.answer`), otherwise in one go when the run ends
(a Guardrails check or an End expression may still change it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from keel.errors import KeelError
from keel.operate.server.auth import Caller
from keel.operate.server.auth import caller as caller_dependency
from keel.operate.server.caller_roles import apply_caller_roles
from keel.operate.server.errors import ApiError, keel_error
from keel.operate.server.routes_workflows import _ERRORS, ListOut
from keel.operate.server.runner import AnswerTokens
from keel.workflows import RunResult, WorkflowError

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"], responses=_ERRORS)
CallerDep = Annotated[Caller, Depends(caller_dependency)]


class _Loose(BaseModel):
    # OpenAI clients send many optional fields (temperature, top_p, ...): accepted and ignored.
    model_config = ConfigDict(extra="allow")


class ContentPart(_Loose):
    type: str
    text: str | None = None


class ChatMessage(_Loose):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Loose):
    include_usage: bool = False


class ChatRequest(_Loose):
    model: str = Field(min_length=1, max_length=120, description="A workflow: `name` or `name@version`")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=200)
    """Your end user's id, for per-user caps."""


class InputItem(_Loose):
    type: str | None = None
    role: Literal["system", "developer", "user", "assistant"] | None = None
    content: str | list[ContentPart] | None = None


class ResponsesRequest(_Loose):
    model: str = Field(min_length=1, max_length=120, description="A workflow: `name` or `name@version`")
    input: str | list[InputItem]
    instructions: str | None = None
    stream: bool = False
    user: str | None = Field(default=None, max_length=200)
    safety_identifier: str | None = Field(default=None, max_length=200)


def _text(content: str | list[ContentPart] | None, field: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for i, p in enumerate(content):
        if p.text is None:
            raise ApiError(400, f"{field}[{i}] is a {p.type!r} part; workflows take text only",
                           field=f"{field}[{i}]", hint="send text parts ({'type': 'text', 'text': ...})")
        parts.append(p.text)
    return "".join(parts)


async def _workflow(services: Any, caller: Caller, model: str) -> Any:
    name, sep, ver = model.partition("@")
    version = None
    if sep:
        if not ver.isdigit() or not 1 <= int(ver) < 2**31:
            raise ApiError(400, f"model {model!r}: the version after '@' must be a number >= 1", field="model",
                           hint="write NAME or NAME@VERSION, e.g. support@2")
        version = int(ver)
    caller.allow(name)
    try:
        return await services.runner.off_loop(services.runner.version, name, version)
    except WorkflowError as e:
        raise ApiError(404, f"model {model!r}: {e.message}", type="not_found_error", field="model",
                       hint=(e.hint or "") + "; GET /v1/models lists the workflows you can call",
                       code="model_not_found") from None


def _messages(items: list[tuple[str, str, str]], field: str, mode: str) -> dict[str, Any]:
    """The run's input for ``items`` (role, text, the field naming it); system and developer
    messages as ``[serve] caller_system_messages`` (``mode``) says (:mod:`.caller_roles`)."""
    for role, text, where in items:
        if role == "user" and not text:  # "", null and [] alike: nothing to answer
            raise ApiError(400, f"{where}.content is empty: a user message needs text", field=f"{where}.content",
                           hint="send {'role': 'user', 'content': 'some text'}, or leave the message out")
    kept = [(r, c, where) for r, c, where in items if r != "tool"]
    if not kept or kept[-1][0] != "user":
        raise ApiError(400, f"the last message of {field} must come from the user", field=field,
                       hint="end the conversation with {'role': 'user', 'content': ...}")
    return {"messages": apply_caller_roles([{"role": r, "content": c} for r, c, _ in kept],
                                           [where for *_, where in kept], mode)}


async def _run(request: Request, caller: Caller, model: str, input: dict[str, Any], *,
               stream: bool = False) -> tuple[Any, Any]:
    services = request.app.state.keel
    version = await _workflow(services, caller, model)
    services.budgets.check(caller.key, caller.end_user)
    stream_text = stream and bool(services.runner.answer_nodes(version))
    try:
        started = await services.runner.start(version, input, key=caller.key, end_user=caller.end_user,
                                              provider_key=caller.provider_key, stream_text=stream_text)
    except WorkflowError as e:
        raise ApiError(400, e.message, field="messages", hint=e.hint) from None
    request.state.run_id = started.run_id
    request.state.workflow, request.state.version = version.name, version.version
    return version, started


async def _result(request: Request, started: Any, timeout: float | None = None) -> RunResult:
    services = request.app.state.keel
    result = await services.runner.wait(started, services.settings.run_timeout if timeout is None else timeout)
    if result is None:
        raise ApiError(504, f"run {started.run_id} is still going after {services.settings.run_timeout:g} s",
                       type="timeout", hint=f"it goes on: follow GET /v1/runs/{started.run_id}/events")
    request.state.run_status = result.status  # the access log's: a failed run is an error on the dashboard
    return result


async def _streamed(request: Request, version: Any, started: Any) -> AsyncIterator[str | RunResult]:
    """Pieces of the answer as the run writes them, the rest of it, then the result (last).

    A failed run, or one still going after the run timeout, raises :class:`ApiError`."""
    runner = request.app.state.keel.runner
    tokens = AnswerTokens(runner.answer_nodes(version))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.app.state.keel.settings.run_timeout
    async for event in runner.events(started, timeout=request.app.state.keel.settings.run_timeout):
        piece = tokens.feed(event)
        if piece:
            yield piece
    result = await _result(request, started, max(0.0, deadline - loop.time()))  # 504 if still going
    if result.status == "failed":
        raise _failed(result)
    rest = tokens.rest(_answer(result))
    for piece in (_pieces(rest) if rest else []):
        yield piece
    yield result


def _answer(result: RunResult) -> str:
    if result.status == "waiting" and result.approval is not None:
        a = result.approval
        return f"Waiting for approval {a.id}: {a.message}"
    out = result.output
    if isinstance(out, dict) and isinstance(out.get("answer"), str):
        return out["answer"]  # {"answer": ..., "sources": [...]}: the words are the answer
    return out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)


def _failed(result: RunResult) -> ApiError:
    return ApiError(502, f"workflow run {result.run_id} failed: {result.error}", type="upstream_error",
                    code="run_failed", hint=f"see its trace: GET /v1/runs/{result.run_id}/trace")


def _keel(result: RunResult) -> dict[str, Any]:
    doc: dict[str, Any] = {"run_id": result.run_id, "status": result.status}
    if result.approval is not None:
        doc["approval_id"] = result.approval.id
    return doc


def _usage(request: Request, run_id: str) -> Any:
    """The run's usage; also noted for the access log."""
    usage = request.app.state.keel.runner.usage(run_id)
    request.state.input_tokens, request.state.output_tokens = usage.input_tokens, usage.output_tokens
    return usage


def _pieces(text: str, size: int = 64) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _data(doc: Any) -> bytes:
    return f"data: {json.dumps(doc, ensure_ascii=False)}\n\n".encode()


def _stream_error(e: BaseException) -> dict[str, Any]:
    if isinstance(e, ApiError):
        err = e
    elif isinstance(e, KeelError):
        err = keel_error(e)
    else:
        err = ApiError(500, "the run stopped unexpectedly", type="server_error", hint="see the server's log")
    return {"error": {"type": err.type, "code": err.code, "message": err.message, "param": err.field,
                      "hint": err.hint}}


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/chat/completions", summary="OpenAI Chat Completions; `model` names a workflow",
             responses={200: {"content": {"text/event-stream": {}}, "description": "a chat.completion, or "
                               "chat.completion.chunk events when stream is true"}})
async def chat_completions(request: Request, body: ChatRequest, caller: CallerDep) -> Any:
    caller = caller.with_user(body.user)
    items = [(m.role, _text(m.content, f"messages[{i}].content"), f"messages[{i}]") for i, m in enumerate(body.messages)]
    mode = request.app.state.keel.settings.caller_system_messages
    version, started = await _run(request, caller, body.model, _messages(items, "messages", mode), stream=body.stream)
    cid, created, model = f"chatcmpl-{started.run_id}", int(time.time()), f"{version.name}@{version.version}"

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

    if not body.stream:
        result = await _result(request, started)
        if result.status == "failed":
            raise _failed(result)
        u = _usage(request, result.run_id)
        return {"id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": _answer(result)},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                          "total_tokens": u.total_tokens},
                "keel": _keel(result)}

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def stream() -> AsyncIterator[bytes]:
        yield _data(chunk({"role": "assistant", "content": ""}))
        try:
            async for piece in _streamed(request, version, started):
                if isinstance(piece, str):
                    yield _data(chunk({"content": piece}))
                else:
                    result = piece
        except Exception as e:
            yield _data(_stream_error(e))
            return
        yield _data(chunk({}, "stop", keel=_keel(result)))
        u = _usage(request, result.run_id)
        if include_usage:
            yield _data({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                         "choices": [], "usage": {"prompt_tokens": u.input_tokens,
                                                  "completion_tokens": u.output_tokens,
                                                  "total_tokens": u.total_tokens}})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)


def _responses_input(body: ResponsesRequest, mode: str) -> dict[str, Any]:
    items: list[tuple[str, str, str]] = []
    if body.instructions:
        items.append(("system", body.instructions, "instructions"))
    if isinstance(body.input, str):
        items.append(("user", body.input, "input"))
    else:
        for i, item in enumerate(body.input):
            if item.type not in (None, "message") or item.role is None:
                raise ApiError(400, f"input[{i}] is a {item.type!r} item; workflows take messages only",
                               field=f"input[{i}]", hint="send {'role': 'user', 'content': '...'} items")
            items.append((item.role, _text(item.content, f"input[{i}].content"), f"input[{i}]"))
    return _messages(items, "input", mode)


def _response_doc(rid: str, created: int, model: str, status: str, text: str | None, usage: Any,
                  instructions: str | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    output = []
    if text is not None:
        output = [{"type": "message", "id": f"msg_{rid[5:]}", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    doc = {"id": rid, "object": "response", "created_at": created, "model": model, "status": status,
           "output": output, "error": None, "incomplete_details": None, "instructions": instructions,
           "metadata": {}, "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
           "temperature": None, "top_p": None,
           "usage": None if usage is None else {
               "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
               "total_tokens": usage.total_tokens, "input_tokens_details": {"cached_tokens": 0},
               "output_tokens_details": {"reasoning_tokens": 0}}}
    if extra:
        doc["keel"] = extra
    return doc


@router.post("/responses", summary="OpenAI Responses; `model` names a workflow",
             responses={200: {"content": {"text/event-stream": {}}, "description": "a response, or response.* "
                               "events when stream is true"}})
async def responses(request: Request, body: ResponsesRequest, caller: CallerDep) -> Any:
    caller = caller.with_user(body.safety_identifier or body.user)
    mode = request.app.state.keel.settings.caller_system_messages
    version, started = await _run(request, caller, body.model, _responses_input(body, mode), stream=body.stream)
    rid, created, model = f"resp_{started.run_id}", int(time.time()), f"{version.name}@{version.version}"
    if not body.stream:
        result = await _result(request, started)
        if result.status == "failed":
            raise _failed(result)
        return _response_doc(rid, created, model, "completed", _answer(result), _usage(request, result.run_id),
                             body.instructions, _keel(result))

    async def stream() -> AsyncIterator[bytes]:
        seq = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal seq
            doc = {"type": kind, "sequence_number": seq, **fields}
            seq += 1
            return f"event: {kind}\ndata: {json.dumps(doc, ensure_ascii=False)}\n\n".encode()

        pending = _response_doc(rid, created, model, "in_progress", None, None, body.instructions)
        yield event("response.created", response=pending)
        yield event("response.in_progress", response=pending)
        mid = f"msg_{started.run_id}"
        item = {"type": "message", "id": mid, "status": "in_progress", "role": "assistant", "content": []}
        opened, text = False, ""
        try:
            async for piece in _streamed(request, version, started):
                if not isinstance(piece, str):
                    result = piece
                    continue
                if not opened:  # the message begins with its first words
                    opened = True
                    yield event("response.output_item.added", output_index=0, item=item)
                    part = {"type": "output_text", "text": "", "annotations": []}
                    yield event("response.content_part.added", item_id=mid, output_index=0, content_index=0,
                                part=part)
                text += piece
                yield event("response.output_text.delta", item_id=mid, output_index=0, content_index=0,
                            delta=piece, logprobs=[])
        except Exception as e:
            err = _stream_error(e)["error"]
            yield event("error", code=err["code"], message=err["message"], param=err["param"])
            return
        if not opened:
            yield event("response.output_item.added", output_index=0, item=item)
            yield event("response.content_part.added", item_id=mid, output_index=0, content_index=0,
                        part={"type": "output_text", "text": "", "annotations": []})
        yield event("response.output_text.done", item_id=mid, output_index=0, content_index=0, text=text,
                    logprobs=[])
        done_part = {"type": "output_text", "text": text, "annotations": []}
        yield event("response.content_part.done", item_id=mid, output_index=0, content_index=0, part=done_part)
        yield event("response.output_item.done", output_index=0,
                    item={**item, "status": "completed", "content": [done_part]})
        final = _response_doc(rid, created, model, "completed", text, _usage(request, result.run_id),
                              body.instructions, _keel(result))
        yield event("response.completed", response=final)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "keel"


@router.get("/models", response_model=ListOut, summary="Workflows you may call, as OpenAI models")
def models(request: Request, caller: CallerDep) -> ListOut:
    rows = request.app.state.keel.runner.versions.list()
    return ListOut(data=[ModelOut(id=r["name"], created=int(r["published_at"])) for r in rows
                         if caller.may_see(r["name"])])

