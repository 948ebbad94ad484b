"""Secrets in stored and returned errors (issue 13, finding 9): a provider that answers 401 with the
key it was sent, in full, leaks neither the deployment's key nor a caller's X-Keel-Provider-Key into
any byte of the store, any API answer (run, trace, chat completion, ChatKit) or the server's log."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.openai_stub import OpenAIStub
from tests.operate.conftest import agent_workflow, create_key, publish, start_server
from tests.pg import store_files_text

# Shaped like no key Keel knows (no sk-, no keel_sk_): only knowing the value can find it.
CONFIGURED_KEY = "provCfg-3b9d7e1a5c2f8e6d4a0b"
CALLER_KEY = "callerOwn-6a1c8e3f5b7d9a2c4e0f"


def _chatkit(url: str, headers: dict[str, str], workflow: str) -> httpx.Response:
    doc = {"type": "threads.create", "metadata": {"workflow": workflow},
           "params": {"input": {"content": [{"type": "input_text", "text": "hi"}], "attachments": [],
                                "inference_options": {}}}}
    return httpx.post(f"{url}/chatkit", json=doc, headers=headers, timeout=60)


def test_a_key_echoed_by_the_provider_is_stored_returned_and_logged_nowhere(tmp_path: Path) -> None:
    stub = OpenAIStub()
    stub.start()
    answers: dict[str, str] = {}
    try:
        publish(tmp_path, agent_workflow("byo", "openai:gpt-4.1-mini", "Be brief.", "Calls a provider."), "byo")
        api_key = create_key(tmp_path, "byo", "--workflow", "byo")
        server = start_server(tmp_path, "--allow-provider-keys",
                              env={"OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": CONFIGURED_KEY})
        try:
            auth = {"Authorization": f"Bearer {api_key}"}
            own = {**auth, "X-Keel-Provider-Key": CALLER_KEY}
            with httpx.Client(base_url=server.url, timeout=60) as c:
                for name, headers, sent in (("configured", auth, CONFIGURED_KEY), ("caller", own, CALLER_KEY)):
                    stub.refuse_key(401)
                    r = c.post("/v1/workflows/byo/runs", json={"input": "hi"}, headers=headers)
                    assert stub.requests[-1].headers["authorization"] == f"Bearer {sent}"
                    assert r.json()["status"] == "failed", r.text
                    assert "refused the API key (401)" in r.json()["error"], r.text
                    run_id = r.json()["id"]
                    answers[f"{name} run"] = r.text
                    answers[f"{name} GET run"] = c.get(f"/v1/runs/{run_id}", headers=auth).text
                    answers[f"{name} trace"] = c.get(f"/v1/runs/{run_id}/trace", headers=auth).text
                    answers[f"{name} runs list"] = c.get("/v1/runs", headers=auth).text

                    stub.refuse_key(401)
                    r = c.post("/v1/chat/completions", headers=headers,
                               json={"model": "byo", "messages": [{"role": "user", "content": "hi"}]})
                    assert r.status_code >= 400 and "refused the API key" in r.text, r.text
                    answers[f"{name} chat completion"] = r.text

                    stub.refuse_key(401)
                    r = _chatkit(server.url, headers, "byo")
                    assert "refused the API key" in r.text, r.text
                    answers[f"{name} chatkit"] = r.text
                    thread = next(json.loads(line[6:])["thread"]["id"] for line in r.text.splitlines()
                                  if line.startswith("data: ") and '"thread.created"' in line)
                    answers[f"{name} chatkit items"] = httpx.post(
                        f"{server.url}/chatkit", headers=auth, timeout=60,
                        json={"type": "items.list", "params": {"thread_id": thread, "order": "asc"}}).text
                assert len(stub.requests) == 6  # a refused key is not retried
        finally:
            server.stop()
    finally:
        stub.stop()
    haystacks = {**answers, "server output": server.log_text()}
    haystacks.update(store_files_text(tmp_path))  # the file's bytes, or every row on PostgreSQL
    assert "refused the API key" in haystacks["keel.db"] + haystacks.get("keel.db-wal", "")
    for name, text in haystacks.items():
        for secret in (CONFIGURED_KEY, CALLER_KEY):
            assert secret not in text, f"{secret} leaked into the {name}: {text[text.find(secret) - 200:][:400]}"
