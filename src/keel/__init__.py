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

from typing import TYPE_CHECKING

from keel._version import __version__

# The public names load on first use (PEP 562): `import keel.errors` or a CLI command
# then costs only what it uses, not pydantic-settings, jsonschema and the store
# (about half a second of a `keel context search`).
_LAZY = {
    "Settings": "keel.config", "get_settings": "keel.config",
    "KeelError": "keel.errors", "ModelBehaviorError": "keel.errors", "ProviderError": "keel.errors",
    "StructuredOutputError": "keel.errors", "UserError": "keel.errors",
    "Message": "keel.models", "Model": "keel.models", "ModelResponse": "keel.models",
    "ModelSettings": "keel.models", "Tool": "keel.models", "ToolCall": "keel.models", "Usage": "keel.models",
    "get_model": "keel.models",
    "tool": "keel.workflows.tools",
    "open_store": "keel.store",
}

if TYPE_CHECKING:
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
    from keel.workflows.tools import tool


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "tool",
]
