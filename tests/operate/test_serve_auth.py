"""API keys, scopes and daily caps on a real ``keel serve``; open mode on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.operate.conftest import (
    Server,
    create_key,
    echo3,
    keel,
    publish,
    server_env,
    start_server,
)


def test_missing_and_bad_keys_are_401_with_a_fix(serve: Server) -> None:
    missing = httpx.get(serve.url + "/v1/workflows")
    bad = httpx.get(serve.url + "/v1/workflows", headers={"Authorization": "Bearer keel_sk_00000000_nope"})
    wrong_scheme = httpx.get(serve.url + "/v1/workflows", headers={"Authorization": "Basic abc"})
    for r in (missing, bad, wrong_scheme):
        assert r.status_code == 401
        err = r.json()["error"]
        assert err["type"] == "authentication_error" and err["field"] == "header.Authorization" and err["hint"]
    assert "keel keys create" in missing.json()["error"]["hint"]


def test_a_key_without_scope_gets_403(serve: Server) -> None:
    with serve.client(serve.scoped_key) as c:
        assert c.post("/v1/workflows/echo3/runs", json={"input": "ok"}).json()["output"] == "ok"
        r = c.post("/v1/workflows/other/runs", json={"input": "not mine"})
        assert r.status_code == 403 and "other" in r.json()["error"]["message"]
        assert "--workflow other" in r.json()["error"]["hint"]
        assert [w["name"] for w in c.get("/v1/workflows").json()["data"]] == ["echo3"]
    sdk = openai.OpenAI(base_url=serve.url + "/v1", api_key=serve.scoped_key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="other", messages=[{"role": "user", "content": "hi"}])


def test_a_revoked_key_gets_401(serve: Server) -> None:
    secret = create_key(serve.home, "short-lived", "--workflow", "echo3")
    with serve.client(secret) as c:
        assert c.get("/v1/workflows").status_code == 200
        keel(serve.home, "keys", "revoke", secret.split("_")[2])
        assert c.get("/v1/workflows").status_code == 401


def test_key_daily_token_cap_answers_429_with_retry_after(serve: Server) -> None:
    secret = create_key(serve.home, "capped", "--workflow", "echo3", "--daily-tokens", "5")
    sdk = openai.OpenAI(base_url=serve.url + "/v1", api_key=secret, max_retries=0)
    first = sdk.chat.completions.create(model="echo3", messages=[{"role": "user", "content": "one two three"}])
    assert first.usage.total_tokens >= 5
    with pytest.raises(openai.RateLimitError) as e:
        sdk.chat.completions.create(model="echo3", messages=[{"role": "user", "content": "again"}])
    assert int(e.value.response.headers["retry-after"]) > 0
    assert "daily token cap" in e.value.body["message"] and e.value.body["code"] == "daily_token_cap"


def test_per_end_user_cap_leaves_other_users_alone(serve: Server) -> None:
    secret = create_key(serve.home, "per-user", "--workflow", "echo3", "--user-daily-tokens", "5")
    with serve.client(secret) as c:
        assert c.post("/v1/workflows/echo3/runs", json={"input": "one two three", "user": "alice"}).status_code == 200
        r = c.post("/v1/workflows/echo3/runs", json={"input": "more"}, headers={"X-Keel-User": "alice"})
        assert r.status_code == 429 and "alice" in r.json()["error"]["message"] and r.headers["retry-after"]
        assert c.post("/v1/workflows/echo3/runs", json={"input": "hi", "user": "bob"}).status_code == 200


def test_keys_cli_lists_without_secrets_and_with_last_use(serve: Server) -> None:
    assert httpx.get(serve.url + "/v1/workflows", headers=serve.headers()).status_code == 200
    for _ in range(100):  # last use is recorded by the access-record writer (every 0.5 s): poll
        rows = json.loads(keel(serve.home, "keys", "list", "--json").stdout)
        if next(k for k in rows if k["name"] == "admin")["last_used_at"]:
            break
        time.sleep(0.2)
    assert next(k for k in rows if k["name"] == "admin")["last_used_at"] is not None
    out = keel(serve.home, "keys", "list").stdout
    assert "admin" in out and "scoped" in out and "keel_sk_" not in out and "key_hash" not in json.dumps(rows)


def test_open_mode_on_loopback_without_keys(tmp_path) -> None:
    publish(tmp_path, echo3("echo3"), "echo3")
    server = start_server(tmp_path)
    try:
        r = httpx.post(server.url + "/v1/workflows/echo3/runs", json={"input": "no key needed"})
        assert r.status_code == 200 and r.json()["output"] == "no key needed"
    finally:
        server.stop()


def test_non_loopback_host_without_keys_is_refused(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "keel", "serve", "--host", "0.0.0.0", "--port", "0"],
                       capture_output=True, text=True, timeout=60, env=server_env(tmp_path), cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: refusing to listen on 0.0.0.0") and "keel keys create" in r.stderr
