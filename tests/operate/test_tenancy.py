"""Approvals and tenancy on a real ``keel serve`` (issue 13, findings 1-3): who may decide an
approval, whose runs, traces, threads and evals a key reads, and ChatKit client tokens."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from tests.operate.conftest import Server, create_key, keel
from tests.operate.test_chatkit import events, message, new_thread


def _id(secret: str) -> str:
    return secret.split("_")[2]


def _call(serve: Server, method: str, path: str, key: str, user: str | None = None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **({"X-Keel-User": user} if user else {})}
    return httpx.request(method, serve.url + path, headers=headers, timeout=60, **kw)


def _waiting(serve: Server, key: str, workflow: str = "approve", user: str | None = None) -> dict:
    run = _call(serve, "POST", f"/v1/workflows/{workflow}/runs", key, user, json={"input": "order 9"}).json()
    assert run["status"] == "waiting", run
    return run


def test_the_requester_key_cannot_decide_its_own_approval_and_the_decision_names_the_approver(serve: Server) -> None:
    # Even a key with the approver role may not decide what it asked for itself.
    requester = create_key(serve.home, "requester", "--workflow", "approve", "--approver")
    run = _waiting(serve, requester)
    approval = run["approval"]["id"]
    for path in (f"/v1/approvals/{approval}/approve", f"/ui/api/approvals/{approval}/approve"):
        r = _call(serve, "POST", path, requester, json={"by": "the boss"})
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["code"] == "requester_cannot_decide" and "--approver" in error["hint"]
        assert "allow_requester" in error["hint"]
    # A key without the approver role does not even see another key's approval.
    plain = create_key(serve.home, "plain", "--workflow", "approve")
    r = _call(serve, "POST", f"/v1/approvals/{approval}/approve", plain)
    assert r.status_code == 404 and r.json()["error"]["field"] == "path.approval_id"
    assert approval not in [a["id"] for a in _call(serve, "GET", "/v1/approvals", plain).json()["data"]]

    done = _call(serve, "POST", f"/v1/approvals/{approval}/approve", serve.approver_key,
                 json={"by": "mallory", "comment": "ok"}).json()
    who = f"key:{_id(serve.approver_key)} (approver)"
    assert done["status"] == "succeeded" and done["output"] == f"approved by {who}"
    decided = _call(serve, "GET", "/v1/approvals?status=all", serve.admin_key).json()["data"]
    row = next(a for a in decided if a["id"] == approval)
    assert row["decided_by"] == who and row["comment"] == "ok" and "mallory" not in json.dumps(row)


def test_allow_requester_lets_the_requester_confirm_but_only_for_its_own_end_user(serve: Server) -> None:
    key = create_key(serve.home, "confirmer", "--workflow", "confirm")
    run = _waiting(serve, key, "confirm", user="alice")
    approval = run["approval"]["id"]
    assert _call(serve, "POST", f"/v1/approvals/{approval}/approve", key, "bob").status_code == 404
    done = _call(serve, "POST", f"/v1/approvals/{approval}/approve", key, "alice").json()
    assert done["output"] == f"approved by key:{_id(key)} (confirmer) for alice"


def test_chatkit_shows_the_requester_no_buttons_and_refuses_a_forged_press(serve: Server) -> None:
    key = create_key(serve.home, "chat-requester", "--workflow", "approve", "--approver")
    thread, evs = new_thread(serve, "order 11", "approve", key)
    card = next(e["item"] for e in evs if e["type"] == "thread.item.done" and e["item"]["type"] == "widget")
    assert "Waiting for an approver." in json.dumps(card["widget"]) and "Button" not in json.dumps(card["widget"])
    approval = card["widget"]["key"].removeprefix("approval-")
    pressed = events(httpx.post(f"{serve.url}/chatkit", headers=serve.headers(key), timeout=60, json={
        "type": "threads.custom_action", "params": {"thread_id": thread, "item_id": card["id"], "action": {
            "type": "keel.approval", "payload": {"approval_id": approval, "approved": True}}}}))
    error = next(e for e in pressed if e["type"] == "error")
    assert "requester may not decide" in error["message"]
    pending = _call(serve, "GET", "/v1/approvals", serve.approver_key).json()["data"]
    assert approval in [a["id"] for a in pending]


def test_runs_traces_events_and_approvals_belong_to_the_key_that_started_them(serve: Server) -> None:
    a = create_key(serve.home, "tenant-a", "--workflow", "echo3", "--workflow", "approve")
    c = create_key(serve.home, "tenant-c", "--workflow", "echo3", "--workflow", "approve")
    run = _call(serve, "POST", "/v1/workflows/echo3/runs", a, json={"input": "secret of a"}).json()
    waiting = _waiting(serve, a)
    for path in (f"/v1/runs/{run['id']}", f"/v1/runs/{run['id']}/trace", f"/v1/runs/{run['id']}/events",
                 f"/v1/runs/{run['id'][:12]}", f"/ui/api/runs/{run['id']}"):
        r = _call(serve, "GET", path, c)
        assert r.status_code == 404, (path, r.text)
        assert "secret of a" not in r.text
        assert _call(serve, "GET", path, a).status_code == 200, path
        assert _call(serve, "GET", path, serve.admin_key).status_code == 200, path
    assert run["id"] not in [r["id"] for r in _call(serve, "GET", "/v1/runs?limit=500", c).json()["data"]]
    assert run["id"] not in [r["id"] for r in _call(serve, "GET", "/ui/api/runs", c).json()["runs"]]
    assert run["id"] in [r["id"] for r in _call(serve, "GET", "/v1/runs?limit=500", a).json()["data"]]
    assert run["id"] in [r["id"] for r in _call(serve, "GET", "/v1/runs?limit=500", serve.admin_key).json()["data"]]
    mine = [x["id"] for x in _call(serve, "GET", "/v1/approvals", a).json()["data"]]
    assert waiting["approval"]["id"] in mine
    assert waiting["approval"]["id"] not in [x["id"] for x in _call(serve, "GET", "/v1/approvals", c).json()["data"]]
    # Nor may C cancel A's run (same workflow scope): 404, as for reading it, and the run waits on.
    r = _call(serve, "POST", f"/v1/runs/{waiting['id']}/cancel", c, json={"reason": "mine now"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "path.run_id", r.text
    assert _call(serve, "GET", f"/v1/runs/{waiting['id']}", a).json()["status"] == "waiting"
    assert waiting["approval"]["id"] in [x["id"] for x in _call(serve, "GET", "/v1/approvals", a).json()["data"]]


def test_two_end_users_of_one_key_see_only_their_own_runs_and_threads(serve: Server) -> None:
    key = create_key(serve.home, "two-users", "--workflow", "echo3")
    run = _call(serve, "POST", "/v1/workflows/echo3/runs", key, "alice", json={"input": "alice's words"}).json()
    assert _call(serve, "GET", f"/v1/runs/{run['id']}", key, "bob").status_code == 404
    assert _call(serve, "GET", f"/v1/runs/{run['id']}", key, "alice").json()["output"] == "alice's words"
    assert _call(serve, "GET", f"/v1/runs/{run['id']}", key).status_code == 200  # the backend, for no one user
    listed = _call(serve, "GET", "/v1/runs?limit=500", key, "bob").json()["data"]
    assert run["id"] not in [r["id"] for r in listed]
    thread = events(httpx.post(f"{serve.url}/chatkit", timeout=60, json={
        "type": "threads.create", "params": {"input": message("hi")}, "metadata": {"workflow": "echo3"}},
        headers={"Authorization": f"Bearer {key}", "X-Keel-User": "alice"}))[0]["thread"]["id"]
    r = _call(serve, "POST", "/chatkit", key, "bob", json={"type": "items.list", "params": {"thread_id": thread}})
    assert r.status_code == 404


def _session(serve: Server, key: str, **body) -> httpx.Response:
    return _call(serve, "POST", "/v1/chatkit/sessions", key, json=body)


def test_a_client_token_acts_for_its_user_only_with_the_keys_scope_and_no_roles(serve: Server) -> None:
    backend = create_key(serve.home, "backend", "--workflow", "*", "--approver", "--admin")
    minted = _session(serve, backend, user="alice", ttl=300)
    assert minted.status_code == 200, minted.text
    token = minted.json()["client_secret"]
    assert token.startswith("keel_ct_") and minted.json()["user"] == "alice"

    # ChatKit with the token: alice's threads, the ones the backend sees for X-Keel-User: alice.
    thread, _ = new_thread(serve, "from alice's browser", "echo3", token)
    listed = _call(serve, "POST", "/chatkit", backend, "alice", json={"type": "threads.list", "params": {}}).json()
    assert thread in [t["id"] for t in listed["data"]]
    # The token cannot speak for someone else, nor mint tokens.
    forged = _call(serve, "POST", "/chatkit", token, "bob", json={"type": "threads.list", "params": {}})
    assert forged.status_code == 403 and forged.json()["error"]["field"] == "header.X-Keel-User"
    assert _session(serve, token, user="bob").status_code == 403
    # No roles: another key's approval is not the token's to see or decide, nor other users' runs.
    waiting = _waiting(serve, serve.admin_key)
    r = _call(serve, "POST", f"/v1/approvals/{waiting['approval']['id']}/approve", token)
    assert r.status_code == 404
    assert _call(serve, "GET", f"/v1/runs/{waiting['id']}", token).status_code == 404
    # Nor every caller's traffic: the service dashboard is for keys, not an end user's browser.
    r = _call(serve, "GET", "/ui/api/metrics", token)
    assert r.status_code == 403 and r.json()["error"]["field"] == "header.Authorization", r.text
    assert _call(serve, "GET", "/ui/api/metrics", backend).status_code == 200
    # A token for one workflow: the key's other workflows are out of its scope.
    narrow = _session(serve, backend, user="alice", workflow="echo3").json()["client_secret"]
    assert _call(serve, "POST", "/v1/workflows/echo3/runs", narrow, json={"input": "x"}).status_code == 200
    assert _call(serve, "POST", "/v1/workflows/other/runs", narrow, json={"input": "x"}).status_code == 403
    # Nor its user's ChatKit threads of the key's other workflows.
    elsewhere, _ = new_thread(serve, "about the other workflow", "other", token)
    listed = _call(serve, "POST", "/chatkit", narrow, json={"type": "threads.list", "params": {}}).json()["data"]
    assert thread in [t["id"] for t in listed] and elsewhere not in [t["id"] for t in listed]
    r = _call(serve, "POST", "/chatkit", narrow, json={"type": "items.list", "params": {"thread_id": elsewhere}})
    assert r.status_code == 404, r.text
    assert _call(serve, "POST", "/chatkit", token, json={"type": "items.list", "params": {"thread_id": elsewhere}}
                 ).status_code == 200


def test_tampered_expired_and_revoked_client_tokens_are_401(serve: Server) -> None:
    from keel.operate.server.client_tokens import ClientTokens
    from keel.store import open_store

    key = create_key(serve.home, "short", "--workflow", "echo3")
    token = _session(serve, key, user="carol", ttl=60).json()["client_secret"]
    assert _call(serve, "GET", "/v1/workflows", token).status_code == 200
    payload, signature = token.split(".")
    other_user = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    for bad in (payload + "." + signature[::-1], other_user + "." + signature, "keel_ct_nonsense"):
        r = _call(serve, "GET", "/v1/workflows", bad)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_client_token", bad
    store = open_store(serve.home)  # the server's secret, made at its first mint
    try:
        expired, _ = ClientTokens(store).mint(key_id=_id(key), user="carol", workflow=None, ttl=60,
                                              now=time.time() - 3600)
    finally:
        store.close()
    assert _call(serve, "GET", "/v1/workflows", expired).status_code == 401
    keel(serve.home, "keys", "revoke", _id(key))
    r = _call(serve, "GET", "/v1/workflows", token)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert _session(serve, serve.admin_key, user="x", ttl=7200).status_code == 422  # at most an hour


def _eval(home: Path, workflow: str) -> str:
    from keel.evals import parse_eval, run_eval
    from keel.store import open_store

    data = home / "eval-items.jsonl"
    data.write_text(json.dumps({"input": "private words", "answer": "nope"}) + "\n", encoding="utf-8")
    spec = parse_eval({"name": f"eval-of-{workflow}", "dataset": str(data), "concurrency": 1,
                       "graders": [{"type": "string_check", "name": "exact", "operation": "eq",
                                    "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}],
                       "targets": [{"type": "workflow", "workflow": f"{workflow}@1"}]})
    store = open_store(home)
    try:
        return asyncio.run(run_eval(store, spec)).run_id
    finally:
        store.close()


def test_evals_are_shown_to_admin_keys_of_their_workflows_only(serve: Server) -> None:
    mine, theirs = _eval(serve.home, "echo3"), _eval(serve.home, "other")
    echo_admin = create_key(serve.home, "echo-admin", "--workflow", "echo3", "--admin")
    echo_user = create_key(serve.home, "echo-user", "--workflow", "*")

    def ids(key: str) -> set[str]:
        return {e["id"] for e in _call(serve, "GET", "/ui/api/evals", key).json()["evals"]}

    assert mine in ids(echo_admin) and theirs not in ids(echo_admin)
    assert not {mine, theirs} & ids(echo_user)
    assert {mine, theirs} <= ids(serve.admin_key)
    for path in (f"/ui/api/evals/{theirs}", f"/ui/api/evals/{theirs}/report", f"/ui/api/evals/{mine}/compare/{theirs}"):
        r = _call(serve, "GET", path, echo_admin)
        assert r.status_code == 404 and "private words" not in r.text, path
    assert _call(serve, "GET", f"/ui/api/evals/{mine}", echo_admin).status_code == 200
    assert "private words" in _call(serve, "GET", f"/ui/api/evals/{theirs}/report", serve.admin_key).text


def test_runs_record_the_key_and_end_user_that_started_them(serve: Server) -> None:
    key = create_key(serve.home, "recorded", "--workflow", "echo3")
    run = _call(serve, "POST", "/v1/workflows/echo3/runs", key, "dana", json={"input": "hi"}).json()
    from keel.store import open_store

    db = open_store(serve.home)
    try:
        [row] = db.query("SELECT key_id, end_user FROM workflow_runs WHERE id = ?", (run["id"],))
    finally:
        db.close()
    assert row == {"key_id": _id(key), "end_user": "dana"}
