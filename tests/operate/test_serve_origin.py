"""Open mode (no API keys) against the web pages its operator visits, on a real ``keel serve``:
the Host check (DNS rebinding), the same-origin and JSON checks on state-changing requests,
exact ids, the banner, the OpenAI SDK's placeholder key, and a last revoked key that does
not reopen a running server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import openai
import pytest

from tests.operate.conftest import (
    APPROVE,
    Server,
    create_key,
    echo3,
    keel,
    publish,
    server_env,
    start_server,
)

EVIL = "http://evil.example"
WILDCARDS = ["%", "_", "%%", "_%", "%_", "a%", "0%", "f%", "________%", "%" * 16, "_" * 32, "0_______%",
             "%0", "[0-9a-f]%", "*", "%25"]


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("open-home")
    publish(home, echo3("echo3"), "echo3")
    publish(home, APPROVE, "approve")
    server = start_server(home)
    try:
        yield server
    finally:
        server.stop()


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text
    err = r.json()["error"]
    assert err["message"] and err["hint"] and err["field"]
    return err


def _pending(server: Server) -> list[str]:
    return [a["id"] for a in httpx.get(server.url + "/v1/approvals").json()["data"]]


def test_the_banner_says_the_server_is_open(open_server: Server) -> None:
    log = open_server.log_text()
    assert "open mode: no API keys, so only this machine can call it" in log and "keel keys create" in log


def test_a_host_that_is_not_loopback_is_refused_in_open_mode(open_server: Server) -> None:
    """DNS rebinding: a page at evil.example that resolves to 127.0.0.1 sends Host: evil.example."""
    rebound = {"Host": f"evil.example:{open_server.port}"}
    for r in (*(httpx.get(open_server.url + path, headers=rebound) for path in ("/v1/workflows", "/ui/api/runs",
                                                                                 "/ui", "/mcp/")),
              httpx.post(open_server.url + "/chatkit", headers=rebound, json={"type": "threads.list", "params": {}})):
        err = _error(r, 403)
        assert err["code"] == "open_mode_host" and "evil.example" in err["message"] and "keel keys" in err["hint"]
    assert httpx.get(open_server.url + "/healthz", headers={"Host": "evil.example"}).status_code == 200
    for host in (f"localhost:{open_server.port}", f"127.0.0.1:{open_server.port}", "localhost", "[::1]:8000"):
        assert httpx.get(open_server.url + "/v1/workflows", headers={"Host": host}).status_code == 200, host


def test_a_web_page_cannot_answer_an_approval(open_server: Server) -> None:
    waiting = httpx.post(open_server.url + "/v1/workflows/approve/runs", json={"input": "order 7"}).json()
    approval = waiting["approval"]["id"]
    for path in (f"/v1/approvals/{approval}/approve", f"/ui/api/approvals/{approval}/approve"):
        # A form or a bodiless fetch from another origin: no preflight, Origin names the page.
        err = _error(httpx.post(open_server.url + path, headers={"Origin": EVIL}), 403)
        assert err["code"] == "cross_origin" and EVIL in err["message"] and "--cors-origin" in err["hint"]
        err = _error(httpx.post(open_server.url + path, headers={"Origin": "null"}, json={}), 403)
        # Without Origin, the browser's Sec-Fetch-Site still tells.
        err = _error(httpx.post(open_server.url + path, headers={"Sec-Fetch-Site": "cross-site"}), 403)
        assert err["field"] == "header.Sec-Fetch-Site"
        # A simple (text/plain) body is not JSON: 415, even from no origin at all.
        err = _error(httpx.post(open_server.url + path, content=b'{"by": "page"}',
                                headers={"Content-Type": "text/plain"}), 415)
        assert err["field"] == "header.Content-Type" and "application/json" in err["hint"]
    assert approval in _pending(open_server)
    # The web UI's own page: same origin, JSON. It still works.
    own = httpx.post(open_server.url + f"/v1/approvals/{approval}/approve", json={"by": "lin"},
                     headers={"Origin": open_server.url, "Sec-Fetch-Site": "same-origin"})
    # decided_by comes from the credential, never the body's `by` (docs/security.md, tenancy).
    assert own.status_code == 200 and own.json()["output"] == "approved by open mode (loopback)"


def test_text_plain_bodies_are_refused_with_415(open_server: Server) -> None:
    for path, body in (("/chatkit", b'{"type": "threads.list", "params": {}}'),
                       ("/v1/workflows/echo3/runs", b'{"input": "hi"}'),
                       ("/v1/chat/completions", b'{"model": "echo3", "messages": [{"role": "user", "content": "hi"}]}'),
                       ("/ui/api/chat", b'{"workflow": "echo3", "messages": [{"role": "user", "content": "hi"}]}')):
        for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
            err = _error(httpx.post(open_server.url + path, content=body, headers=headers), 415)
            assert err["code"] == "unsupported_media_type", path
    ok = httpx.post(open_server.url + "/chatkit", content=b'{"type": "threads.list", "params": {}}',
                    headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200, ok.text


def test_the_openai_sdk_placeholder_key_works_in_open_mode(open_server: Server) -> None:
    sdk = openai.OpenAI(base_url=open_server.url + "/v1", api_key="sk-placeholder", max_retries=0)
    r = sdk.chat.completions.create(model="echo3", messages=[{"role": "user", "content": "no key needed"}])
    assert r.choices[0].message.content == "no key needed"
    # A Keel-shaped key is still checked: a typo in a real key is not silently ignored.
    bad = httpx.get(open_server.url + "/v1/workflows", headers={"Authorization": "Bearer keel_sk_00000000_nope"})
    assert bad.status_code == 401


def test_blind_wildcard_ids_approve_nothing(tmp_path: Path) -> None:
    """One pending approval and one run in the store: any LIKE pattern would have matched them."""
    publish(tmp_path, APPROVE, "approve")
    server = start_server(tmp_path)
    try:
        waiting = httpx.post(server.url + "/v1/workflows/approve/runs", json={"input": "order 7"}).json()
        approval, run = waiting["approval"]["id"], waiting["id"]
        answers = []
        for pattern in WILDCARDS:
            for path in (f"/ui/api/approvals/{quote(pattern, safe='')}/approve",
                         f"/v1/approvals/{quote(pattern, safe='')}/approve"):
                answers.append(httpx.post(server.url + path, json={}).status_code)
            assert httpx.get(server.url + f"/ui/api/runs/{quote(pattern, safe='')}").status_code == 404, pattern
        assert len(answers) == 2 * 16 and all(s in (404, 422) for s in answers), answers
        assert _pending(server) == [approval]
        # The UI's routes take the full id only; the API keeps unique hex prefixes (8 digits or more)
        # for reads, but not for what changes state: ids begin with their creation time, so the first
        # 8 (even 12) digits are "the approval made this minute", which a blind request can guess.
        assert httpx.get(server.url + f"/ui/api/runs/{run[:8]}").status_code == 404
        assert httpx.post(server.url + f"/ui/api/approvals/{approval[:8]}/approve", json={}).status_code == 404
        assert httpx.get(server.url + f"/v1/runs/{run[:8]}").json()["id"] == run
        for short in (approval[:8], approval[:12], approval[:31]):
            for decision in ("approve", "reject"):
                r = httpx.post(server.url + f"/v1/approvals/{short}/{decision}", json={})
                assert r.status_code == 404 and r.json()["error"]["field"] == "path.approval_id", r.text
        assert httpx.post(server.url + f"/v1/runs/{run[:12]}/cancel", json={}).status_code == 404
        assert _pending(server) == [approval]
        assert httpx.get(server.url + f"/v1/runs/{run}").json()["status"] == "waiting"
    finally:
        server.stop()


def test_revoking_the_last_key_does_not_reopen_a_running_server(tmp_path: Path) -> None:
    publish(tmp_path, echo3("echo3"), "echo3")
    server = start_server(tmp_path)
    try:
        assert httpx.get(server.url + "/v1/workflows").status_code == 200  # open
        secret = create_key(tmp_path, "only", "--workflow", "*")
        assert httpx.get(server.url + "/v1/workflows").status_code == 401  # a key exists: needed
        revoked = keel(tmp_path, "keys", "revoke", secret.split("_")[2])
        assert "last active key" in revoked.stderr and "until it restarts" in revoked.stderr
        r = httpx.get(server.url + "/v1/workflows")
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        # Nor does a non-loopback Host get in: with keys required, the key is the check.
        assert httpx.get(server.url + "/v1/workflows", headers={"Host": "evil.example"}).status_code == 401
    finally:
        server.stop()
    restarted = start_server(tmp_path)
    try:
        assert httpx.get(restarted.url + "/v1/workflows").status_code == 200
        assert "open mode" in restarted.log_text()
    finally:
        restarted.stop()


def test_a_key_created_and_revoked_while_no_request_came_still_closes_the_server(tmp_path: Path) -> None:
    """The case of a worker that never saw the key active (workers > 1, or one uvicorn started
    again): what counts is a key revoked since the server started, not what this process saw."""
    publish(tmp_path, echo3("echo3"), "echo3")
    server = start_server(tmp_path)
    try:
        secret = create_key(tmp_path, "brief", "--workflow", "*")
        keel(tmp_path, "keys", "revoke", secret.split("_")[2])  # no request while the key was active
        r = httpx.get(server.url + "/v1/workflows")
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key", r.text
        assert httpx.post(server.url + "/v1/workflows/echo3/runs", json={"input": "x"}).status_code == 401
    finally:
        server.stop()


def test_a_server_started_with_keys_says_so_and_takes_any_host(tmp_path: Path) -> None:
    """Behind a proxy the Host is the proxy's name: with keys there is no Host check."""
    secret = create_key(tmp_path, "admin", "--workflow", "*")
    publish(tmp_path, echo3("echo3"), "echo3")
    server = start_server(tmp_path)
    try:
        r = httpx.get(server.url + "/v1/workflows", headers={"Host": "keel.example.com",
                                                             "Authorization": f"Bearer {secret}"})
        assert r.status_code == 200
        # Cross-site state changes are refused with keys too (the key is no browser's credential).
        r = httpx.post(server.url + "/v1/workflows/echo3/runs", json={"input": "x"},
                       headers={"Origin": EVIL, "Authorization": f"Bearer {secret}"})
        assert r.status_code == 403
        assert "API keys required" in server.log_text()
    finally:
        server.stop()


def test_keys_revoke_warns_only_for_the_last_active_key(tmp_path: Path) -> None:
    first = create_key(tmp_path, "a", "--workflow", "*").split("_")[2]
    second = create_key(tmp_path, "b", "--workflow", "*").split("_")[2]
    assert "warning" not in keel(tmp_path, "keys", "revoke", first).stderr
    assert "last active key" in keel(tmp_path, "keys", "revoke", second).stderr
    again = subprocess.run([sys.executable, "-m", "keel", "keys", "revoke", second], capture_output=True, text=True,
                           timeout=120, env=server_env(tmp_path), cwd=tmp_path)
    assert "last active key" not in again.stderr and "Traceback" not in again.stderr
