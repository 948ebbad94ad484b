"""The web UI's chat never shows unverified text as the answer (issue 14, item 3).

An Agent node's words that a later Guardrails check may withdraw stream in as a draft,
styled and labelled "checking…"; when the check fails, the draft leaves the page at once
with a note naming the check, and the workflow's own answer takes its place; a draft the
check lets through becomes the answer. A real `keel serve` subprocess (open mode) runs the
workflow; its model is the OpenAI stub behind Keel's real client, held after its first
words so the test sees the draft while the model is still writing (CONTRIBUTING rule 16)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.openai_stub import OpenAIStub
from tests.operate.conftest import Server, publish, start_server
from tests.ui.conftest import TIMEOUT_MS

pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")
from playwright.sync_api import Page, expect

SOURCE = "Hotels are paid up to 180 euros a night in capital cities."
SUPPORTED = "Hotels are paid up to 180 euros a night in capital cities [1]."
UNSUPPORTED = "Hotels are paid up to 150 euros a night in capital cities [1]."  # the source says 180
REFUSAL = "I could not find an answer the handbook supports."

SPEC = f"""
name: checked
description: answers, then checks the answer against its source
nodes:
  - {{id: start, type: start}}
  - {{id: answer, type: agent, model: "openai:gpt-4.1-mini", instructions: "Answer from the source."}}
  - id: grounded
    type: guardrails
    text: input.output_text
    checks:
      - {{type: hallucination, sources: "['{SOURCE}']", min_overlap: 0.5}}
  - id: done
    type: end
    output: "{{'answer': nodes.answer.output_text, 'sources': ['travel.md']}}"
  - id: unsure
    type: end
    output: "{{'answer': '{REFUSAL}'}}"
edges:
  - {{from: start, to: answer}}
  - {{from: answer, to: grounded}}
  - {{from: grounded, port: pass, to: done}}
  - {{from: grounded, port: fail, to: unsure}}
"""


@pytest.fixture(scope="module")
def stub() -> Iterator[OpenAIStub]:
    s = OpenAIStub()
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def checked_server(tmp_path_factory: pytest.TempPathFactory, stub: OpenAIStub) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("drafts-home")
    publish(home, SPEC, "checked")
    server = start_server(home, env={"OPENAI_API_KEY": "sk-test-not-real", "OPENAI_BASE_URL": stub.base_url})
    try:
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()


@pytest.fixture
def chat(browser: Any, checked_server: Server) -> Iterator[Page]:
    context = browser.new_context(base_url=checked_server.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto("/ui#/chat?workflow=checked")
    expect(page.get_by_label("Workflow")).to_have_value("checked")
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _send(page: Page, text: str) -> Any:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")
    return page.locator(".msg.assistant").last


def test_a_draft_the_check_refuses_is_withdrawn_visibly(chat: Page, stub: OpenAIStub) -> None:
    gate = threading.Event()
    stub.answer(UNSUPPORTED, gate=gate)
    answer = _send(chat, "How much may a hotel cost in a capital city?")
    try:
        # while the model is still writing: its first words show as a draft, not as the answer
        expect(answer.locator(".text.provisional")).to_have_text("Hotel")
        expect(answer.locator(".draft-note")).to_contain_text("checking…")
    finally:
        gate.set()
    expect(answer.locator(".trace-link")).to_be_visible()  # the run has ended
    expect(answer.locator(".draft-note.withdrawn")).to_contain_text("Draft withdrawn")
    expect(answer.locator(".draft-note.withdrawn")).to_contain_text("“grounded” did not pass")
    expect(answer.locator(".text")).to_have_text(REFUSAL)
    expect(chat.locator("#thread")).not_to_contain_text("150 euros")
    expect(chat.locator(".provisional")).to_have_count(0)
    expect(chat.locator("#thread")).not_to_contain_text("checking…")

    # the thread comes back the same after another page: the withdrawal note, not the draft
    chat.get_by_role("link", name="Runs").click()
    expect(chat.get_by_role("heading", name="Runs")).to_be_visible()
    chat.get_by_role("link", name="Chat").click()
    expect(chat.locator(".msg.assistant .draft-note.withdrawn")).to_contain_text("“grounded” did not pass")
    expect(chat.locator("#thread")).not_to_contain_text("150 euros")


def test_a_draft_the_check_lets_through_becomes_the_answer(chat: Page, stub: OpenAIStub) -> None:
    gate = threading.Event()
    stub.answer(SUPPORTED, gate=gate)
    answer = _send(chat, "How much may a hotel cost in a capital city?")
    try:
        expect(answer.locator(".draft-note")).to_contain_text("checking…")
    finally:
        gate.set()
    expect(answer.locator(".trace-link")).to_be_visible()
    expect(answer.locator(".text")).to_have_text(SUPPORTED)
    expect(answer.locator(".text.provisional")).to_have_count(0)
    expect(answer.locator(".draft-note")).to_have_count(0)
