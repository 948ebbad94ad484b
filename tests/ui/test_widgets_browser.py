"""Widget outputs in Keel's chat page (headless chromium): the widget a ChatKit client receives for
a run is the one the page draws, and its button sends the action back into the workflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")
from playwright.sync_api import Page, expect

from tests.operate.test_chatkit_widgets import ORDERS

DATA = {"order": "7", "status": "Shipped <b>today</b>"}


@pytest.fixture(scope="module")
def orders(ui_store: Any, server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    from keel.workflows import publish

    path: Path = tmp_path_factory.mktemp("widget-specs") / "orders.yaml"
    path.write_text(ORDERS, encoding="utf-8")
    publish(path, store=ui_store)
    return "orders"


def chatkit_widget(url: str, text: str) -> dict[str, Any]:
    """The widget a ChatKit client gets for ``text`` (the same server's /chatkit)."""
    r = httpx.post(f"{url}/chatkit", timeout=60, json={
        "type": "threads.create", "metadata": {"workflow": "orders"},
        "params": {"input": {"content": [{"type": "input_text", "text": text}], "attachments": [],
                             "inference_options": {}}}})
    assert r.status_code == 200, r.text
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    [item] = [e["item"] for e in events if e["type"] == "thread.item.done" and e["item"]["type"] == "widget"]
    return item["widget"]


def test_the_chat_page_draws_the_widget_chatkit_receives_and_its_button_calls_back(
        page: Page, server: Any, orders: str) -> None:
    widget = chatkit_widget(server.url, json.dumps(DATA))
    title, status, button = widget["children"]

    page.goto(f"/ui#/chat?workflow={orders}")
    expect(page.get_by_label("Workflow")).to_have_value(orders)
    box = page.get_by_role("textbox", name="Message")
    box.fill(json.dumps(DATA))
    box.press("Enter")
    drawn = page.locator(".msg.assistant .widget").first
    expect(drawn.locator(".w-title")).to_have_text(title["value"])  # "Order 7"
    expect(drawn.locator(".w-text")).to_have_text(status["value"])  # as text: the <b> is not markup
    expect(drawn.locator("b")).to_have_count(0)
    expect(drawn.get_by_role("button", name=button["label"])).to_be_visible()
    expect(page.locator(".msg.assistant").first.locator(".text")).to_have_text("")  # no JSON beside it

    with page.expect_request("**/ui/api/chat") as request:
        drawn.get_by_role("button", name="Cancel order").click()
    sent = request.value.post_data_json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert json.loads(sent[1]["content"]) == DATA  # the widget's answer goes back as its data
    answer = page.locator(".msg.assistant").nth(1)
    expect(answer.locator(".badge")).to_have_text("succeeded")
    turn = json.loads(answer.locator(".text").inner_text())  # the cancel agent echoes the action's turn
    assert turn["action"] == "order.cancel" and turn["payload"] == {"order": "7"}
    assert turn["from"]["node_id"] == "card"
    expect(drawn.get_by_role("button", name="Cancel order")).to_be_disabled()

    page.reload()  # the thread comes back with its widget (sessionStorage)
    expect(page.locator(".msg.assistant .widget .w-title")).to_have_text(title["value"])
