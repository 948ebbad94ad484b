"""Daily caps on tokens and cost, per API key and per end user.

Usage is counted from what a run really cost: the ``model_calls`` rows of its trace
(tokens and cost as the provider reported them). Each served run adds one row to
``serve_usage``; before a run starts, today's sums (UTC day) are checked against the
caps. Caps are checked *before* a run, so runs already in flight finish: a burst can
overshoot a cap by what the concurrent runs use. A served run's usage row is committed
with the server's next group commit (the same turn of the event loop), not alone.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from keel.ids import new_id
from keel.operate.server.errors import ApiError
from keel.operate.server.keys import ApiKey
from keel.store import SQLiteStore

__all__ = ["Budgets", "Usage"]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def seconds_to_midnight_utc() -> int:
    now = dt.datetime.now(dt.UTC)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()) + 1)


class Budgets:
    """Check caps before a run; record usage after it."""

    def __init__(self, store: SQLiteStore, *, user_daily_tokens: int | None = None,
                 user_daily_cost_usd: float | None = None) -> None:
        self.store = store
        self.user_daily_tokens = user_daily_tokens
        self.user_daily_cost_usd = user_daily_cost_usd
        self.rates = None
        """A :class:`~keel.operate.server.rates.RateLimits` that :meth:`check` counts each request in."""

    def _spent(self, key_id: str | None, end_user: str | None) -> tuple[int, float]:
        sql = ("SELECT COALESCE(SUM(input_tokens + output_tokens), 0) AS t, COALESCE(SUM(cost_usd), 0) AS c"
               " FROM serve_usage WHERE day = ? AND COALESCE(key_id, '') = ?")
        params: list = [_today(), key_id or ""]
        if end_user is not None:
            sql += " AND end_user = ?"
            params.append(end_user)
        row = self.store.query(sql, tuple(params))[0]
        return int(row["t"]), float(row["c"])

    def check(self, key: ApiKey | None, end_user: str | None) -> None:
        """Raise a 429 :class:`ApiError` (with Retry-After) when a cap or a rate limit is reached."""
        key_id = key.id if key else None
        if self.rates is not None:
            self.rates.hit(key_id, end_user)
        if key is not None and (key.daily_tokens is not None or key.daily_cost_usd is not None):
            tokens, cost = self._spent(key_id, None)
            self._over("key " + key.id, tokens, cost, key.daily_tokens, key.daily_cost_usd)
        if end_user is not None:
            cap_t = key.user_daily_tokens if key and key.user_daily_tokens is not None else self.user_daily_tokens
            cap_c = (key.user_daily_cost_usd if key and key.user_daily_cost_usd is not None
                     else self.user_daily_cost_usd)
            if cap_t is not None or cap_c is not None:
                tokens, cost = self._spent(key_id, end_user)
                self._over(f"end user {end_user!r}", tokens, cost, cap_t, cap_c)

    @staticmethod
    def _over(who: str, tokens: int, cost: float, cap_tokens: int | None, cap_cost: float | None) -> None:
        wait = seconds_to_midnight_utc()
        if cap_tokens is not None and tokens >= cap_tokens:
            raise ApiError(429, f"daily token cap reached for {who}: {tokens} of {cap_tokens} tokens used today (UTC)",
                           type="rate_limit_error", code="daily_token_cap",
                           hint=f"retry after {wait} s (midnight UTC), or raise the cap with a new key",
                           headers={"Retry-After": str(wait)})
        if cap_cost is not None and cost >= cap_cost:
            raise ApiError(429, f"daily cost cap reached for {who}: ${cost:.4f} of ${cap_cost:.4f} used today (UTC)",
                           type="rate_limit_error", code="daily_cost_cap",
                           hint=f"retry after {wait} s (midnight UTC), or raise the cap with a new key",
                           headers={"Retry-After": str(wait)})

    def usage_of_trace(self, trace_id: str) -> Usage:
        row = self.store.query(
            "SELECT COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(output_tokens), 0) AS o,"
            " COALESCE(SUM(cost_usd), 0) AS c FROM model_calls WHERE trace_id = ?", (trace_id,))[0]
        return Usage(int(row["i"]), int(row["o"]), float(row["c"]))

    def recorded_for_run(self, run_id: str) -> Usage:
        row = self.store.query(
            "SELECT COALESCE(SUM(input_tokens), 0) AS i, COALESCE(SUM(output_tokens), 0) AS o,"
            " COALESCE(SUM(cost_usd), 0) AS c FROM serve_usage WHERE run_id = ?", (run_id,))[0]
        return Usage(int(row["i"]), int(row["o"]), float(row["c"]))

    def record(self, *, key: ApiKey | None, end_user: str | None, run_id: str | None, workflow: str,
               usage: Usage) -> None:
        """Add a run's usage. On an event loop the row joins the loop's next group commit
        (:class:`~keel.store.group.CommitGroup`) instead of committing alone."""
        row = (new_id(), key.id if key else None, end_user, _today(), run_id, workflow,
               usage.input_tokens, usage.output_tokens, usage.cost_usd, time.time())
        try:
            group = self.store.commit_group()
        except RuntimeError:  # no running event loop
            self.store.execute(_INSERT_USAGE, row)
            return
        group.submit(lambda: self.store.execute(_INSERT_USAGE, row))


_INSERT_USAGE = ("INSERT INTO serve_usage (id, key_id, end_user, day, run_id, workflow, input_tokens,"
                 " output_tokens, cost_usd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
