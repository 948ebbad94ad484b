"""The UI as shipped: a real ``keel serve`` subprocess with API keys, driven by chromium."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")
from playwright.sync_api import Browser, Page, expect

from tests.ui.conftest import TIMEOUT_MS
from tests.ui.demo import ECHO, REFUND


@dataclass
class Serve:
    url: str
    key: str
    revoked: str
    scoped: str
    """A key for ``echo-bot`` only."""
    capped: str
    """A key with a cap of 5 tokens a day."""
    approver: str
    """A key with the approver role: the web key may not decide the approvals of its own runs."""


def _keel(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")} | {"KEEL_HOME": str(home)}
    r = subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=120,
                       env=env, cwd=home)
    assert r.returncode == 0 and "Traceback" not in r.stderr, f"keel {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    home = tmp_path_factory.mktemp("ui-serve-home")
    for name, spec in (("echo", ECHO), ("refund", REFUND)):
        (home / f"{name}.yaml").write_text(spec)
        _keel(home, "workflows", "publish", str(home / f"{name}.yaml"))
    key = json.loads(_keel(home, "keys", "create", "web", "--workflow", "*", "--json"))
    old = json.loads(_keel(home, "keys", "create", "old", "--workflow", "*", "--json"))
    _keel(home, "keys", "revoke", old["id"])
    scoped = json.loads(_keel(home, "keys", "create", "echo-only", "--workflow", "echo-bot", "--json"))
    capped = json.loads(_keel(home, "keys", "create", "capped", "--workflow", "*", "--daily-tokens", "5", "--json"))
    approver = json.loads(_keel(home, "keys", "create", "desk", "--workflow", "*", "--approver", "--json"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (home / "serve.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")} | {"KEEL_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "keel", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (home / "serve.log").read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "keel serve did not answer /healthz within 60 s"
        time.sleep(0.1)
    try:
        yield Serve(url, key["secret"], old["secret"], scoped["secret"], capped["secret"], approver["secret"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def serve_page(browser: Browser, serve: Serve) -> Iterator[Page]:
    context = browser.new_context(base_url=serve.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def test_keel_serve_redirects_to_the_ui_and_a_revoked_key_is_refused_until_replaced(serve_page: Page,
                                                                                   serve: Serve) -> None:
    page = serve_page
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/ui(#.*)?$"))
    # no key at all: the page says plainly that this server requires one, and where keys come from
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("This server requires an API key.")
    expect(alert).to_contain_text("keel keys create")
    expect(alert).not_to_contain_text("refused")  # no key was sent: nothing was refused
    # a revoked key, saved with the API key dialog: still refused, with the server's message
    page.get_by_role("button", name="API key").click()
    page.get_by_label("Key", exact=True).fill(serve.revoked)
    page.get_by_role("dialog").get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("the API key is unknown or revoked")
    # the fix: a valid key, typed where the error is, and Retry
    page.get_by_role("alert").get_by_label("New API key").fill(serve.key)
    page.get_by_role("alert").get_by_role("button", name="Save key and retry").click()
    expect(page.get_by_label("Workflow")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)


def test_chat_approval_trace_and_dashboard_on_keel_serve(serve_page: Page, serve: Serve) -> None:
    page = serve_page
    page.add_init_script(f"localStorage.setItem('keel.apiKey', {json.dumps(serve.key)})")
    page.goto("/ui#/chat?workflow=echo-bot")
    box = page.get_by_role("textbox", name="Message")
    box.fill("Hello, keel serve")
    box.press("Enter")
    expect(page.locator(".msg.assistant .text").last).to_have_text("Hello, keel serve")

    page.goto("/ui#/chat?workflow=refund")
    box.fill("Refund please")
    box.press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer.get_by_role("button", name="Approve")).to_be_visible()
    # Separation of duties: the key that asked may not approve; the approver's key does.
    page.evaluate(f"localStorage.setItem('keel.apiKey', {json.dumps(serve.approver)})")
    answer.get_by_role("button", name="Approve").click()
    expect(answer.locator(".text")).to_have_text(re.compile(r"^Refund sent: approved by key:\w+ \(desk\)$"))
    expect(answer.locator(".badge")).to_have_text("succeeded")
    page.evaluate(f"localStorage.setItem('keel.apiKey', {json.dumps(serve.key)})")  # the run is the web key's
    answer.get_by_role("link", name="Open trace").click()
    expect(page.get_by_role("tree", name="Trace").get_by_role("treeitem")).to_have_count(4)

    page.goto("/ui#/dashboard?range=5m")
    row = page.locator('#dash-by-workflow tr[data-key="echo-bot"]')
    expect(row.locator("td").first).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(row.locator("td").nth(2)).to_have_text(re.compile(r"^\d+(\.\d+)? (ms|s)$"))
    expect(page.locator('#dash-by-workflow tr[data-key="refund"]')).to_be_visible()


def test_the_ui_api_keeps_to_the_key_scope(serve: Serve) -> None:
    with httpx.Client(base_url=serve.url, timeout=30) as admin:
        admin.headers["Authorization"] = f"Bearer {serve.key}"
        r = admin.post("/ui/api/chat", json={"workflow": "refund", "messages": [{"role": "user", "content": "x"}]})
        approval = re.search(r'event: approval\ndata: (.*)\n', r.text).group(1)
        approval_id, run_id = json.loads(approval)["id"], re.search(r'"run_id": "([^"]+)"', r.text).group(1)
    with httpx.Client(base_url=serve.url, timeout=30, headers={"Authorization": f"Bearer {serve.scoped}"}) as c:
        assert [w["name"] for w in c.get("/ui/api/workflows").json()["workflows"]] == ["echo-bot"]
        r = c.post("/ui/api/chat", json={"workflow": "refund", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 403 and "not scoped to workflow 'refund'" in r.json()["error"]["message"]
        # Another key's approval and run, of a workflow out of scope: not found (ids do not leak).
        assert c.post(f"/ui/api/approvals/{approval_id}/approve").status_code == 404
        assert c.get(f"/ui/api/runs/{run_id}").status_code == 404
        assert {r["workflow"] for r in c.get("/ui/api/runs").json()["runs"]} <= {"echo-bot"}
        r = c.post("/ui/api/chat", json={"workflow": "echo-bot", "messages": [{"role": "user", "content": "ok"}]})
        assert r.status_code == 200 and "event: done" in r.text
        c.get("/ui/api/runs")  # the access log is written in batches: wait for the chat's row
        deadline = time.monotonic() + 20
        while not (d := c.get("/ui/api/metrics?range=5m").json())["requests"]["groups"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert {g["key"] for g in d["requests"]["groups"]} == {"echo-bot"}
        assert {g["key"] for g in d["models"]["groups"]} == {"scripted:echo"}


def test_ui_chat_counts_against_the_key_daily_cap(serve: Serve) -> None:
    with httpx.Client(base_url=serve.url, timeout=30, headers={"Authorization": f"Bearer {serve.capped}"}) as c:
        chat = {"workflow": "echo-bot", "messages": [{"role": "user", "content": "one two three four five six"}]}
        first = c.post("/ui/api/chat", json=chat)
        assert first.status_code == 200 and "event: done" in first.text
        second = c.post("/ui/api/chat", json=chat)  # the first one's tokens went over the cap
        assert second.status_code == 429, second.text
        assert second.json()["error"]["message"]
