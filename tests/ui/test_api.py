"""The UI's JSON and SSE endpoints over real HTTP: shapes the pages rely on, and bad input."""

from __future__ import annotations

import json
import re

import httpx
import pytest


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def events(text: str) -> list[tuple[str, dict]]:
    return [(m.group(1), json.loads(m.group(2))) for m in re.finditer(r"event: (\w+)\ndata: (.*)\n\n", text)]


def test_chat_streams_run_node_delta_done_in_order(client) -> None:
    r = client.post("/ui/api/chat", json={"workflow": "echo-bot", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    evs = events(r.text)
    names = [e for e, _ in evs]
    assert names[0] == "run" and names[-1] == "done" and "node" in names
    assert ("delta", {"text": "hi"}) in evs and names.index("delta") < names.index("done")
    assert evs[-1][1]["status"] == "succeeded" and evs[-1][1]["run_id"] == evs[0][1]["run_id"]
    run = client.get(f"/ui/api/runs/{evs[0][1]['run_id']}").json()
    assert run["run"]["status"] == "succeeded"
    [root] = run["trace"]
    assert root["kind"] == "workflow" and [c["name"] for c in root["children"]] == ["node start", "node bot",
                                                                                      "node done"]
    bot = root["children"][1]
    assert bot["children"][0]["kind"] == "model" and bot["output"]["output_text"] == "hi"


def test_the_answer_streams_in_pieces_before_the_run_ends(client) -> None:
    """An Agent node's text reaches the page as `token` events while the model writes it (the
    scripted model streams 8-character pieces); the final `delta` carries the whole answer."""
    message = "The quick brown fox jumps over the lazy dog, twice."
    r = client.post("/ui/api/chat", json={"workflow": "echo-bot", "messages": [{"role": "user", "content": message}]})
    evs = events(r.text)
    names = [e for e, _ in evs]
    tokens = [d["text"] for e, d in evs if e == "token"]
    assert len(tokens) > 3 and "".join(tokens) == message
    assert all(d["node_id"] == "bot" for e, d in evs if e == "token")
    finished = next(i for i, (e, d) in enumerate(evs) if e == "node" and d["kind"] == "node_finished"
                    and d["node_id"] == "bot")
    assert names.index("token") < finished < names.index("delta") < names.index("done")
    assert ("delta", {"text": message}) in evs


def test_bad_input_is_a_clear_error_not_a_traceback(client) -> None:
    r = client.post("/ui/api/chat", json={"workflow": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    r = client.post("/ui/api/chat", json={"workflow": "echo-bot", "messages": []})
    assert r.status_code in (400, 422) and r.json()["error"]["message"]
    r = client.post("/ui/api/approvals/missing/approve")
    assert r.status_code == 404 and r.json()["error"]["hint"]
    assert client.get("/ui/api/runs/nope").status_code == 404
    assert client.get("/ui/api/metrics?range=3y").status_code in (400, 422)
    assert client.get("/ui/static/../api.py").status_code == 404
    assert client.get("/ui/static/%2e%2e/api.py").status_code == 404
    for r in (client.get("/ui/api/runs/nope"), client.get("/ui/api/evals/nope")):
        assert "Traceback" not in r.text


def test_an_approval_answered_twice_is_a_conflict(client) -> None:
    r = client.post("/ui/api/chat", json={"workflow": "refund", "messages": [{"role": "user", "content": "x"}]})
    approval = dict(events(r.text))["approval"]
    first = client.post(f"/ui/api/approvals/{approval['id']}/reject")
    assert dict(events(first.text))["done"]["output"] == "No refund: the request was rejected."
    again = client.post(f"/ui/api/approvals/{approval['id']}/approve")
    assert again.status_code == 409 and "already rejected" in again.json()["error"]["message"]


def test_the_ui_alone_serves_the_page_and_keeps_the_access_log(keel_home, tmp_path) -> None:
    from keel.operate.ui.app import create_app
    from keel.store import open_store
    from tests.ui.demo import Server, publish_demo

    store = open_store(keel_home)
    publish_demo(store, tmp_path)
    srv = Server(create_app(store)).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.get("/", follow_redirects=True).text.startswith("<!doctype html>")
            r = c.post("/ui/api/chat", json={"workflow": "echo-bot", "messages": [{"role": "user", "content": "yo"}]})
            assert ("delta", {"text": "yo"}) in events(r.text)
            run_id = events(r.text)[0][1]["run_id"]
            d = c.get("/ui/api/metrics?range=5m").json()
            # the chat's row names its run and how it ended (a failed one is an error on the dashboard)
            assert [(row["run_id"], row["run_status"]) for row in store.query(
                "SELECT run_id, run_status FROM serve_requests WHERE path = '/ui/api/chat'")] == [(run_id, "succeeded")]
    finally:
        srv.stop()
        store.close()
    [bot] = d["requests"]["groups"]
    assert bot["key"] == "echo-bot" and bot["count"] == 1 and bot["first_p50"] is not None
    assert [g["key"] for g in d["models"]["groups"]] == ["scripted:echo"]


def test_the_chat_opens_the_latest_published_workflow_not_the_first_by_name(client) -> None:
    """Issue 14: the chat opened the first workflow alphabetically, maybe another folder's. With
    no project workflow ([chatkit] workflow of the server folder) it opens the latest published."""
    doc = client.get("/ui/api/workflows").json()
    latest = max(doc["workflows"], key=lambda w: w["published_at"])["name"]
    assert doc["default"] == latest
    assert {"echo-bot", "refund"} <= {w["name"] for w in doc["workflows"]}
    assert doc["default"] != "echo-bot"  # first by name, published first
