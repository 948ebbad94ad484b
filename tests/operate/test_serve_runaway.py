"""Runs that cannot run away, over HTTP (issue 13, findings 5 and 6), against real ``keel serve``
subprocesses: cancel, a SIGTERM that never waits on a looping run, lone surrogates and empty
messages refused at the edge with the field named, and GET /v1/runs despite a bad stored row."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from keel.store import open_store
from tests.operate.conftest import Server, publish, start_server
from tests.operate.test_chatkit import message, post
from tests.workflows.test_run_limits import CYCLE

# The If/else back-edge cycle of the engine tests, allowed to run (almost) for ever.
LOOP = CYCLE + "limits: {max_steps: 10000000}\n"


def _seq(home: Path, run_id: str) -> int:
    store = open_store(home)
    try:
        return store.query("SELECT seq FROM workflow_runs WHERE id = ?", (run_id,))[0]["seq"]
    finally:
        store.close()


def _wait_for_steps(home: Path, run_id: str, at_least: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if _seq(home, run_id) >= at_least:
                return
        except IndexError:
            pass
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.1)


def test_cancel_a_looping_run_over_the_api(tmp_path: Path) -> None:
    publish(tmp_path, LOOP, "spin")
    server = start_server(tmp_path)
    try:
        with server.client() as c:
            r = c.post("/v1/workflows/spin/runs", json={"input": "go", "wait": False})
            assert r.status_code == 202
            run_id = r.json()["id"]
            _wait_for_steps(tmp_path, run_id, 64)
            r = c.post(f"/v1/runs/{run_id}/cancel", json={"by": "ops", "reason": "runaway"})
            assert r.status_code == 200, r.text
            # Who cancelled comes from the credential (open mode here), never from the body's "by".
            assert r.json()["status"] == "cancelled"
            assert r.json()["error"] == "cancelled by open mode (loopback): runaway"
            seq = _seq(tmp_path, run_id)
            time.sleep(1)
            assert _seq(tmp_path, run_id) == seq  # it stopped
            assert c.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"
            listed = c.get("/v1/runs", params={"status": "cancelled"}).json()["data"]
            assert [r["id"] for r in listed] == [run_id]
            again = c.post(f"/v1/runs/{run_id}/cancel", json={})
            assert again.status_code == 409 and again.json()["error"]["field"] == "path.run_id"
            assert "finished already: cancelled" in again.json()["error"]["message"]
    finally:
        server.stop()


def test_a_cancel_respects_the_key_scope(serve: Server) -> None:
    with serve.client() as admin:
        run = admin.post("/v1/workflows/other/runs", json={"input": "hi"}).json()
    with serve.client(serve.scoped_key) as scoped:
        r = scoped.post(f"/v1/runs/{run['id']}/cancel", json={})
    assert r.status_code in (403, 404)


def _dead_owner() -> str:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return f"{socket.gethostname()}:{p.pid}:dead"


def test_sigterm_stops_a_server_that_resumed_a_looping_run(tmp_path: Path) -> None:
    """The worker resumes the orphaned loop at start-up; SIGTERM must not wait for it to end."""
    from keel.workflows import Engine, Versions

    publish(tmp_path, LOOP, "spin")
    store = open_store(tmp_path)
    try:
        run = Engine(store).create(Versions(store).get("spin", None), "go")
        store.execute("UPDATE workflow_runs SET owner = ? WHERE id = ?", (_dead_owner(), run.id))
    finally:
        store.close()
    server = start_server(tmp_path)
    try:
        _wait_for_steps(tmp_path, run.id, 128)  # the worker is driving it
        server.proc.terminate()
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
            raise AssertionError("keel serve did not exit on SIGTERM while a resumed run was looping") from None
    finally:
        server.stop()
    store = open_store(tmp_path)
    try:
        row = store.query("SELECT status FROM workflow_runs WHERE id = ?", (run.id,))[0]
    finally:
        store.close()
    assert row["status"] == "running"  # abandoned at its last checkpoint, for the next process


def test_lone_surrogates_are_refused_naming_the_field(serve: Server) -> None:
    bad = '"a\\ud800b"'
    cases = [
        ("/v1/workflows/echo3/runs", '{"input": {"messages": [{"role": "user", "content": ' + bad + '}]}}',
         "body.input.messages[0].content"),
        ("/v1/chat/completions", '{"model": "echo3", "messages": [{"role": "user", "content": ' + bad + '}]}',
         "body.messages[0].content"),
        ("/v1/responses", '{"model": "echo3", "input": ' + bad + '}', "body.input"),
    ]
    with serve.client() as c:
        for path, body, field in cases:
            r = c.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["field"] == field and "lone UTF-16 surrogate" in r.json()["error"]["message"]
        # A surrogate pair is text: it passes.
        ok = c.post("/v1/workflows/echo3/runs", content='{"input": "smile \\ud83d\\ude00"}',
                    headers={"content-type": "application/json"})
        assert ok.status_code == 200 and ok.json()["output"] == "smile \U0001f600"
        chatkit = json.dumps({"type": "threads.create", "params": {"input": message("a\ud800b")},
                              "metadata": {"workflow": "echo3"}})  # json.dumps escapes the surrogate
        r = c.post("/chatkit", content=chatkit, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["field"].startswith("body.params.input.content[0]")
        assert c.get("/v1/runs").status_code == 200


def test_empty_user_content_is_a_400_naming_the_message(serve: Server) -> None:
    with serve.client() as c:
        for content in ("", None, []):
            r = c.post("/v1/chat/completions", json={"model": "echo3", "messages": [
                {"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": content}]})
            assert r.status_code == 400, (content, r.text)
            assert r.json()["error"]["field"] == "messages[2].content"
            r = c.post("/v1/responses", json={"model": "echo3", "input": [{"role": "user", "content": content}]})
            assert r.status_code == 400 and r.json()["error"]["field"] == "input[0].content", r.text
    r = post(serve, {"type": "threads.create", "params": {"input": message("")}, "metadata": {"workflow": "echo3"}})
    assert r.status_code == 200
    kinds = [json.loads(line[5:]).get("type") for line in r.text.splitlines() if line.startswith("data:")]
    assert "error" in kinds, r.text


def test_a_stored_row_with_a_lone_surrogate_does_not_break_the_run_list(tmp_path: Path) -> None:
    from keel.workflows import Engine, Versions

    publish(tmp_path, LOOP.replace("spin", "spun").replace("limits: {max_steps: 10000000}", ""), "spun")
    store = open_store(tmp_path)
    try:
        run = Engine(store).create(Versions(store).get("spun", None), "fine")
        # As an older Keel stored it: the input JSON with an escaped lone surrogate.
        store.execute("UPDATE workflow_runs SET input = ?, status = 'failed', owner = NULL WHERE id = ?",
                      ('"bad \\ud800 row"', run.id))
    finally:
        store.close()
    server = start_server(tmp_path)
    try:
        with server.client() as c:
            r = c.get("/v1/runs")
            assert r.status_code == 200, r.text
            assert r.json()["data"][0]["input"] == "bad \ufffd row"
            assert c.get(f"/v1/runs/{run.id}").status_code == 200
    finally:
        server.stop()
