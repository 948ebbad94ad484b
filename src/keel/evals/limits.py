"""Per-provider rate limits shared by targets and judges in one eval run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

__all__ = ["ProviderLimits"]


class _Bucket:
    """A token bucket: ``rate`` requests per minute, bursts up to ``burst``."""

    def __init__(self, per_minute: float, burst: float | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, min(per_minute / 60.0, 10.0))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class ProviderLimits:
    """``async with limits.limit("openai"):`` waits for the provider's rate limit and a
    free slot (at most ``per_provider_concurrency`` calls in flight per provider)."""

    def __init__(self, per_minute: Mapping[str, float] | None = None, *, per_provider_concurrency: int = 8) -> None:
        self._per_minute = dict(per_minute or {})
        self._concurrency = per_provider_concurrency
        self._buckets: dict[str, _Bucket] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def limit(self, provider: str) -> AsyncIterator[None]:
        slots = self._slots.get(provider)
        if slots is None:
            slots = self._slots[provider] = asyncio.Semaphore(self._concurrency)
        async with slots:
            rate = self._per_minute.get(provider)
            if rate:
                bucket = self._buckets.get(provider)
                if bucket is None:
                    bucket = self._buckets[provider] = _Bucket(rate)
                await bucket.take()
            yield
