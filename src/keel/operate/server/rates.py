"""Request rate limits per API key and per end user that hold across every server of a store.

Each request that starts work adds one to its key's and its end user's counter for the
current minute, in the store, with one atomic statement
(``INSERT ... ON CONFLICT DO UPDATE SET n = n + 1 RETURNING n``): two servers behind a
load balancer count into the same row, so a limit of 60 per minute is 60 in all, not
60 per server. Fixed windows: a client may send up to twice the limit across a window
boundary, the usual price of one row per window. Rows of past windows are deleted now
and then by the server that opens a new window.
"""

from __future__ import annotations

import time
from typing import Any

from keel.operate.server.errors import ApiError

__all__ = ["RateLimits"]

WINDOW = 60
"""Seconds per window."""


class RateLimits:
    """Count requests per key and per end user; raise 429 past ``per_key`` / ``per_user``."""

    def __init__(self, store: Any, *, per_key: int | None, per_user: int | None) -> None:
        self.store = store
        self.per_key = per_key
        self.per_user = per_user
        self._pruned = 0

    @property
    def enabled(self) -> bool:
        return self.per_key is not None or self.per_user is not None

    def hit(self, key_id: str | None, end_user: str | None) -> None:
        """Count one request; raise a 429 :class:`ApiError` when it is over a limit."""
        if not self.enabled:
            return
        now = time.time()
        window = int(now // WINDOW) * WINDOW
        checks = []
        if self.per_key is not None:
            checks.append((f"key:{key_id or '-'}", self.per_key, f"API key {key_id}" if key_id else "open mode"))
        if self.per_user is not None and end_user is not None:
            checks.append((f"user:{key_id or '-'}:{end_user}", self.per_user, f"end user {end_user!r}"))
        with self.store.transaction():
            counts = [int(self.store.query(
                "INSERT INTO rate_counters (bucket, window_start, n) VALUES (?, ?, 1)"
                " ON CONFLICT (bucket, window_start) DO UPDATE SET n = rate_counters.n + 1 RETURNING n",
                (bucket, window))[0]["n"]) for bucket, _, _ in checks]
            if window != self._pruned:
                self._pruned = window
                self.store.execute("DELETE FROM rate_counters WHERE window_start < ?", (window - WINDOW,))
        for (_, limit, who), n in zip(checks, counts, strict=True):
            if n > limit:
                wait = max(1, int(window + WINDOW - now) + 1)
                raise ApiError(429, f"rate limit reached for {who}: {limit} requests per minute, across all servers",
                               type="rate_limit_error", code="rate_limit",
                               hint=f"retry after {wait} s, or ask the operator to raise "
                                    "key_requests_per_minute / user_requests_per_minute ([serve] in keel.toml)",
                               headers={"Retry-After": str(wait)})
