"""Keel: build, run, evaluate, optimize and operate AI agents, with any model.

The package is laid out by pillar::

    keel.models      one Model interface to every provider, strict structured outputs
    keel.store       the embedded store (SQLite under KEEL_HOME; PostgreSQL later)
    keel.config      settings: KEEL_HOME, .env, keel.toml
    keel.workflows   agent workflows (Agent Builder's node vocabulary)
    keel.context     the context engine: ingest, hybrid retrieval, rerank, assembly
    keel.evals       datasets, graders, trace grading, CI gates
    keel.optimize    prompt optimization, routing, distillation
    keel.operate     traces, dashboards, budgets, the HTTP server
    keel.testing     the scripted model and a tiny local GGUF for your tests

The names below are the curated public API; everything else may move.
"""

from keel._version import __version__
from keel.config import Settings, get_settings
from keel.errors import (
    KeelError,
    ModelBehaviorError,
    ProviderError,
    StructuredOutputError,
    UserError,
)
from keel.models import (
    Message,
    Model,
    ModelResponse,
    ModelSettings,
    Tool,
    ToolCall,
    Usage,
    get_model,
)
from keel.store import open_store

__all__ = [
    "KeelError",
    "Message",
    "Model",
    "ModelBehaviorError",
    "ModelResponse",
    "ModelSettings",
    "ProviderError",
    "Settings",
    "StructuredOutputError",
    "Tool",
    "ToolCall",
    "Usage",
    "UserError",
    "__version__",
    "get_model",
    "get_settings",
    "open_store",
]
