"""Models behind any OpenAI-compatible endpoint, through the official ``openai`` client.

Two wire formats: Chat Completions (every compatible server) and the Responses
API (OpenAI; chosen with ``?api=responses`` on the model string).

Structured output uses the strongest mode the endpoint accepts, found by trying:

1. ``json_schema`` — OpenAI's native mode, ``strict`` when the schema allows it;
2. ``json_object`` with a ``schema`` field — llama.cpp's server and some others;
3. ``prompt`` — the schema in a system message; Keel's validation does the rest.

An endpoint that rejects a mode (HTTP 400/422/500 naming it) is remembered for
the rest of the process, so the probe costs one failed request at most.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from keel.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    RateLimitedError,
)
from keel.models._retry import RetryPolicy
from keel.models.base import Model, ModelRequest
from keel.models.providers import Provider
from keel.models.structured import UNPARSEABLE_ARGUMENTS, is_strict_compatible
from keel.models.types import FinishReason, ModelResponse, TextDelta, ToolCall, Usage
from keel.secrets import scrub

__all__ = ["OpenAICompatibleModel"]

_MODES = ("json_schema", "json_object", "prompt")
_FINISH: dict[str | None, FinishReason] = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter", None: "stop",
}


class OpenAICompatibleModel(Model):
    """A model on an OpenAI-compatible endpoint (OpenAI, OpenRouter, Ollama, vLLM, LM Studio,
    llama.cpp's server, ...)."""

    structured_mode = "native"
    _mode_cache: ClassVar[dict[tuple[str, str], str]] = {}

    def __init__(self, name: str, provider: Provider, *, api: str = "chat",
                 structured: str | None = None, retry: RetryPolicy | None = None,
                 prices: dict | None = None) -> None:
        super().__init__(name, retry=retry, prices=prices)
        self.provider_config = provider
        self.provider = provider.name
        self.api = api
        self._forced_mode = structured

    async def aclose(self) -> None:
        await self.provider_config.aclose()

    # -- structured-output mode -----------------------------------------------------

    def _mode(self) -> str:
        if self._forced_mode:
            return self._forced_mode
        key = (self.provider_config.base_url, self.name)
        return self._mode_cache.get(key, "json_schema")

    def _downgrade(self, mode: str) -> str | None:
        if self._forced_mode:
            return None
        nxt = _MODES[_MODES.index(mode) + 1] if mode != "prompt" else None
        if nxt:
            self._mode_cache[(self.provider_config.base_url, self.name)] = nxt
        return nxt

    # -- one attempt ----------------------------------------------------------------

    async def _attempt(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        client = self.provider_config.client()
        mode = self._mode() if request.output_schema is not None else None
        while True:
            try:
                if self.api == "responses":
                    stream = self._responses(client, request, mode)
                else:
                    stream = self._chat(client, request, mode)
                async for item in stream:
                    yield item
                return
            except Exception as e:
                error = _translate(e, self.provider_config)
                rejected_mode = (
                    mode in ("json_schema", "json_object")
                    and isinstance(error, ProviderHTTPError)
                    and error.status_code in (400, 422, 500, 501)
                )
                if rejected_mode and (nxt := self._downgrade(mode)):  # type: ignore[arg-type]
                    mode = nxt
                    continue
                if error is e:
                    raise
                raise error from e

    # -- Chat Completions -----------------------------------------------------------

    async def _chat(self, client: Any, request: ModelRequest, mode: str | None
                    ) -> AsyncIterator[TextDelta | ModelResponse]:
        s = request.settings
        kwargs: dict[str, Any] = {"model": self.name, "messages": _chat_messages(request, mode)}
        for key, value in (("temperature", s.temperature), ("top_p", s.top_p),
                           ("max_tokens", s.max_tokens), ("seed", s.seed)):
            if value is not None:
                kwargs[key] = value
        if s.timeout is not None:
            kwargs["timeout"] = s.timeout
        if request.tools:
            kwargs["tools"] = [
                {"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters}}
                for t in request.tools
            ]
        schema = request.output_schema
        if schema is not None and mode == "json_schema":
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "output", "schema": schema, "strict": is_strict_compatible(schema)}}
        elif schema is not None and mode == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": schema}

        if not request.stream:
            completion = await client.chat.completions.create(**kwargs)
            choice = completion.choices[0]
            yield ModelResponse(
                text=choice.message.content or "",
                tool_calls=tuple(
                    _tool_call(c.id, c.function.name, c.function.arguments)
                    for c in choice.message.tool_calls or ()
                ),
                usage=_chat_usage(completion.usage),
                finish_reason=_FINISH.get(choice.finish_reason, "stop"),
            )
            return

        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish: str | None = None
        usage = Usage()
        stream = await client.chat.completions.create(**kwargs)
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = _chat_usage(chunk.usage)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        yield TextDelta(text=delta.content)
                    for c in delta.tool_calls or ():
                        slot = calls.setdefault(c.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = c.id or slot["id"]
                        if c.function is not None:
                            slot["name"] += c.function.name or ""
                            slot["arguments"] += c.function.arguments or ""
                    finish = choice.finish_reason or finish
        yield ModelResponse(
            text="".join(text),
            tool_calls=tuple(_tool_call(c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())),
            usage=usage,
            finish_reason=_FINISH.get(finish, "stop"),
        )

    # -- Responses API --------------------------------------------------------------

    async def _responses(self, client: Any, request: ModelRequest, mode: str | None
                         ) -> AsyncIterator[TextDelta | ModelResponse]:
        s = request.settings
        kwargs: dict[str, Any] = {"model": self.name, "input": _responses_input(request, mode)}
        for key, value in (("temperature", s.temperature), ("top_p", s.top_p),
                           ("max_output_tokens", s.max_tokens)):
            if value is not None:
                kwargs[key] = value
        if s.timeout is not None:
            kwargs["timeout"] = s.timeout
        if request.tools:
            kwargs["tools"] = [
                {"type": "function", "name": t.name, "description": t.description,
                 "parameters": t.parameters, "strict": is_strict_compatible(t.parameters)}
                for t in request.tools
            ]
        if request.output_schema is not None and mode == "json_schema":
            kwargs["text"] = {"format": {"type": "json_schema", "name": "output",
                                         "schema": request.output_schema,
                                         "strict": is_strict_compatible(request.output_schema)}}
        if not request.stream:
            yield _from_response(await client.responses.create(**kwargs))
            return
        stream = await client.responses.create(stream=True, **kwargs)
        final = None
        async with stream:
            async for event in stream:
                if event.type == "response.output_text.delta":
                    yield TextDelta(text=event.delta)
                elif event.type in ("response.completed", "response.incomplete"):
                    final = event.response
                elif event.type in ("response.failed", "error"):
                    message = getattr(getattr(event, "response", None), "error", None) or event
                    raise ProviderHTTPError(f"{self.model_string} failed: {message}",
                                            provider=self.provider, status_code=500)
        if final is None:
            raise ProviderUnreachableError(f"{self.model_string}: the stream ended early",
                                           provider=self.provider)
        yield _from_response(final)


# -- wire helpers ------------------------------------------------------------------------


def _schema_instruction(schema: dict[str, Any]) -> str:
    return ("Reply with exactly one JSON document, and nothing else, valid under this JSON "
            f"schema:\n{json.dumps(schema)}")


def _chat_messages(request: ModelRequest, mode: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif m.role == "assistant" and m.tool_calls:
            out.append({"role": "assistant", "content": m.content or None, "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in m.tool_calls]})
        else:
            out.append({"role": m.role, "content": m.content})
    if request.output_schema is not None and mode in ("json_object", "prompt"):
        # json_object mode only promises JSON; the schema must be in the prompt as well.
        out.insert(0, {"role": "system", "content": _schema_instruction(request.output_schema)})
    return out


def _responses_input(request: ModelRequest, mode: str | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if request.output_schema is not None and mode != "json_schema":
        items.append({"role": "system", "content": _schema_instruction(request.output_schema)})
    for m in request.messages:
        if m.role == "tool":
            items.append({"type": "function_call_output", "call_id": m.tool_call_id, "output": m.content})
            continue
        if m.content or not m.tool_calls:
            items.append({"role": m.role, "content": m.content})
        items.extend(
            {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": json.dumps(c.arguments)}
            for c in m.tool_calls
        )
    return items


def _tool_call(call_id: str | None, name: str, arguments: str | None) -> ToolCall:
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        # Keep the raw text so validation can name the problem and the retry can show it.
        args = {UNPARSEABLE_ARGUMENTS: arguments or ""}
    return ToolCall(id=call_id or f"call_{time.time_ns()}", name=name, arguments=args)


def _chat_usage(u: Any) -> Usage:
    if u is None:
        return Usage()
    prompt_details = getattr(u, "prompt_tokens_details", None)
    completion_details = getattr(u, "completion_tokens_details", None)
    return Usage(
        input_tokens=u.prompt_tokens or 0,
        output_tokens=u.completion_tokens or 0,
        cached_tokens=getattr(prompt_details, "cached_tokens", None),
        reasoning_tokens=getattr(completion_details, "reasoning_tokens", None),
    )


def _from_response(r: Any) -> ModelResponse:
    text: list[str] = []
    calls: list[ToolCall] = []
    for item in r.output or ():
        if item.type == "message":
            text.extend(c.text for c in item.content if getattr(c, "type", "") == "output_text")
        elif item.type == "function_call":
            calls.append(_tool_call(item.call_id, item.name, item.arguments))
    u = r.usage
    usage = Usage(
        input_tokens=u.input_tokens, output_tokens=u.output_tokens,
        cached_tokens=getattr(getattr(u, "input_tokens_details", None), "cached_tokens", None),
        reasoning_tokens=getattr(getattr(u, "output_tokens_details", None), "reasoning_tokens", None),
    ) if u else Usage()
    incomplete = getattr(r, "status", "") == "incomplete"
    return ModelResponse(
        text="".join(text), tool_calls=tuple(calls), usage=usage,
        finish_reason="tool_calls" if calls else ("length" if incomplete else "stop"),
    )


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


def _translate(e: Exception, provider: Provider) -> Exception:
    """Map the ``openai`` client's exceptions onto Keel's tree; anything else passes through."""
    import openai

    if isinstance(e, ProviderError):
        return e
    where = f"{provider.name} at {provider.base_url}"
    if isinstance(e, openai.APITimeoutError):
        return ProviderTimeoutError(
            f"{where} did not answer in time", provider=provider.name,
            hint="raise KEEL_TIMEOUT, or check that the endpoint is not overloaded")
    if isinstance(e, openai.APIConnectionError):
        return ProviderUnreachableError(
            f"cannot reach {where}", provider=provider.name,
            hint="check that the server is running and the URL is right")
    if isinstance(e, openai.APIStatusError):
        status = e.status_code
        detail = _error_detail(e, provider.api_key)
        if status == 429:
            err = RateLimitedError(
                f"{where} is rate-limiting requests (429): {detail}", provider=provider.name,
                status_code=status, hint="wait, lower concurrency, or raise your quota")
            err.retry_after = _retry_after(e.response.headers)  # type: ignore[attr-defined]
            return err
        if status in (401, 403):
            return ProviderAuthError(
                f"{where} refused the API key ({status}): {detail}", provider=provider.name,
                status_code=status, hint=f"check {provider.key_env or 'the API key'}")
        error = ProviderHTTPError(
            f"{where} answered HTTP {status}: {detail}", provider=provider.name, status_code=status,
            hint="check the model name" if status == 404 else None)
        error.retry_after = _retry_after(e.response.headers)  # type: ignore[attr-defined]
        return error
    return e


def _error_detail(e: Any, api_key: str | None) -> str:
    """The provider's words, without ``api_key`` or any other secret (scrubbed before truncating:
    a key cut in two would not be recognised)."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return scrub(str(inner["message"]), api_key)[:300]
        return scrub(json.dumps(body), api_key)[:300]
    return scrub(str(getattr(e, "message", "")) or type(e).__name__, api_key)[:300]
