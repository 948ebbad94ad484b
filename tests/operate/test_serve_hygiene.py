"""Bad input gets a 4xx JSON error naming the field and the fix; limits, CORS; no secret in
logs or traces (checked by grepping them after requests that carried secrets)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.openai_stub import OpenAIStub
from tests.operate.conftest import Server, agent_workflow, create_key, publish, start_server
from tests.pg import store_files_text


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "Traceback" not in r.text
    err = r.json()["error"]
    assert err["message"] and err["hint"], err
    return err


def test_malformed_json_names_the_body(serve: Server) -> None:
    with serve.client() as c:
        r = c.post("/v1/workflows/echo3/runs", content=b'{"input": ', headers={"content-type": "application/json"})
    err = _error(r, 400)
    assert err["field"] == "body" and "JSON" in err["message"]


@pytest.mark.parametrize(("body", "field"), [
    ({"input": "x", "wait": "soon"}, "wait"),
    ({"input": "x", "version": 0}, "version"),
    ({"input": "x", "version": 2**63}, "version"),
    ({"input": "x", "surprise": 1}, "surprise"),
    ([1, 2], "body"),
])
def test_wrong_types_name_the_field(serve: Server, body: object, field: str) -> None:
    with serve.client() as c:
        err = _error(c.post("/v1/workflows/echo3/runs", json=body), 422)
    assert err["field"] == field and field in err["message"]


def test_openai_wrong_types_name_the_field(serve: Server) -> None:
    with serve.client() as c:
        err = _error(c.post("/v1/chat/completions", json={"model": "echo3", "messages": "hi"}), 422)
        assert err["field"] == "messages"
        err = _error(c.post("/v1/chat/completions", json={"model": "echo3", "messages": [
            {"role": "assistant", "content": "last word is mine"}]}), 400)
        assert err["field"] == "messages" and "user" in err["message"]


def test_unknown_workflow_version_and_run(serve: Server) -> None:
    with serve.client() as c:
        assert "nope" in _error(c.post("/v1/workflows/nope/runs", json={"input": "x"}), 404)["message"]
        _error(c.post("/v1/workflows/echo3/runs", json={"input": "x", "version": 7}), 404)
        assert _error(c.get("/v1/runs/abcdef123456"), 404)["field"] == "path.run_id"
        _error(c.post("/v1/approvals/abcdef123456/approve", json={}), 404)
        _error(c.get("/v1/no/such/route"), 404)


def test_oversized_body_is_413_json(serve: Server) -> None:
    with serve.client() as c:
        err = _error(c.post("/v1/workflows/echo3/runs", json={"input": "x" * 1_100_000}), 413)
    assert err["type"] == "request_too_large" and "max_body_bytes" in err["hint"]


def test_cors_allows_only_configured_origins(tmp_path) -> None:
    server = start_server(tmp_path, "--cors-origin", "https://app.example.com")
    try:
        ok = httpx.options(server.url + "/v1/workflows", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"})
        other = httpx.options(server.url + "/v1/workflows", headers={
            "Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    finally:
        server.stop()
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers


def test_no_secret_in_logs_or_traces(tmp_path) -> None:
    """A caller's provider key is used for its request (the stub sees it) and an API key
    authenticates it; afterwards neither appears in the access log, the server's output
    or any byte of the store (traces, runs, serve_requests)."""
    stub = OpenAIStub()
    stub.start()
    try:
        publish(tmp_path, agent_workflow("byo", "openai:gpt-4.1-mini", "Be brief.", "Uses the caller's own key."), "byo")
        api_key = create_key(tmp_path, "byo", "--workflow", "byo")
        provider_key = "sk-callerOwnSecret0123456789abcdef"
        server = start_server(tmp_path, "--allow-provider-keys", "--access-log", str(tmp_path / "access.jsonl"),
                              env={"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": "sk-deploymentKey987654321"})
        try:
            stub.answer("the model's answer")
            sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0,
                                default_headers={"X-Keel-Provider-Key": provider_key})
            r = sdk.chat.completions.create(model="byo", messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content == "the model's answer"
            seen = {k.lower(): v for k, v in stub.requests[-1].headers.items()}
            assert seen["authorization"] == f"Bearer {provider_key}"
            # Secrets in a query string and a path are scrubbed from the access log too.
            httpx.get(server.url + f"/v1/runs/{api_key}", params={"api_key": provider_key},
                      headers={"Authorization": f"Bearer {api_key}"})
        finally:
            server.stop()
    finally:
        stub.stop()
    access = (tmp_path / "access.jsonl").read_text()
    lines = [json.loads(line) for line in access.splitlines()]
    assert any(d.get("route") == "/v1/chat/completions" and d.get("workflow") == "byo" for d in lines), access
    haystacks = {"access log": access, "server output": server.log_text()}
    haystacks.update(store_files_text(tmp_path))  # the file's bytes, or every row on PostgreSQL
    for name, text in haystacks.items():
        for secret in (api_key, provider_key, api_key.split("_", 3)[3]):
            assert secret not in text, f"a secret leaked into the {name}"


def test_provider_key_refused_unless_allowed(serve: Server) -> None:
    with serve.client() as c:
        err = _error(c.post("/v1/workflows/echo3/runs", json={"input": "x"},
                            headers={"X-Keel-Provider-Key": "sk-notAllowedHere123456"}), 400)
    assert err["field"] == "header.X-Keel-Provider-Key" and "allow_provider_keys" in err["hint"]
