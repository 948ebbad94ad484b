"""Retries with exponential backoff and full jitter, honouring ``Retry-After``.

Providers translate their client's exceptions into :mod:`keel.errors`; this
module decides which of those are worth another attempt and how long to wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from keel.errors import (
    ProviderError,
    ProviderHTTPError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    RateLimitedError,
)

__all__ = ["RetryPolicy", "is_transient"]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a failed provider call."""

    max_attempts: int = 4
    """Total attempts, the first included; 1 disables retries."""
    base_delay: float = 0.5
    """Seconds before the first retry, doubled on each further one."""
    max_delay: float = 30.0
    """Cap on any single wait, ``Retry-After`` included."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """Injected so tests can use a controllable clock."""

    def delay(self, attempt: int, error: ProviderError) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), self.max_delay)
        ceiling = min(self.base_delay * (2 ** (attempt - 1)), self.max_delay)
        return random.uniform(0, ceiling)  # "full jitter": spreads herds of clients apart


def is_transient(error: BaseException) -> bool:
    """True for failures another attempt may cure: 408/409/429/5xx, timeouts, lost connections."""
    if isinstance(error, RateLimitedError | ProviderTimeoutError | ProviderUnreachableError):
        return True
    if isinstance(error, ProviderHTTPError) and error.status_code is not None:
        return error.status_code in (408, 409) or error.status_code >= 500
    return False
