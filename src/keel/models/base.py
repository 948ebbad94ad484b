"""The ``Model`` interface: one ``generate`` call, the same for every provider.

A provider implements one method, :meth:`Model._attempt`: a single try at the
request, streaming or not. Everything else is shared and lives here:

- retries with backoff on transient provider failures (before any text was
  streamed; after that a retry would repeat text the caller already saw);
- validation of structured output and tool-call arguments, with one retry that
  shows the model its validation error, then a typed error;
- a record of every attempt in the store (tokens, latency, time to first token,
  status, cost).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from keel.errors import KeelError, ProviderError, StructuredOutputError, ToolCallError
from keel.models import _recording
from keel.models._retry import RetryPolicy, is_transient
from keel.models.pricing import cost_of
from keel.models.structured import check_schema, validate_output, validate_tool_call
from keel.models.types import (
    Message,
    ModelResponse,
    ModelSettings,
    ResponseDone,
    StreamEvent,
    StreamRestart,
    TextDelta,
    Tool,
    Usage,
)
from keel.secrets import scrub
from keel.store.model_calls import ModelCallRecord

__all__ = ["Model", "ModelCall", "ModelRequest"]


@dataclass(frozen=True)
class ModelRequest:
    """Everything one attempt needs; providers read it, never mutate it."""

    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    output_schema: dict[str, Any] | None = None
    settings: ModelSettings = field(default_factory=ModelSettings)
    stream: bool = False


class Model(ABC):
    """A model reachable through a provider.

    Subclasses set :attr:`provider` and implement :meth:`_attempt`.
    """

    provider: str = "unknown"
    """Provider prefix of the model string, e.g. ``openai``."""

    #: How the provider constrains structured output, shown by ``keel doctor``:
    #: ``"native"`` (endpoint's JSON-schema mode), ``"grammar"`` (constrained
    #: decoding), or ``"validate"`` (validate and retry only).
    structured_mode: str = "validate"

    def __init__(self, name: str, *, retry: RetryPolicy | None = None, prices: dict | None = None) -> None:
        self.name = name
        self.retry = retry or RetryPolicy()
        self._prices = prices

    @property
    def model_string(self) -> str:
        return f"{self.provider}:{self.name}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_string}>"

    # -- the provider's part ----------------------------------------------------------

    @abstractmethod
    def _attempt(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        """One try at ``request``.

        Yield :class:`TextDelta` events as text arrives (only when
        ``request.stream``), then exactly one :class:`ModelResponse` with text,
        tool calls, usage and finish reason (``parsed`` is filled in by Keel).
        Raise :class:`keel.errors.ProviderError` subclasses for provider failures.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients or loaded weights; the model may not be used afterwards."""

    # -- the public call --------------------------------------------------------------

    def generate(
        self,
        messages: Sequence[Message] | str,
        *,
        tools: Sequence[Tool] = (),
        output_schema: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
        stream: bool = False,
    ) -> ModelCall:
        """Ask the model; ``await`` the result for a :class:`ModelResponse`, or
        ``async for`` over it for :data:`StreamEvent` values (text deltas, then
        a final :class:`ResponseDone`).

        With ``output_schema``, ``response.parsed`` is valid under the schema or
        the call raises :class:`StructuredOutputError`. ``stream=True`` asks the
        provider to stream (and measures time to first token).
        """
        if isinstance(messages, str):
            messages = [Message.user(messages)]
        if output_schema is not None:
            check_schema(output_schema)
        for tool in tools:
            check_schema(tool.parameters, where=f"parameters of tool {tool.name!r}")
        request = ModelRequest(
            messages=tuple(messages),
            tools=tuple(tools),
            output_schema=output_schema,
            settings=settings or ModelSettings(),
            stream=stream,
        )
        return ModelCall(self, request)

    def generate_sync(self, messages: Sequence[Message] | str, **kwargs: Any) -> ModelResponse:
        """Blocking :meth:`generate`, for scripts; do not call it inside a running event loop."""

        async def run() -> ModelResponse:
            try:
                return await self.generate(messages, **kwargs)
            finally:
                await self.aclose()

        return asyncio.run(run())

    # -- shared machinery -------------------------------------------------------------

    async def _run(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        usage = Usage()
        started = time.perf_counter()
        ttft: float | None = None
        current = request
        for validation_try in (1, 2):
            checked: _Checked | None = None
            async for item in self._with_retries(current):
                if isinstance(item, TextDelta):
                    if ttft is None:
                        ttft = (time.perf_counter() - started) * 1000
                    yield item
                else:
                    checked = item
            assert checked is not None
            response, parsed, problem = checked.response, checked.parsed, checked.problem
            usage = usage + response.usage
            if problem is None:
                yield ResponseDone(
                    response=response.model_copy(
                        update={
                            "parsed": parsed,
                            "usage": usage,
                            "model": self.model_string,
                            "latency_ms": (time.perf_counter() - started) * 1000,
                            "ttft_ms": ttft,
                            "cost_usd": cost_of(self.model_string, usage, self._prices),
                        }
                    )
                )
                return
            if validation_try == 2:
                error_cls = ToolCallError if response.tool_calls else StructuredOutputError
                raise error_cls(
                    f"{self.model_string} returned invalid output twice: {problem}",
                    hint="use a stronger model, simplify the schema, or bound it (maxLength, enum, maxItems)",
                    output=response.text,
                )
            if request.stream:
                yield StreamRestart(reason=problem)
            current = replace(
                current,
                messages=(
                    *current.messages,
                    response.to_message(),
                    Message.user(
                        f"Your reply was invalid: {problem}. Reply again, following the required "
                        "format exactly."
                    ),
                ),
            )

    def _check(self, request: ModelRequest, response: ModelResponse) -> tuple[Any, str | None]:
        """``(parsed, None)`` if the response keeps the contract, else ``(None, problem)``."""
        for call in response.tool_calls:
            problem = validate_tool_call(call, request.tools)
            if problem:
                return None, problem
        if request.output_schema is None or response.tool_calls:
            return None, None
        if response.finish_reason == "length":
            return None, "the output was cut off at the token limit"
        return validate_output(response.text, request.output_schema)

    async def _with_retries(self, request: ModelRequest) -> AsyncIterator[TextDelta | _Checked]:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            first: float | None = None
            response: ModelResponse | None = None
            try:
                async for item in self._attempt(request):
                    if isinstance(item, TextDelta):
                        if first is None:
                            first = time.perf_counter()
                        yield item
                    else:
                        response = item
                if response is None:
                    raise RuntimeError(f"{type(self).__name__}._attempt returned no response")
            except asyncio.CancelledError:
                self._record(request, attempt, started, first, status="cancelled")
                raise
            except ProviderError as e:
                self._record(request, attempt, started, first, status="error", error=e)
                if first is not None or attempt >= self.retry.max_attempts or not is_transient(e):
                    raise
                await self.retry.sleep(self.retry.delay(attempt, e))
                continue
            except BaseException as e:
                self._record(request, attempt, started, first, status="error", error=e)
                raise
            parsed, problem = self._check(request, response)
            self._record(
                request, attempt, started, first,
                status="ok" if problem is None else "invalid_output", response=response,
            )
            yield _Checked(response, parsed, problem)
            return

    def _record(
        self,
        request: ModelRequest,
        attempt: int,
        started: float,
        first: float | None,
        *,
        status: str,
        response: ModelResponse | None = None,
        error: BaseException | None = None,
    ) -> None:
        ctx = _recording.current_context()
        usage = response.usage if response else None
        _recording.record_call(
            ModelCallRecord(
                provider=self.provider,
                model=self.name,
                status=status,  # type: ignore[arg-type]
                latency_ms=(time.perf_counter() - started) * 1000,
                attempt=attempt,
                stream=request.stream,
                structured=request.output_schema is not None,
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else None,
                cached_tokens=usage.cached_tokens if usage else None,
                reasoning_tokens=usage.reasoning_tokens if usage else None,
                ttft_ms=(first - started) * 1000 if first is not None else None,
                cost_usd=cost_of(self.model_string, usage, self._prices) if usage else None,
                error_class=type(error).__name__ if error else None,
                error_message=scrub(error.message if isinstance(error, KeelError) else str(error))[:500]
                if error
                else None,
                http_status=getattr(error, "status_code", None),
                trace_id=ctx.trace_id if ctx else None,
                span_id=ctx.span_id if ctx else None,
                tags=ctx.tags if ctx else {},
            )
        )


@dataclass(frozen=True)
class _Checked:
    response: ModelResponse
    parsed: Any
    problem: str | None


class ModelCall:
    """A pending :meth:`Model.generate` call: awaitable, or async-iterable for events."""

    def __init__(self, model: Model, request: ModelRequest) -> None:
        self.model = model
        self.request = request

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self.model._run(self.request)

    async def response(self) -> ModelResponse:
        """The final response, as a coroutine (for ``asyncio.create_task`` and friends)."""
        async for event in self.model._run(self.request):
            if isinstance(event, ResponseDone):
                return event.response
        raise RuntimeError("stream ended without a response")  # pragma: no cover

    def __await__(self) -> Generator[Any, None, ModelResponse]:
        return self.response().__await__()
