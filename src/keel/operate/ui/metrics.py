"""Service-health metrics for the dashboard, from the server's access log and the model calls.

Three sources, each cut into the same equal time buckets:

- **requests** — ``serve_requests``, one row per HTTP request ``keel serve`` answered:
  requests per minute, latency p50/p95/p99, time to first byte (for a streamed answer,
  the time to its first token), response codes, error rate, per workflow. A streamed
  answer (Server-Sent Events: run events, streamed completions, ChatKit, MCP's open
  stream) counts in the latency by its time to first byte, not its duration: a stream a
  client keeps open for ten minutes was not a ten-minute wait (one such stream once made
  the p99 read 603 s). A stream that sent no byte at all has no latency. The UI's own
  page, static files and dashboard polling are left out: only API requests and the
  requests that ran a workflow count. An *error* is a 5xx answer (the service's fault), or
  a request whose workflow run ended within it and failed (``run_status``: a streamed
  completion answered 200 before its run failed, a ChatKit or UI chat turn); 4xx answers
  show in the response codes but are the caller's.
- **models** — ``model_calls``, one row per attempt at a model call: calls and tokens
  per minute, latency, time to first token (streamed calls), per model
  (``provider:name``). The workflow a call belongs to is its ``workflow`` tag. A call that
  failed with a user error before it reached any provider (a model file that does not exist,
  a missing API key: any :class:`keel.errors.UserError`) is no model call and is left out, so
  a typo in a model string does not list a "failing model".
- **runs** — ``workflow_runs``, every run started in the range however it was started
  (the server, the UI's chat, the CLI, Python): runs per minute, duration, and *failed
  runs*, per workflow: the dashboard's "Failed runs" figure and its line on the error-rate chart.

The SLO panel counts requests: a request is *good* when it is no error (no 5xx, no failed
run) and, given ``slo_latency_ms``, answered within it. Over the SLO window: the share of good
requests against the target, and how much of the error budget (``1 - target`` of all
requests) is left.

Percentiles are nearest-rank over the raw values, not estimates from histograms: the
store keeps every row, and a range of a day on one machine is small enough.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keel.store import SQLiteStore

__all__ = ["RANGES", "Bucket", "Dashboard", "Group", "Section", "Slo", "Stats", "dashboard", "percentile"]

RANGES: dict[str, float] = {"5m": 300, "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
"""Time ranges the dashboard offers, in seconds."""

_BUCKETS = 30
_UI_NOISE = ("(path LIKE '/ui%' AND workflow IS NULL) OR path IN ('/', '/favicon.ico', '/healthz', '/readyz', "
             "'/docs', '/redoc', '/openapi.json', '/docs/oauth2-redirect')")


def percentile(values: list[float], p: float, *, ordered: bool = False) -> float | None:
    """Nearest-rank percentile ``p`` (0-100) of ``values`` (already sorted when ``ordered``);
    None when there are none."""
    if not values:
        return None
    if not ordered:
        values = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


@dataclass
class _Row:
    at: float
    workflow: str
    model: str
    ok: bool
    code: str
    latency: float | None
    """Milliseconds until the answer was complete; for a stream, until its first byte (None
    when it sent none)."""
    first: float | None
    """Time to first byte (requests) or first token (model calls), milliseconds."""
    tokens: int
    cost: float


@dataclass(kw_only=True)
class Stats:
    """What a bucket and a group both report about their rows."""

    count: int = 0
    errors: int = 0
    tokens: int = 0
    """Input + output tokens."""
    per_min: float = 0.0
    """Requests (or model calls) per minute."""
    tokens_per_min: float = 0.0
    latency_p50: float | None = None
    """Milliseconds."""
    latency_p95: float | None = None
    latency_p99: float | None = None
    first_p50: float | None = None
    """Time to first byte / token, milliseconds."""
    first_p95: float | None = None


@dataclass(kw_only=True)
class Bucket(Stats):
    """One slice of the range."""

    start: float
    """Unix time the bucket starts at."""
    codes: dict[str, int] = field(default_factory=dict)
    """Rows per response code."""


@dataclass(kw_only=True)
class Group(Stats):
    """Totals over the range for one workflow or one model (or ``all``)."""

    key: str
    error_rate: float = 0.0
    cost_usd: float = 0.0


@dataclass
class Section:
    """One source over the range: totals, the time series and the groups."""

    total: Group
    series: list[Bucket]
    groups: list[Group]
    """Per workflow (requests) or per model (model calls), busiest first."""


@dataclass
class Slo:
    """The SLO panel: good requests against a target over a window."""

    target: float
    """E.g. 0.99: 99% of requests should be good."""
    window_s: float
    latency_ms: float | None
    """When set, a good request must also answer within this many milliseconds."""
    total: int
    good: int
    current: float | None
    """good / total over the window (None with no requests). A request is good unless it answered 5xx
    or its workflow run failed (or, given ``latency_ms``, it was slower)."""
    budget_left: float | None
    """Share of the error budget not spent yet: 1 is untouched, 0 spent, below 0 overspent."""
    met: bool | None


@dataclass
class Dashboard:
    """Everything the service-health page draws."""

    since: float
    until: float
    bucket_s: float
    workflow: str | None
    model: str | None
    requests: Section
    models: Section
    slo: Slo
    workflows: list[str]
    """Every workflow seen in the range (for the filter), before filtering."""
    model_names: list[str]
    runs: Section | None = None
    """Runs started in the range (``workflow_runs``): an error is a failed run; per workflow."""


def _requests(store: SQLiteStore, since: float, until: float) -> list[_Row]:
    rows = store.query(
        "SELECT started_at, workflow, status, latency_ms, ttfb_ms, streamed, input_tokens, output_tokens, run_status "
        f"FROM serve_requests WHERE started_at >= ? AND started_at < ? AND NOT ({_UI_NOISE}) ORDER BY started_at",
        (since, until))
    # An error: the service's fault (5xx), or the run the request ran failed, whatever its status
    # (a stream is answered 200 before its run ends). 4xx is the caller's.
    return [_Row(at=r["started_at"], workflow=r["workflow"] or "(no workflow)", model="",
                 ok=r["status"] < 500 and r["run_status"] != "failed",
                 code=str(r["status"]), latency=r["ttfb_ms"] if r["streamed"] else float(r["latency_ms"]),
                 first=r["ttfb_ms"],
                 tokens=int(r["input_tokens"] or 0) + int(r["output_tokens"] or 0), cost=0.0) for r in rows]


def _code(row: dict[str, Any]) -> str:
    if row["http_status"]:
        return str(row["http_status"])
    if row["status"] == "ok":
        return "ok"
    return row["error_class"] or row["status"]


def _user_error_classes() -> frozenset[str]:
    """Names of every :class:`~keel.errors.UserError` class: a model call that failed with one
    never reached a provider (a typo, a missing file or key)."""
    from keel.errors import UserError

    names, todo = set(), [UserError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(names)


def _runs(store: SQLiteStore, since: float, until: float) -> list[_Row]:
    rows = store.query(
        "SELECT created_at, finished_at, workflow, status FROM workflow_runs WHERE created_at >= ? AND created_at < ? "
        "ORDER BY created_at", (since, until))
    return [_Row(at=r["created_at"], workflow=r["workflow"], model="", ok=r["status"] != "failed", code=r["status"],
                 latency=(r["finished_at"] - r["created_at"]) * 1000 if r["finished_at"] else None, first=None,
                 tokens=0, cost=0.0) for r in rows]


def _model_calls(store: SQLiteStore, since: float, until: float) -> list[_Row]:
    rows = store.query(
        "SELECT started_at, provider, model, status, http_status, error_class, latency_ms, ttft_ms, "
        "input_tokens, output_tokens, cost_usd, tags FROM model_calls WHERE started_at >= ? AND started_at < ? "
        "ORDER BY started_at", (since, until))
    out = []
    not_calls = _user_error_classes()
    for r in rows:
        if r["status"] != "ok" and r["error_class"] in not_calls:
            continue
        tags = json.loads(r["tags"]) if r["tags"] else {}
        out.append(_Row(
            at=r["started_at"], workflow=tags.get("workflow") or "(direct calls)",
            model=f"{r['provider']}:{r['model']}", ok=r["status"] == "ok", code=_code(r),
            latency=float(r["latency_ms"]), first=r["ttft_ms"],
            tokens=int(r["input_tokens"] or 0) + int(r["output_tokens"] or 0), cost=float(r["cost_usd"] or 0.0)))
    return out


def _stats(rows: list[_Row], minutes: float) -> dict[str, Any]:
    """The :class:`Stats` fields of ``rows`` spread over ``minutes``."""
    lat = sorted(c.latency for c in rows if c.latency is not None)
    firsts = sorted(c.first for c in rows if c.first is not None)
    tokens = sum(c.tokens for c in rows)
    return {"count": len(rows), "errors": sum(not c.ok for c in rows), "tokens": tokens,
            "per_min": len(rows) / minutes, "tokens_per_min": tokens / minutes,
            "latency_p50": percentile(lat, 50, ordered=True), "latency_p95": percentile(lat, 95, ordered=True),
            "latency_p99": percentile(lat, 99, ordered=True), "first_p50": percentile(firsts, 50, ordered=True),
            "first_p95": percentile(firsts, 95, ordered=True)}


def _group(key: str, rows: list[_Row], minutes: float) -> Group:
    stats = _stats(rows, minutes)
    return Group(key=key, error_rate=stats["errors"] / len(rows) if rows else 0.0,
                 cost_usd=round(sum(c.cost for c in rows), 6), **stats)


def _section(rows: list[_Row], key: Callable[[_Row], str], since: float, range_s: float, buckets: int) -> Section:
    bucket_s = range_s / buckets
    grouped: list[list[_Row]] = [[] for _ in range(buckets)]
    for c in rows:
        grouped[min(buckets - 1, int((c.at - since) / bucket_s))].append(c)
    series = []
    for i, cs in enumerate(grouped):
        codes: dict[str, int] = {}
        for c in cs:
            codes[c.code] = codes.get(c.code, 0) + 1
        series.append(Bucket(start=since + i * bucket_s, codes=codes, **_stats(cs, bucket_s / 60)))
    by: dict[str, list[_Row]] = {}
    for c in rows:
        by.setdefault(key(c), []).append(c)
    groups = sorted((_group(k, v, range_s / 60) for k, v in by.items()), key=lambda g: (-g.count, g.key))
    return Section(total=_group("all", rows, range_s / 60), series=series, groups=groups)


def dashboard(store: SQLiteStore, *, range_s: float = 3600, until: float | None = None,
              workflow: str | None = None, model: str | None = None, slo_target: float = 0.99,
              slo_window_s: float | None = None, slo_latency_ms: float | None = None,
              buckets: int = _BUCKETS, visible: Callable[[str], bool] | None = None) -> Dashboard:
    """The dashboard for the ``range_s`` seconds before ``until`` (default: now).

    ``workflow`` filters both sources; ``model`` (``provider:name``) filters the model
    calls. The lists of workflows and models seen are not filtered. The SLO window
    defaults to the range. ``visible(workflow)`` (e.g. an API key's scope) leaves out the
    rows of every workflow it refuses, everywhere.
    """
    until = time.time() if until is None else until
    since = until - range_s
    window = slo_window_s or range_s
    all_requests = _requests(store, min(since, until - window), until)
    calls = _model_calls(store, since, until)
    runs = _runs(store, since, until)
    if visible is not None:
        all_requests = [c for c in all_requests if visible(c.workflow)]
        calls = [c for c in calls if visible(c.workflow)]
        runs = [c for c in runs if visible(c.workflow)]
    seen_workflows = sorted({c.workflow for c in all_requests if c.at >= since and c.workflow != "(no workflow)"}
                            | {c.workflow for c in calls if c.workflow != "(direct calls)"}
                            | {c.workflow for c in runs})
    seen_models = sorted({c.model for c in calls})
    if workflow:
        all_requests = [c for c in all_requests if c.workflow == workflow]
        calls = [c for c in calls if c.workflow == workflow]
        runs = [c for c in runs if c.workflow == workflow]
    if model:
        calls = [c for c in calls if c.model == model]
    requests = [c for c in all_requests if c.at >= since]

    in_window = [c for c in all_requests if c.at >= until - window]
    good = sum(c.ok and (slo_latency_ms is None or c.latency is None or c.latency <= slo_latency_ms)
               for c in in_window)
    current = good / len(in_window) if in_window else None
    budget = 1 - slo_target
    budget_left = None if current is None else 1 - (1 - current) / budget
    slo = Slo(target=slo_target, window_s=window, latency_ms=slo_latency_ms, total=len(in_window), good=good,
              current=current, budget_left=budget_left, met=None if current is None else current >= slo_target)

    return Dashboard(
        since=since, until=until, bucket_s=range_s / buckets, workflow=workflow, model=model,
        requests=_section(requests, lambda c: c.workflow, since, range_s, buckets),
        models=_section(calls, lambda c: c.model, since, range_s, buckets),
        slo=slo, workflows=seen_workflows, model_names=seen_models,
        runs=_section(runs, lambda c: c.workflow, since, range_s, buckets))
