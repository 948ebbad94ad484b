"""Models: one interface to every provider, with strict structured outputs.

>>> from keel.models import get_model
>>> model = get_model("openai:gpt-4.1-mini")
>>> response = await model.generate("Name a colour", output_schema={...})
>>> response.parsed
"""

from keel.models._recording import call_context, use_recorder
from keel.models._retry import RetryPolicy
from keel.models.base import Model, ModelCall, ModelRequest
from keel.models.registry import PREFIXES, get_model, parse_model_string
from keel.models.types import (
    FinishReason,
    Message,
    ModelResponse,
    ModelSettings,
    ResponseDone,
    StreamEvent,
    StreamRestart,
    TextDelta,
    Tool,
    ToolCall,
    Usage,
)

__all__ = [
    "PREFIXES",
    "FinishReason",
    "Message",
    "Model",
    "ModelCall",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ResponseDone",
    "RetryPolicy",
    "StreamEvent",
    "StreamRestart",
    "TextDelta",
    "Tool",
    "ToolCall",
    "Usage",
    "call_context",
    "get_model",
    "parse_model_string",
    "use_recorder",
]
