"""Workers (issue 17): ``keel serve --no-execute`` queues runs, ``keel worker`` processes execute
them; a worker killed mid-run loses its run to another, with no side effect doubled; the events
of a run executing on a worker reach a client through a server, tokens included; approvals
answered on a server continue on a worker. Real processes, SIGKILL, a real store shared by all."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.operate.conftest import start_server
from tests.operate.workers import (
    PAY,
    PAY_APPROVED,
    SLOW,
    effects,
    env,
    invocations,
    publish_to,
    start_worker,
    wait_for,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str | None:
    """The shared store: SQLite under one KEEL_HOME, or a real PostgreSQL database."""
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else None


@pytest.fixture
def home(tmp_path: Path, url: str | None) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    for spec, name in ((PAY, "pay"), (PAY_APPROVED, "pay_approved"), (SLOW, "slow")):
        publish_to(h, spec, name, url=url)
    return h


def _status(server, run_id: str) -> str:
    return httpx.get(f"{server.url}/v1/runs/{run_id}", timeout=30).json()["status"]


def test_a_server_that_does_not_execute_queues_the_run_and_a_worker_runs_it(
        home: Path, tmp_path: Path, url: str | None) -> None:
    environ = env(home, tmp_path, url=url)
    server = start_server(home, "--no-execute", env=environ)
    worker = None
    try:
        r = httpx.post(f"{server.url}/v1/workflows/pay/runs", json={"input": "7", "wait": False}, timeout=30)
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        time.sleep(1.0)  # no worker yet: nobody executes it
        assert _status(server, run_id) == "running"
        assert invocations(tmp_path) == []
        worker = start_worker(home, environ)
        wait_for(lambda: _status(server, run_id) == "succeeded", what="the worker to finish the run")
        run = httpx.get(f"{server.url}/v1/runs/{run_id}", timeout=30).json()
        assert run["output"] == "paid: charged order 7"
        assert [rid for _, rid in effects(tmp_path)] == [run_id]
        # a synchronous request waits for the worker's result
        r = httpx.post(f"{server.url}/v1/workflows/pay/runs", json={"input": "8"}, timeout=60)
        assert r.status_code == 200 and r.json()["output"] == "paid: charged order 8", r.text
    finally:
        server.stop()
        if worker is not None:
            worker.stop()
    assert "Traceback" not in server.log_text() + worker.log_text()


def test_a_worker_killed_mid_tool_call_loses_its_run_to_another_and_the_side_effect_happens_once(
        home: Path, tmp_path: Path, url: str | None) -> None:
    environ = env(home, tmp_path, {"WORKER_HOLD": "1"}, url=url)
    server = start_server(home, "--no-execute", env=environ)
    first = start_worker(home, environ, name="first")
    second = None
    try:
        r = httpx.post(f"{server.url}/v1/workflows/pay/runs", json={"input": "42", "wait": False}, timeout=30)
        run_id = r.json()["id"]
        wait_for(lambda: len(invocations(tmp_path)) == 1, what="the first worker to call the tool")
        first.kill()  # mid-call: the tool was invoked, its effect not committed to Keel
        (tmp_path / "gate").touch()
        second = start_worker(home, environ, name="second")
        wait_for(lambda: _status(server, run_id) == "succeeded", what="the second worker to finish the run")
        calls = invocations(tmp_path)
        # the call in flight at the kill was made again, with the same idempotency key
        assert len(calls) == 2 and len(set(calls)) == 1, calls
        assert effects(tmp_path) == [(calls[0].split()[1], run_id)]
        steps = httpx.get(f"{server.url}/v1/runs/{run_id}/trace", timeout=30).json()["spans"]
        assert [s["attributes"].get("keel.node.id") for s in steps if s["kind"] == "node"] == ["start", "bot", "done"]
    finally:
        server.stop()
        first.kill()
        if second is not None:
            second.stop()


def test_a_client_of_a_server_streams_the_tokens_of_a_run_executing_on_a_worker(
        home: Path, tmp_path: Path, url: str | None) -> None:
    environ = env(home, tmp_path, url=url)
    server = start_server(home, "--no-execute", env=environ)
    worker = start_worker(home, environ)
    try:
        pieces: list[str] = []
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=60,
                          json={"model": "slow", "stream": True, "messages": [{"role": "user", "content": "go"}]}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if delta:
                    pieces.append(delta)
                    if len(pieces) == 1:
                        # the worker holds the model after its first piece: it came through the store
                        assert not (tmp_path / "gate").exists()
                        (tmp_path / "gate").touch()
        assert pieces[0] == "one two "
        assert "".join(pieces) == "one two three four five six"
        # the run's stored events, tokens included, on a server that did not start it
        other = start_server(home, "--no-execute", env=environ)
        try:
            run_id = httpx.get(f"{other.url}/v1/runs", params={"workflow": "slow"}, timeout=30).json()["data"][0]["id"]
            body = httpx.get(f"{other.url}/v1/runs/{run_id}/events", timeout=30).text
            assert "event: text_delta" in body and "event: run_finished" in body
        finally:
            other.stop()
    finally:
        server.stop()
        worker.stop()


def test_an_approval_answered_on_one_server_continues_the_run_on_a_worker(
        home: Path, tmp_path: Path, url: str | None) -> None:
    environ = env(home, tmp_path, url=url)
    a = start_server(home, "--no-execute", env=environ)
    b = start_server(home, "--no-execute", env=environ)
    worker = start_worker(home, environ)
    try:
        r = httpx.post(f"{a.url}/v1/workflows/pay_approved/runs", json={"input": "5"}, timeout=60)
        assert r.json()["status"] == "waiting", r.text
        approval = r.json()["approval"]["id"]
        worker.stop()  # days later: another worker, another server
        worker = start_worker(home, environ)
        r = httpx.post(f"{b.url}/v1/approvals/{approval}/approve", json={}, timeout=60)
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        assert r.json()["output"] == "paid: charged order 5"
        assert len(effects(tmp_path)) == 1
    finally:
        a.stop()
        b.stop()
        worker.stop()


def test_keel_worker_stops_gracefully_on_sigterm(
        home: Path, tmp_path: Path, url: str | None) -> None:
    environ = env(home, tmp_path, url=url)
    worker = start_worker(home, environ)
    wait_for(lambda: "keel worker:" in worker.log_text(), what="the worker to start")
    worker.proc.terminate()
    assert worker.proc.wait(timeout=60) == 0
    assert "stopped after 0 runs" in worker.log_text() and "Traceback" not in worker.log_text()


def test_keel_worker_on_an_unreachable_store_says_so_in_one_line_with_the_fix(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.operate.conftest import free_port, server_env

    r = subprocess.run([sys.executable, "-m", "keel", "worker"], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env=server_env(tmp_path, {
                           "KEEL_STORE_URL": f"postgresql://keel@127.0.0.1:{free_port()}/keel"}))
    assert r.returncode != 0
    assert "error:" in r.stderr and "fix:" in r.stderr and "Traceback" not in r.stderr, r.stderr
