"""A network fault (issue 17): PostgreSQL unreachable for 10 s in the middle of a load (a TCP proxy
between Keel and the server, cut). Requests during the cut get a clear 503 (JSON error, Retry-After,
no traceback), every run accepted before, during or after finishes, each side effect once, and the
runs go on by themselves when the network returns."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.operate.conftest import start_server
from tests.operate.tcp_proxy import Proxy
from tests.operate.workers import PAY, effects, env, publish_to, start_worker, wait_for


@pytest.mark.slow
def test_postgresql_unreachable_for_10_s_mid_load_gives_503s_and_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    publish_to(home, PAY, "pay", url=pg_url)
    parts = urlsplit(pg_url)
    proxy = Proxy(parts.port)
    via_proxy = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{proxy.port}")))
    environ = env(home, tmp_path, url=via_proxy)
    server = start_server(home, "--no-execute", env=environ)
    worker = start_worker(home, environ, "--concurrency", "8")
    wait_for(lambda: "keel worker:" in worker.log_text(), what="the worker to start")
    answers: list[tuple[float, int, dict]] = []
    accepted: list[str] = []
    stop = threading.Event()

    def load() -> None:
        order = 0
        while not stop.is_set():
            order += 1
            try:
                r = httpx.post(f"{server.url}/v1/workflows/pay/runs", json={"input": str(order), "wait": False},
                               timeout=60)
            except httpx.TransportError as e:
                raise AssertionError(f"the server did not answer: {e}") from None
            body = r.json()
            answers.append((time.monotonic(), r.status_code, {**body, "retry_after": r.headers.get("Retry-After")}))
            if r.status_code == 202:
                accepted.append(body["id"])
            time.sleep(0.05)

    clients = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    try:
        for c in clients:
            c.start()
        wait_for(lambda: len(accepted) >= 10, what="the load to get going")
        proxy.cut()
        cut_at = time.monotonic()
        time.sleep(10)
        proxy.restore()
        restored_at = time.monotonic()
        wait_for(lambda: any(t > restored_at and s == 202 for t, s, _ in answers), timeout=60,
                 what="a run accepted after the network returned")
        time.sleep(2)
        stop.set()
        for c in clients:
            c.join(timeout=60)

        from keel.store import open_store

        store = open_store(url=pg_url)
        try:
            try:
                wait_for(lambda: store.query("SELECT COUNT(*) AS n FROM workflow_runs WHERE status = 'running'")
                         [0]["n"] == 0, timeout=120, what="every run to finish after the fault")
            except AssertionError:
                print(store.query("SELECT id, owner, lease_until, seq, current_node FROM workflow_runs"
                                  " WHERE status = 'running'"), store.query("SELECT * FROM run_queue"),
                      time.time(), worker.log_text()[-3000:])
                raise
            runs = {r["id"]: r for r in store.query("SELECT id, status FROM workflow_runs")}
        finally:
            store.close()
    finally:
        stop.set()
        proxy.close()
        server.stop()
        worker.stop()

    statuses = {s for _, s, _ in answers}
    assert statuses <= {202, 503}, statuses
    during = [a for t, s, a in answers if s == 503]
    assert during, "no request failed while PostgreSQL was unreachable"
    assert all(cut_at <= t <= restored_at + 15 for t, s, _ in answers if s == 503)
    for a in during:
        assert a["error"]["code"] == "store_unavailable" and a["retry_after"], a
        assert "unreachable" in a["error"]["message"] or "unavailable" in a["error"]["message"], a
    # nothing accepted was lost: every accepted run is stored and finished, its effect done once
    assert set(accepted) <= set(runs)
    assert {runs[i]["status"] for i in accepted} == {"succeeded"}
    per_run: dict[str, int] = {}
    for _, run_id in effects(tmp_path):
        per_run[run_id] = per_run.get(run_id, 0) + 1
    assert all(per_run.get(i) == 1 for i in accepted), per_run
    assert set(per_run.values()) == {1}
    assert "Traceback" not in server.log_text()
    print(f"\n{len(accepted)} runs accepted, {len(during)} requests answered 503 during the 10 s cut")
