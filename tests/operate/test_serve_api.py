"""The workflows API of a real ``keel serve``: workflows, runs (sync and async), traces,
Server-Sent Events and approvals, all over HTTP."""

from __future__ import annotations

import json
import time

import httpx

from tests.operate.conftest import Server


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    """``(event, data)`` pairs of a text/event-stream response."""
    out, kind = [], "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            out.append((kind, json.loads(line[6:])))
            kind = "message"
    return out


def test_health_and_openapi_spec(serve: Server) -> None:
    with httpx.Client(base_url=serve.url) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        spec = c.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/v1/workflows", "/v1/workflows/{name}/runs", "/v1/runs/{run_id}/events",
                 "/v1/approvals/{approval_id}/approve", "/v1/chat/completions", "/v1/responses"):
        assert path in spec["paths"], path


def test_root_redirects_to_the_ui(serve: Server) -> None:
    r = httpx.get(serve.url + "/", follow_redirects=False)
    assert r.status_code in (302, 307) and r.headers["location"] == "/ui"


def test_list_workflows_and_versions(serve: Server) -> None:
    with serve.client() as c:
        names = {w["name"]: w for w in c.get("/v1/workflows").json()["data"]}
        detail = c.get("/v1/workflows/echo3").json()
    assert {"echo3", "approve", "other"} <= set(names) and names["echo3"]["latest"] == 1
    assert detail["name"] == "echo3" and [v["version"] for v in detail["versions"]] == [1]
    assert detail["description"] == "Repeats the last user message."


def test_sync_run_returns_output_usage_and_a_trace(serve: Server) -> None:
    with serve.client() as c:
        run = c.post("/v1/workflows/echo3/runs", json={"input": "three little words"}).json()
        assert run["status"] == "succeeded" and run["output"] == "three little words"
        assert run["usage"]["output_tokens"] == 3 and run["version"] == 1
        trace = c.get(run["links"]["trace"]).json()
        assert c.get(f"/v1/runs/{run['id']}").json()["output"] == "three little words"
    kinds = {s["kind"] for s in trace["spans"]}
    assert {"node", "model"} <= kinds and trace["usage"]["output_tokens"] == 3


def test_async_run_then_its_events_over_sse(serve: Server) -> None:
    with serve.client() as c:
        r = c.post("/v1/workflows/echo3/runs", json={"input": "hello async", "wait": False})
        assert r.status_code == 202 and r.headers["location"] == f"/v1/runs/{r.json()['id']}"
        run_id = r.json()["id"]
        with c.stream("GET", f"/v1/runs/{run_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = sse_events(stream)
        run = c.get(f"/v1/runs/{run_id}").json()
    kinds = [k for k, _ in events]
    assert kinds[-1] == "run_finished" and events[-1][1]["status"] == "succeeded"
    assert {"node_started", "node_finished"} <= set(kinds)
    assert [d["node_id"] for k, d in events if k == "node_finished"] == ["start", "bot", "done"]
    assert [d["seq"] for _, d in events] == list(range(len(events)))
    assert run["status"] == "succeeded" and run["output"] == "hello async"


def test_approval_answered_over_http(serve: Server) -> None:
    with serve.client() as c:
        waiting = c.post("/v1/workflows/approve/runs", json={"input": "order 7"}).json()
        assert waiting["status"] == "waiting" and waiting["approval"]["message"] == "Refund order 7?"
        pending = c.get("/v1/approvals").json()["data"]
        assert waiting["approval"]["id"] in [a["id"] for a in pending]
        other = c.post("/v1/workflows/approve/runs", json={"input": "order 8"}).json()
    # Decided by another key with the approver role (the requester's own key may not).
    with serve.client(serve.approver_key) as c:
        done = c.post(waiting["links"]["approve"], json={"by": "lin", "comment": "fine"}).json()
        assert done["status"] == "succeeded" and done["output"].startswith("approved by key:")
        again = c.post(waiting["links"]["approve"], json={})
        assert again.status_code == 409 and again.json()["error"]["message"]

        rejected = c.post(f"/v1/approvals/{other['approval']['id']}/reject", json={"by": "sam"}).json()
        assert rejected["status"] == "succeeded" and rejected["output"] == "rejected"
        assert other["approval"]["id"] not in [a["id"] for a in c.get("/v1/approvals").json()["data"]]


def test_every_request_lands_in_serve_requests(serve: Server) -> None:
    with serve.client() as c:
        run_id = c.post("/v1/workflows/echo3/runs", json={"input": "count me"}).json()["id"]
        with c.stream("GET", f"/v1/runs/{run_id}/events") as s:
            sse_events(s)
    from keel.store import open_store

    db = open_store(serve.home)  # the server's store, on either backend
    rows: list = []
    for _ in range(200):  # the writer flushes every 0.5 s: poll, no timing assertion
        rows = db.query("SELECT * FROM serve_requests WHERE path LIKE ?", (f"%{run_id}%",))
        post = db.query("SELECT * FROM serve_requests WHERE workflow = 'echo3' AND method = 'POST'"
                        " AND route = '/v1/workflows/{name}/runs'")
        if rows and post:
            break
        time.sleep(0.1)
    db.close()
    [events] = rows
    assert events["route"] == "/v1/runs/{run_id}/events" and events["streamed"] == 1 and events["status"] == 200
    assert events["ttfb_ms"] is not None and events["latency_ms"] >= events["ttfb_ms"]
    assert any(r["output_tokens"] == 2 and r["key_id"] for r in post)
