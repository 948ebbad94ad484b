"""The dashboard's numbers, from a real SQLite store with known rows."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from keel.operate.ui.metrics import dashboard, percentile
from keel.store import ModelCallRecord, ModelCalls, open_store

NOW = 1_800_000_000.0


@pytest.fixture
def store(keel_home: Path):
    s = open_store(keel_home)
    yield s
    s.close()


def request(store, *, ago: float, status: int = 200, latency: float = 100.0, ttfb: float | None = 10.0,
            workflow: str | None = "bot", path: str = "/v1/chat/completions", run_status: str | None = None) -> None:
    store.execute("INSERT INTO serve_requests (id, started_at, method, path, route, workflow, status, latency_ms, "
                  "ttfb_ms, streamed, run_id, run_status) VALUES (?, ?, 'POST', ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                  (uuid.uuid4().hex, NOW - ago, path, path, workflow, status, latency, ttfb,
                   None if run_status is None else uuid.uuid4().hex, run_status))


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


def test_requests_per_workflow_errors_are_5xx_and_ui_traffic_is_left_out(store) -> None:
    for i in range(10):
        request(store, ago=60 + i, latency=float(10 * (i + 1)))
    request(store, ago=30, status=500, latency=5.0, workflow="other")
    request(store, ago=30, status=401, latency=1.0, workflow="other")
    request(store, ago=20, workflow=None, path="/ui/api/metrics")  # the dashboard polling itself
    request(store, ago=20, workflow=None, path="/ui/static/app.css")
    request(store, ago=20, workflow=None, path="/healthz")
    request(store, ago=4000, workflow="bot")  # before the range
    d = dashboard(store, range_s=3600, until=NOW, slo_target=0.9)
    assert d.requests.total.count == 12 and d.requests.total.errors == 1
    bot = next(g for g in d.requests.groups if g.key == "bot")
    assert (bot.count, bot.latency_p50, bot.latency_p95, bot.latency_p99) == (10, 50.0, 100.0, 100.0)
    assert bot.first_p50 == 10.0 and bot.per_min == pytest.approx(10 / 60)
    other = next(g for g in d.requests.groups if g.key == "other")
    assert other.error_rate == 0.5
    codes = {}
    for b in d.requests.series:
        for code, n in b.codes.items():
            codes[code] = codes.get(code, 0) + n
    assert codes == {"200": 10, "500": 1, "401": 1}
    assert sum(b.count for b in d.requests.series) == 12 and len(d.requests.series) == 30
    # SLO: 11 good of 12 against 90%: the budget (1.2 requests) is 1/1.2 spent
    assert (d.slo.total, d.slo.good, d.slo.met) == (12, 11, True)
    assert d.slo.budget_left == pytest.approx(1 - (1 / 12) / 0.1)
    assert d.workflows == ["bot", "other"]


def test_a_request_whose_run_failed_is_an_error_whatever_its_status(store) -> None:
    request(store, ago=50, run_status="succeeded")
    request(store, ago=50)  # ran no workflow to its end (or none at all): its status decides
    request(store, ago=40, run_status="failed")  # a stream answered 200, then its run failed
    request(store, ago=40, run_status="waiting")  # waits for a person: not an error
    request(store, ago=30, status=502, run_status="failed")  # a sync completion: counted once
    request(store, ago=30, status=404, workflow="other")  # the caller's
    request(store, ago=20, status=503, workflow="other")
    d = dashboard(store, range_s=300, until=NOW, slo_target=0.5)
    assert (d.requests.total.count, d.requests.total.errors) == (7, 3)
    assert d.requests.total.error_rate == pytest.approx(3 / 7)
    bot = next(g for g in d.requests.groups if g.key == "bot")
    assert (bot.count, bot.errors) == (5, 2)
    assert sum(b.errors for b in d.requests.series) == 3
    codes: dict[str, int] = {}
    for b in d.requests.series:
        for code, n in b.codes.items():
            codes[code] = codes.get(code, 0) + n
    assert codes == {"200": 4, "502": 1, "404": 1, "503": 1}  # the codes chart keeps the HTTP codes
    assert (d.slo.total, d.slo.good, d.slo.met) == (7, 4, True)
    assert d.slo.budget_left == pytest.approx(1 - (3 / 7) / 0.5)
    d = dashboard(store, range_s=300, until=NOW, workflow="bot", slo_target=0.9)
    assert (d.slo.total, d.slo.good, d.slo.met) == (5, 3, False)


def test_filters_and_model_calls(store) -> None:
    request(store, ago=10, workflow="bot")
    request(store, ago=10, workflow="other")
    calls = ModelCalls(store)
    for i, (model, wf) in enumerate((("a", "bot"), ("a", "bot"), ("b", "other"))):
        calls.record(ModelCallRecord(provider="scripted", model=model, status="ok", latency_ms=100.0 * (i + 1),
                                     ttft_ms=20.0, input_tokens=10, output_tokens=20, tags={"workflow": wf},
                                     started_at=NOW - 30))
    d = dashboard(store, range_s=300, until=NOW, workflow="bot")
    assert d.requests.total.count == 1 and d.models.total.count == 2
    assert [g.key for g in d.models.groups] == ["scripted:a"]
    assert d.models.total.tokens == 60 and d.models.total.tokens_per_min == pytest.approx(60 / 5)
    assert d.models.total.first_p50 == 20.0
    assert d.model_names == ["scripted:a", "scripted:b"] and d.workflows == ["bot", "other"]
    d = dashboard(store, range_s=300, until=NOW, model="scripted:b")
    assert d.models.total.count == 1 and d.requests.total.count == 2  # the model filter is for model calls


def test_slo_with_a_latency_threshold_and_no_traffic(store) -> None:
    request(store, ago=10, latency=50.0)
    request(store, ago=10, latency=500.0)
    d = dashboard(store, range_s=300, until=NOW, slo_target=0.99, slo_latency_ms=100.0)
    assert (d.slo.good, d.slo.total, d.slo.current, d.slo.met) == (1, 2, 0.5, False)
    assert d.slo.budget_left == pytest.approx(1 - 0.5 / 0.01)
    empty = dashboard(store, range_s=300, until=NOW - 10_000)
    assert empty.slo.current is None and empty.slo.budget_left is None and empty.requests.total.count == 0


def test_a_long_lived_stream_counts_by_its_time_to_first_byte(store) -> None:
    """An SSE stream (run events, MCP's open stream) held for ten minutes is not a ten-minute
    wait: once it put 603 s into the p99 after a quiet hour."""
    for i in range(9):
        request(store, ago=60 + i, latency=100.0)
    for path, ttfb in (("/mcp/", 40.0), ("/v1/runs/r1/events", None)):  # the second never sent a byte
        store.execute("INSERT INTO serve_requests (id, started_at, method, path, route, workflow, status, latency_ms, "
                      "ttfb_ms, streamed) VALUES (?, ?, 'GET', ?, ?, 'bot', 200, 603000.0, ?, 1)",
                      (uuid.uuid4().hex, NOW - 30, path, path, ttfb))
    d = dashboard(store, range_s=3600, until=NOW, slo_latency_ms=1000.0)
    bot = next(g for g in d.requests.groups if g.key == "bot")
    assert bot.count == 11 and bot.latency_p99 == 100.0 and bot.latency_p50 == 100.0
    assert bot.first_p50 == 10.0
    assert max(b.latency_p99 or 0.0 for b in d.requests.series) == 100.0
    assert (d.slo.good, d.slo.total) == (11, 11)


def test_failed_runs_are_errors_and_user_errors_are_no_model_calls(store) -> None:
    """A run that failed counts as an error even when its request was answered 200; a model
    call that failed with a user error (a model file that does not exist: `keel chat
    local:./typo.gguf`) never reached a provider and lists no failing model."""
    def run(run_id: str, status: str, *, workflow: str = "bot", ago: float = 30) -> None:
        store.execute("INSERT INTO workflow_runs (id, workflow, version, version_id, status, seq, context, trace_id, "
                      "created_at, updated_at, finished_at) VALUES (?, ?, 1, 'v', ?, 0, '{}', ?, ?, ?, ?)",
                      (run_id, workflow, status, run_id, NOW - ago, NOW - ago + 1, NOW - ago + 1))

    request(store, ago=30, status=200)  # the chat request that started the failed run: a 200 stream
    run("r1", "failed")
    run("r2", "succeeded")
    run("r3", "failed", workflow="cli-only")  # a run from the CLI: no request at all
    run("r4", "failed", ago=4000)  # before the range
    calls = ModelCalls(store)
    calls.record(ModelCallRecord(provider="local", model="./typo.gguf", status="error", latency_ms=1.0,
                                 error_class="UnknownModelError", error_message="local model file does not exist",
                                 tags={"workflow": "bot"}, started_at=NOW - 30))
    calls.record(ModelCallRecord(provider="openai", model="gpt-x", status="error", latency_ms=5.0, http_status=503,
                                 error_class="ProviderHTTPError", tags={"workflow": "bot"}, started_at=NOW - 30))
    d = dashboard(store, range_s=3600, until=NOW)
    assert d.runs is not None and (d.runs.total.count, d.runs.total.errors) == (3, 2)
    bot = next(g for g in d.runs.groups if g.key == "bot")
    assert (bot.count, bot.errors, bot.error_rate) == (2, 1, 0.5)
    assert "cli-only" in d.workflows
    assert sum(b.errors for b in d.runs.series) == 2
    assert d.model_names == ["openai:gpt-x"] and d.models.total.count == 1 and d.models.total.errors == 1
    only = dashboard(store, range_s=3600, until=NOW, workflow="cli-only")
    assert (only.runs.total.count, only.runs.total.errors) == (1, 1)
