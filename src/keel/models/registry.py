"""Model strings: ``provider:model`` selects both the provider and the model.

=======================================  ==============================================
``openai:gpt-4.1-mini``                  OpenAI (``OPENAI_API_KEY``); ``?api=responses``
                                         uses the Responses API
``openrouter:anthropic/claude-sonnet-4`` OpenRouter (``OPENROUTER_API_KEY``)
``ollama:llama3.2``                      Ollama at ``OLLAMA_HOST`` (default localhost:11434)
``lmstudio:qwen2.5-7b-instruct``         LM Studio's server (localhost:1234)
``openai-compatible:URL#MODEL``          any OpenAI-compatible server: vLLM, llama.cpp's
                                         server, LiteLLM, ...; ``?structured=json_object``
                                         forces a structured-output mode
``local:path/to/model.gguf``             llama.cpp in-process (``pip install 'keel[local]'``)
``scripted:NAME``                        the scripted test model (:mod:`keel.testing`)
``extractive`` (``extractive:default``)  no model: quotes the sentences of the request's
                                         numbered sources that answer it, with citations
                                         (:mod:`keel.models.extractive`)
``router:NAME``                          routes each request between two models by a policy
                                         trained with ``keel router train``
                                         (:mod:`keel.models.router`)
``hf:path/to/folder``                    a Hugging Face causal LM with transformers on the
                                         CPU, e.g. a ``keel distill train`` student
=======================================  ==============================================

An alias from ``[models]`` in ``keel.toml`` may stand in for any of them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from keel.config import Settings, get_settings
from keel.errors import UnknownModelError
from keel.models._retry import RetryPolicy
from keel.models.base import Model

__all__ = ["PREFIXES", "ModelSpec", "get_model", "parse_model_string"]

PREFIXES = ("openai", "openrouter", "ollama", "lmstudio", "openai-compatible", "local", "scripted", "extractive",
            "router", "hf")

EXAMPLES = (
    "openai:gpt-4.1-mini",
    "ollama:llama3.2",
    "openai-compatible:http://127.0.0.1:8080/v1#my-model",
    "local:./models/qwen2.5-0.5b-instruct-q4_k_m.gguf",
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model string."""

    prefix: str
    name: str
    base_url: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)


_OPTIONS = {"api": ("chat", "responses"), "structured": ("json_schema", "json_object", "prompt")}


def parse_model_string(model: str) -> ModelSpec:
    """Split a model string into its parts; raise :class:`UnknownModelError` if malformed."""
    model = model.strip()
    if model == "extractive":  # the built-in answerer needs no name
        model = "extractive:default"
    prefix, sep, rest = model.partition(":")
    if not sep or not rest:
        # Aliases were looked up before this (get_model, validation): a bare name is either a
        # model string missing its provider or an alias nobody defined.
        raise UnknownModelError(
            f"model string {model!r} has no provider prefix, and no alias {model!r} is defined under [models] "
            "(in ./keel.toml or $KEEL_HOME/keel.toml)",
            hint=f"write PROVIDER:MODEL, e.g. {EXAMPLES[0]} (providers: {', '.join(PREFIXES)}), or define the alias "
                 f"in keel.toml: [models] {model} = \"{EXAMPLES[0]}\"",
        )
    if prefix not in PREFIXES:
        close = difflib.get_close_matches(prefix, PREFIXES, n=1)
        raise UnknownModelError(
            f"unknown provider {prefix!r} in model string {model!r}",
            hint=(f"did you mean {close[0]}:{rest}? " if close else "")
            + f"providers: {', '.join(PREFIXES)}",
        )
    options: list[tuple[str, str]] = []
    if prefix not in ("local", "scripted", "extractive", "router", "hf") and "?" in rest:
        rest, _, query = rest.rpartition("?")
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            if key not in _OPTIONS or value not in _OPTIONS[key]:
                allowed = "; ".join(f"{k}={'|'.join(v)}" for k, v in _OPTIONS.items())
                raise UnknownModelError(f"unknown option {pair!r} in model string {model!r}",
                                        hint=f"options: {allowed}")
            options.append((key, value))
    base_url = None
    if prefix == "openai-compatible":
        base_url, sep, rest = rest.rpartition("#")
        if not sep or not base_url.startswith(("http://", "https://")) or not rest:
            raise UnknownModelError(
                f"model string {model!r} needs a base URL and a model name",
                hint="write openai-compatible:http://HOST:PORT/v1#MODEL",
            )
    if not rest:
        raise UnknownModelError(f"model string {model!r} names no model", hint=f"e.g. {EXAMPLES[0]}")
    return ModelSpec(prefix, rest, base_url, tuple(options))


def _retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.max_retries + 1)


def _http_model(spec: ModelSpec, settings: Settings) -> Model:
    from keel.models.openai_compat import OpenAICompatibleModel
    from keel.models.providers import provider_for

    provider = provider_for(spec.prefix, settings, base_url=spec.base_url)
    provider.check_credentials()
    return OpenAICompatibleModel(
        spec.name, provider, api=spec.option("api", "chat") or "chat",
        structured=spec.option("structured"), retry=_retry_policy(settings), prices=settings.prices,
    )


def _local_model(spec: ModelSpec, settings: Settings) -> Model:
    from keel.models.local import LocalModel
    from keel.models.packaged import local_path

    return LocalModel(local_path(spec.name), retry=_retry_policy(settings))  # a path, or a name: local:smollm2-135m


def _scripted_model(spec: ModelSpec, settings: Settings) -> Model:
    from keel.models.scripted import get_script

    return get_script(spec.name)


def _router_model(spec: ModelSpec, settings: Settings) -> Model:
    from keel.models.router import RouterModel

    return RouterModel(spec.name, settings=settings)


def _hf_model(spec: ModelSpec, settings: Settings) -> Model:
    from keel.models.hf import HFModel

    return HFModel(spec.name, retry=_retry_policy(settings))


def _extractive_model(spec: ModelSpec, settings: Settings) -> Model:
    from keel.models.extractive import ExtractiveModel

    return ExtractiveModel(spec.name)


_FACTORIES: dict[str, Callable[[ModelSpec, Settings], Model]] = {
    "openai": _http_model,
    "openrouter": _http_model,
    "ollama": _http_model,
    "lmstudio": _http_model,
    "openai-compatible": _http_model,
    "local": _local_model,
    "scripted": _scripted_model,
    "extractive": _extractive_model,
    "router": _router_model,
    "hf": _hf_model,
}


def get_model(model: str, *, settings: Settings | None = None) -> Model:
    """The :class:`Model` a model string (or an alias of one) names.

    Raises :class:`UnknownModelError` for a malformed string and
    :class:`MissingCredentialsError` when the provider needs a key that is not set.
    """
    settings = settings or get_settings()
    spec = parse_model_string(settings.resolve_alias(model))
    return _FACTORIES[spec.prefix](spec, settings)
