"""The first hour in the browser (issue 14, "What it must show"): the newcomer's own
`keel up demo` (a real subprocess, a fresh KEEL_HOME, the template's real grounding check),
its model the OpenAI stub behind Keel's real client, driven in Debian's chromium.

- the chat: an answer the grounding check refuses leaves none of its unverified text visible
  once the check has run; a supported answer shows its sources; back on the chat after
  another page, the thread comes back with both, their citations and trace links;
- the dashboard: a run that failed counts as a failed run, not as 0 % errors.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")
from playwright.sync_api import Browser, Page, expect

from tests.openai_stub import OpenAIStub
from tests.operate.conftest import server_env
from tests.ui.conftest import TIMEOUT_MS

GROUNDED = "Full-time employees have 27 days of paid holiday a year, plus public holidays [1]."
HALLUCINATED = "Hotels are paid up to 150 euros a night in capital cities [1]."  # the handbook says 180
FAST = ("--embedder", "test-hashing")  # the ingest is the real pipeline; tests/test_first_hour.py uses the default


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    s = OpenAIStub()
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub) -> Iterator[str]:
    """`keel up demo --port 0` in an empty folder of a fresh KEEL_HOME; its URL."""
    home, cwd = tmp_path_factory.mktemp("fh-ui-home"), tmp_path_factory.mktemp("fh-ui")
    log = cwd / "up.log"
    env = server_env(home, {"OPENAI_API_KEY": "sk-test-not-real", "OPENAI_BASE_URL": stub.base_url})
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "keel", "up", "demo", "--port", "0", *FAST], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        url = _url(proc, log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()


def _url(proc: subprocess.Popen, log: Path) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = re.search(r"UI\s+(http://127\.0\.0\.1:\d+)/ui", log.read_text(errors="replace"))
        if found:
            try:
                if httpx.get(f"{found.group(1)}/healthz", timeout=5).status_code == 200:
                    return found.group(1)
            except httpx.TransportError:
                pass
        if proc.poll() is not None:
            raise AssertionError(f"keel up exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    raise AssertionError(f"keel up did not serve within 240 s:\n{log.read_text()}")


@pytest.fixture
def page(browser: Browser, demo: str) -> Iterator[Page]:
    context = browser.new_context(base_url=demo, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _ask(page: Page, text: str) -> Any:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".trace-link")).to_be_visible()  # the run has ended
    return answer


def test_the_chat_leaves_no_unverified_text_and_comes_back_with_its_citations(page: Page, stub: OpenAIStub) -> None:
    page.goto("/ui#/chat")
    expect(page.get_by_label("Workflow")).to_have_value("demo")  # the project's own workflow

    stub.answer(HALLUCINATED)
    refused = _ask(page, "How much may a hotel cost in a capital city?")
    expect(refused.locator(".text")).not_to_have_text(re.compile(r"^\s*$"))
    expect(page.locator("#thread")).not_to_contain_text("150 euros")  # the check withdrew it
    expect(page.locator("#thread")).not_to_contain_text("hallucination")  # no internal diagnostics

    stub.answer(GROUNDED)
    answered = _ask(page, "How many holiday days do I get?")
    expect(answered.locator(".text")).to_contain_text("27 days of paid holiday")
    expect(answered.locator(".citation").first).to_be_visible()
    expect(answered.locator(".citations")).to_contain_text("Time off · holidays")
    cited = answered.locator(".citation").count()

    # away to another page and back: the thread is whole again
    page.get_by_role("link", name="Runs").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    page.get_by_role("link", name="Chat").click()
    answers = page.locator(".msg.assistant")
    expect(answers).to_have_count(2)
    expect(page.locator(".msg.user")).to_have_count(2)
    expect(answers.nth(1).locator(".text")).to_contain_text("27 days of paid holiday")
    expect(answers.nth(1).locator(".citation")).to_have_count(cited)
    expect(answers.nth(1).locator(".trace-link")).to_be_visible()
    expect(answers.nth(0).locator(".trace-link")).to_be_visible()
    expect(page.locator("#thread")).not_to_contain_text("150 euros")


def test_a_failed_run_counts_as_an_error_on_the_dashboard(page: Page, stub: OpenAIStub) -> None:
    page.goto("/ui#/chat")
    stub.status(400, "the model refused the request")  # not retried: the Agent node fails, the run fails
    failed = _ask(page, "What is the parking policy?")
    expect(failed.locator(".badge")).to_have_text("failed")
    page.goto("/ui#/dashboard?range=15m&workflow=demo")
    kpi = page.locator("#kpi-failed-runs")
    expect(kpi.locator(".kpi-value")).not_to_have_text(re.compile(r"^\s*0(\.0)?\s*%?\s*$"))
    expect(kpi).to_contain_text(re.compile(r"\b1 of \d+ runs?\b"))
    expect(page.locator('#dash-by-workflow tr[data-key="demo"] td[data-col="Failed runs"]')).to_contain_text("1 (")
