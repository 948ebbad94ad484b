"""A served request whose workflow run failed is an error on the dashboard, whatever its HTTP status.

A real ``keel serve`` (open mode, its own KEEL_HOME) with a workflow whose agent's model fails
(``scripted:nobody`` has no replies scripted: every call raises). A streamed
``/v1/chat/completions`` is answered 200 before the run fails, and a sync run that failed is
answered 200 with ``status: failed``, as are a ChatKit and a UI chat turn: none is a 5xx, and
the dashboard once counted them all as good requests (0 % error rate, SLO untouched).
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.operate.conftest import agent_workflow, echo3, publish, start_server


def _dashboard(client, want: int) -> dict:
    """``GET /ui/api/metrics`` once the access log has written ``want`` API requests (it batches)."""
    deadline = time.monotonic() + 60
    while True:
        d = client.get("/ui/api/metrics", params={"range": "15m", "slo_target": "0.9"}).json()
        if d["requests"]["total"]["count"] >= want or time.monotonic() > deadline:
            return d
        time.sleep(0.2)


def test_a_request_whose_run_failed_counts_as_an_error_and_against_the_slo(tmp_path: Path) -> None:
    publish(tmp_path, agent_workflow("broken", "scripted:nobody", "Answer.", "Its model always fails."), "broken")
    publish(tmp_path, echo3("echo3"), "echo3")
    server = start_server(tmp_path)
    try:
        with server.client() as c:
            # 1. a streamed completion: 200, then an error event when the run fails
            with c.stream("POST", "/v1/chat/completions", json={
                    "model": "broken", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
                streamed = r.read().decode()
            assert r.status_code == 200 and '"error"' in streamed and "failed" in streamed
            # 2. a sync run that failed: answered 200 with the run's status
            r = c.post("/v1/workflows/broken/runs", json={"input": "hi"})
            assert r.status_code == 200 and r.json()["status"] == "failed", r.text
            sync_run = r.json()["id"]
            # 3. a ChatKit turn and 4. a UI chat turn: streams too, answered 200
            r = c.post("/chatkit", json={"type": "threads.create", "metadata": {"workflow": "broken"}, "params": {
                "input": {"content": [{"type": "input_text", "text": "hi"}], "attachments": [],
                          "inference_options": {}}}})
            assert r.status_code == 200 and "failed (run " in r.text, r.text
            r = c.post("/ui/api/chat", json={"workflow": "broken", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and "event: run" in r.text, r.text
            # 5. a good one
            r = c.post("/v1/chat/completions", json={"model": "echo3", "messages": [{"role": "user", "content": "ok"}]})
            assert r.status_code == 200 and r.json()["keel"]["status"] == "succeeded"
            good_run = r.json()["keel"]["run_id"]

            d = _dashboard(c, 5)
        req = d["requests"]["total"]
        assert (req["count"], req["errors"]) == (5, 4), req
        assert abs(req["error_rate"] - 4 / 5) < 1e-9
        broken = next(g for g in d["requests"]["groups"] if g["key"] == "broken")
        assert (broken["count"], broken["errors"], broken["error_rate"]) == (4, 4, 1.0)
        assert sum(b["errors"] for b in d["requests"]["series"]) == 4
        # the SLO: 1 good of 5 against 90 %: the budget is overspent
        assert (d["slo"]["total"], d["slo"]["good"], d["slo"]["met"]) == (5, 1, False)
        assert d["slo"]["budget_left"] < 0
        # the HTTP codes stay what was answered
        codes: dict[str, int] = {}
        for b in d["requests"]["series"]:
            for code, n in b["codes"].items():
                codes[code] = codes.get(code, 0) + n
        assert codes == {"200": 5}
    finally:
        server.stop()
    # the access log row carries the run and how it ended (the store, as the server wrote it)
    from keel.store import open_store

    db = open_store(tmp_path)  # the server's store, on either backend
    try:
        rows = [tuple(r.values()) for r in db.query(
            "SELECT route, workflow, status, run_id, run_status FROM serve_requests "
            "WHERE workflow IS NOT NULL ORDER BY started_at")]
        runs = {r["id"]: r["status"] for r in db.query("SELECT id, status FROM workflow_runs")}
    finally:
        db.close()
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        ("/v1/chat/completions", "broken", 200, "failed"),
        ("/v1/workflows/{name}/runs", "broken", 200, "failed"),
        ("/chatkit", "broken", 200, "failed"),
        ("/ui/api/chat", "broken", 200, "failed"),
        ("/v1/chat/completions", "echo3", 200, "succeeded")]
    assert rows[1][3] == sync_run and rows[4][3] == good_run
    assert all(runs[r[3]] == r[4] for r in rows)  # each row names its own run, with the run's final status
