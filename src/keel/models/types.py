"""Typed messages, tools and responses: what crosses the model seam.

Every object here is a pydantic model, so one ``model_dump()`` /
``model_validate()`` round-trips it through the store, the HTTP API and traces.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FinishReason",
    "Message",
    "ModelResponse",
    "ModelSettings",
    "ResponseDone",
    "Role",
    "StreamEvent",
    "StreamRestart",
    "TextDelta",
    "Tool",
    "ToolCall",
    "Usage",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Frozen):
    """A request from the model to call one tool."""

    id: str
    """Provider-assigned id; the tool's reply message carries it back as ``tool_call_id``."""
    name: str
    """The tool's name, as given in :class:`Tool`."""
    arguments: dict[str, Any]
    """Arguments, parsed and validated against the tool's ``parameters`` schema."""


class Message(_Frozen):
    """One chat message.

    ``tool`` messages answer a tool call and must carry ``tool_call_id``;
    ``assistant`` messages may carry ``tool_calls`` instead of (or with) text.
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls)

    @classmethod
    def tool(cls, tool_call_id: str, content: str) -> Message:
        return cls(role="tool", content=content, tool_call_id=tool_call_id)


class Tool(_Frozen):
    """A function the model may call."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}, "additionalProperties": False}
    )
    """JSON schema of the arguments object."""


class Usage(_Frozen):
    """Token counts as reported by the provider (``None`` when it did not say)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def __add__(self, other: Usage) -> Usage:
        def add(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=add(self.cached_tokens, other.cached_tokens),
            reasoning_tokens=add(self.reasoning_tokens, other.reasoning_tokens),
        )


class ModelSettings(_Frozen):
    """Sampling and limits for one call; ``None`` leaves the provider's default."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    seed: int | None = None
    timeout: float | None = Field(default=None, gt=0)
    """Seconds to wait for one attempt; the provider's default when unset."""


class ModelResponse(_Frozen):
    """What one :meth:`Model.generate` call returns."""

    text: str
    """The assistant's text (for structured output: the JSON document as text)."""
    parsed: Any = None
    """With an output schema: the parsed JSON value, already valid under the schema."""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: FinishReason = "stop"
    model: str = ""
    """The model string that answered, e.g. ``openai:gpt-4.1-mini``."""
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    """Time to first token, for streamed calls."""
    cost_usd: float | None = None
    """Cost where the model's price is known."""

    def to_message(self) -> Message:
        """The assistant message to append to a conversation."""
        return Message.assistant(self.text, self.tool_calls)


class TextDelta(_Frozen):
    """A piece of streamed text."""

    kind: Literal["text"] = "text"
    text: str


class ResponseDone(_Frozen):
    """The last event of a stream, carrying the complete response."""

    kind: Literal["done"] = "done"
    response: ModelResponse


class StreamRestart(_Frozen):
    """The streamed attempt was rejected (e.g. invalid under the schema); a new one follows.

    A consumer that printed earlier deltas should discard them.
    """

    kind: Literal["restart"] = "restart"
    reason: str


StreamEvent = Annotated[TextDelta | StreamRestart | ResponseDone, Field(discriminator="kind")]
