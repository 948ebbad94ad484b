"""Global limits (issue 17): per-key and per-user rate limits and daily caps hold across two real
``keel serve`` processes sharing one store (SQLite under one KEEL_HOME, and PostgreSQL)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.operate.conftest import echo3, keel, start_server
from tests.operate.workers import env, publish_to


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else None


def _key(home: Path, url: str | None, *args: str) -> str:
    extra = {"KEEL_STORE_URL": url} if url else None
    return json.loads(keel(home, "keys", "create", "k", "--workflow", "*", *args, "--json", env=extra).stdout)["secret"]


def _away_from_a_minute_boundary() -> None:
    """Counters are per minute: start where the whole test fits in one window."""
    if time.time() % 60 > 45:
        time.sleep(60 - time.time() % 60 + 0.5)


def test_a_per_key_and_a_per_user_rate_limit_hold_across_two_servers(tmp_path: Path, url: str | None) -> None:
    home = tmp_path / "home"
    home.mkdir()
    publish_to(home, echo3("echo3"), "echo3", url=url)
    secret = _key(home, url)
    environ = env(home, tmp_path, {"KEEL_SERVE_KEY_REQUESTS_PER_MINUTE": "4",
                                   "KEEL_SERVE_USER_REQUESTS_PER_MINUTE": "2"}, url=url)
    a = start_server(home, env=environ)
    b = start_server(home, env=environ)
    try:
        auth = {"Authorization": f"Bearer {secret}"}
        _away_from_a_minute_boundary()

        def run(server, user: str) -> httpx.Response:
            return httpx.post(f"{server.url}/v1/workflows/echo3/runs", json={"input": "hi", "user": user},
                              headers=auth, timeout=60)

        # the end user's limit (2 a minute) counts both servers' requests
        assert run(a, "ann").status_code == 200
        assert run(b, "ann").status_code == 200
        refused = run(a, "ann")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limit" and int(refused.headers["Retry-After"]) >= 1
        # the key's limit (4 a minute): ann's 3 requests (the refused one counted) and one more
        assert run(b, "bob").status_code == 200
        refused = run(b, "cat")
        assert refused.status_code == 429 and "API key" in refused.json()["error"]["message"], refused.text
        assert run(a, "dan").status_code == 429
        # OpenAI-compatible requests are counted too
        r = httpx.post(f"{a.url}/v1/chat/completions", headers=auth, timeout=60,
                       json={"model": "echo3", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 429
    finally:
        a.stop()
        b.stop()
    assert "Traceback" not in a.log_text() + b.log_text()


def test_a_daily_token_cap_spent_on_one_server_is_enforced_by_the_other(tmp_path: Path, url: str | None) -> None:
    home = tmp_path / "home"
    home.mkdir()
    publish_to(home, echo3("echo3"), "echo3", url=url)
    secret = _key(home, url, "--daily-tokens", "5")
    environ = env(home, tmp_path, url=url)
    a = start_server(home, env=environ)
    b = start_server(home, env=environ)
    try:
        auth = {"Authorization": f"Bearer {secret}"}
        r = httpx.post(f"{a.url}/v1/workflows/echo3/runs", json={"input": "one two three four five six"},
                       headers=auth, timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["total_tokens"] >= 5, r.text
        time.sleep(0.5)  # the usage row joins server A's next group commit
        r = httpx.post(f"{b.url}/v1/workflows/echo3/runs", json={"input": "again"}, headers=auth, timeout=60)
        assert r.status_code == 429 and r.json()["error"]["code"] == "daily_token_cap", r.text
    finally:
        a.stop()
        b.stop()
