"""A scripted model for your own tests: queue replies, record calls, fail on leftovers.

It is a real provider, reached through the model string ``scripted:<name>``, so a
test runs the whole pipeline (workflows, evals, the server) exactly as it would
with a real model. Replies are validated like any model's: a scripted reply that
breaks the output schema exercises Keel's retry path.

>>> from keel.testing import scripted
>>> with scripted("support-bot") as model:
...     model.reply("Hello!")
...     model.reply(parsed={"intent": "refund"})
...     # code under test uses get_model("scripted:support-bot") ...

``scripted:echo`` is built in: it answers with the last user message, which is
handy for smoke tests and benchmarks with no model latency.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from keel.errors import ScriptError
from keel.models.base import Model, ModelRequest
from keel.models.types import FinishReason, ModelResponse, TextDelta, ToolCall, Usage

__all__ = ["Reply", "ScriptedModel", "get_script", "scripted"]

_ids = itertools.count(1)


@dataclass
class Reply:
    """One queued reply. Give ``text``, ``parsed`` (sent as JSON text), ``tool_calls``,
    ``error`` (raised instead of answering) or ``respond`` (computes the reply)."""

    text: str | None = None
    parsed: Any = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """``(tool_name, arguments)`` pairs."""
    error: BaseException | None = None
    respond: Callable[[ModelRequest], str | Reply] | None = None
    """Computes the reply from the request: its text, or a whole :class:`Reply` (tool calls too)."""
    usage: Usage | None = None
    finish_reason: FinishReason | None = None
    delay: float = 0.0
    """Seconds to wait before answering (to test timeouts and concurrency)."""

    def render(self, request: ModelRequest) -> str:
        if self.respond is not None:
            return self.respond(request)
        if self.text is not None:
            return self.text
        if self.parsed is not None:
            return json.dumps(self.parsed)
        return ""


def _echo(request: ModelRequest) -> str:
    users = [m.content for m in request.messages if m.role == "user"]
    return users[-1] if users else ""


class ScriptedModel(Model):
    """A model that answers from a queue of :class:`Reply` values.

    Calls are recorded in :attr:`calls` (the :class:`ModelRequest` of each
    attempt). With no replies left, a call raises :class:`ScriptError`, unless
    ``default`` computes a reply. :meth:`assert_done` raises if replies are left.
    """

    provider = "scripted"
    structured_mode = "validate"

    KEEP_CALLS = 1000
    """How many recent requests :attr:`calls` keeps."""

    def __init__(self, name: str = "default", *, default: Callable[[ModelRequest], str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.default = default
        self.calls: list[ModelRequest] = []
        self.call_count = 0
        """Calls made in all; :attr:`calls` keeps only the last :attr:`KEEP_CALLS` of them."""

    def reply(self, text: str | None = None, **fields: Any) -> ScriptedModel:
        """Queue one reply (see :class:`Reply` for the fields); returns ``self`` for chaining."""
        with self._lock:
            self._queue.append(Reply(text=text, **fields))
        return self

    def fail(self, error: BaseException) -> ScriptedModel:
        """Queue an error to raise on the next call, e.g. ``ProviderError("boom")``."""
        return self.reply(error=error)

    @property
    def pending(self) -> int:
        """Replies queued and not used yet."""
        return len(self._queue)

    def assert_done(self) -> None:
        """Raise :class:`ScriptError` if any queued reply was never used."""
        if self._queue:
            raise ScriptError(
                f"scripted:{self.name} has {len(self._queue)} unused repl"
                f"{'y' if len(self._queue) == 1 else 'ies'}",
                hint="the code under test made fewer model calls than the script expects",
            )

    async def _attempt(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        with self._lock:
            self.calls.append(request)
            self.call_count += 1
            if len(self.calls) > self.KEEP_CALLS:  # a long-lived server must not grow without bound
                del self.calls[: len(self.calls) - self.KEEP_CALLS]
            reply = self._queue.popleft() if self._queue else None
        if reply is None:
            if self.default is None:
                raise ScriptError(
                    f"scripted:{self.name} was called {self.call_count} times but has no reply left",
                    hint=f"queue another with scripted({self.name!r}).reply(...)",
                )
            reply = Reply(respond=self.default)
        if reply.respond is not None:
            computed = reply.respond(request)
            reply = computed if isinstance(computed, Reply) else replace(reply, respond=None, text=computed)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.error is not None:
            raise reply.error
        text = reply.render(request)
        calls = tuple(
            ToolCall(id=f"call_{next(_ids)}", name=name, arguments=args) for name, args in reply.tool_calls
        )
        if request.stream:
            for piece in _pieces(text):
                yield TextDelta(text=piece)
        prompt_words = sum(len(m.content.split()) for m in request.messages)
        yield ModelResponse(
            text=text,
            tool_calls=calls,
            usage=reply.usage or Usage(input_tokens=prompt_words, output_tokens=len(text.split())),
            finish_reason=reply.finish_reason or ("tool_calls" if calls else "stop"),
        )


def _pieces(text: str, size: int = 8) -> Iterator[str]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


_scripts: dict[str, ScriptedModel] = {}
_scripts_lock = threading.Lock()


def get_script(name: str) -> ScriptedModel:
    """The process-wide scripted model behind ``scripted:<name>`` (created on first use)."""
    with _scripts_lock:
        model = _scripts.get(name)
        if model is None:
            model = _scripts[name] = ScriptedModel(name, default=_echo if name == "echo" else None)
        return model


@contextmanager
def scripted(name: str = "default") -> Iterator[ScriptedModel]:
    """A fresh ``scripted:<name>`` for the block; on a clean exit, fail if replies are left.

    Models made with ``get_model("scripted:<name>")`` inside the block are this one.
    """
    model = ScriptedModel(name, default=_echo if name == "echo" else None)
    model.retry = replace(model.retry, sleep=_no_sleep)
    with _scripts_lock:
        previous = _scripts.get(name)
        _scripts[name] = model
    try:
        yield model
        model.assert_done()
    finally:
        with _scripts_lock:
            if previous is None:
                _scripts.pop(name, None)
            else:
                _scripts[name] = previous


async def _no_sleep(_: float) -> None:
    """Scripted errors retry at once: tests should not wait on backoff."""

