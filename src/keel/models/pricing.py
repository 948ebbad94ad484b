"""Known prices, so every recorded call can carry its cost.

Prices are US dollars per million tokens, as published by the providers; a
``[prices."provider:model"]`` table in ``keel.toml`` overrides or extends them.
A model with no known price records ``cost_usd = NULL``, never a guess.
Local and scripted models cost nothing.
"""

from __future__ import annotations

from keel.config import Price
from keel.models.types import Usage

__all__ = ["BUILTIN_PRICES", "cost_of"]

BUILTIN_PRICES: dict[str, Price] = {
    "openai:gpt-4.1": Price(input=2.00, output=8.00, cached_input=0.50),
    "openai:gpt-4.1-mini": Price(input=0.40, output=1.60, cached_input=0.10),
    "openai:gpt-4.1-nano": Price(input=0.10, output=0.40, cached_input=0.025),
    "openai:gpt-4o": Price(input=2.50, output=10.00, cached_input=1.25),
    "openai:gpt-4o-mini": Price(input=0.15, output=0.60, cached_input=0.075),
    "openai:o4-mini": Price(input=1.10, output=4.40, cached_input=0.275),
    "openai:gpt-5": Price(input=1.25, output=10.00, cached_input=0.125),
    "openai:gpt-5-mini": Price(input=0.25, output=2.00, cached_input=0.025),
    "openai:gpt-5-nano": Price(input=0.05, output=0.40, cached_input=0.005),
}

_FREE_PROVIDERS = {"local", "scripted", "ollama", "lmstudio"}


def cost_of(model_string: str, usage: Usage, prices: dict[str, Price] | None = None) -> float | None:
    """Cost in US dollars of ``usage`` on ``model_string``, or ``None`` if the price is unknown."""
    provider = model_string.split(":", 1)[0]
    if provider in _FREE_PROVIDERS:
        return 0.0
    price = (prices or {}).get(model_string) or BUILTIN_PRICES.get(model_string)
    if price is None:
        return None
    cached = usage.cached_tokens or 0
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    uncached = max(usage.input_tokens - cached, 0)
    total = uncached * price.input + cached * cached_rate + usage.output_tokens * price.output
    return round(total / 1_000_000, 10)
