"""Widget outputs over ChatKit's protocol, against a real ``keel serve``: an Agent node's structured
answer arrives as a ChatKit widget (read with openai-chatkit's own types), a button in it sends an
action back into the thread's workflow, and the OpenAI-compatible endpoint returns the data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from chatkit.types import ThreadStreamEvent, WidgetItem
from pydantic import TypeAdapter

from tests.operate.conftest import Server, publish, start_server

# The model (scripted:echo) answers with the user's message: a JSON message is the structured answer.
# A widget action comes back as a turn whose text names the action, and the If/else routes it.
ORDERS = """
name: orders
nodes:
  - {id: start, type: start}
  - {id: route, type: if_else, branches: [{name: action, condition: 'input_as_text.contains("order.cancel")'}]}
  - id: card
    type: agent
    model: scripted:echo
    output_schema:
      type: object
      properties: {order: {type: string}, status: {type: string}}
      required: [order, status]
      additionalProperties: false
    widget:
      name: order
      template: >-
        {"type": "Card", "children": [{"type": "Title", "value": "Order {{ order }}"},
        {"type": "Text", "value": "{{ status }}"},
        {"type": "Button", "label": "Cancel order",
         "onClickAction": {"type": "order.cancel", "payload": {"order": {{ order | tojson }}}}}]}
  - {id: cancel, type: agent, model: scripted:echo}
  - {id: done, type: end}
  - {id: cancelled, type: end}
edges:
  - {from: start, to: route}
  - {from: route, port: action, to: cancel}
  - {from: route, port: else, to: card}
  - {from: card, to: done}
  - {from: cancel, to: cancelled}
"""

LISTED = """
name: listed
nodes:
  - {id: start, type: start}
  - id: bot
    type: agent
    model: scripted:echo
    output_schema:
      type: object
      properties:
        title: {type: string}
        items: {type: array, items: {type: object, properties: {title: {type: string}, detail: {type: string}},
                                     required: [title, detail]}}
      required: [title, items]
    widget: list
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
"""

SIGNUP = """
name: signup
nodes:
  - {id: start, type: start}
  - {id: route, type: if_else, branches: [{name: submitted, condition: 'input_as_text.contains("keel.form.submit")'}]}
  - id: ask
    type: agent
    model: scripted:echo
    output_schema:
      type: object
      properties:
        title: {type: string}
        submit_label: {type: string}
        fields: {type: array, items: {type: object, properties: {name: {type: string}, label: {type: string},
                                                                 placeholder: {type: string}}}}
      required: [title, submit_label, fields]
    widget: form
  - {id: thanks, type: agent, model: scripted:echo}
  - {id: done, type: end}
  - {id: finished, type: end}
edges:
  - {from: start, to: route}
  - {from: route, port: submitted, to: thanks}
  - {from: route, port: else, to: ask}
  - {from: ask, to: done}
  - {from: thanks, to: finished}
"""

QUOTE = """
name: quote
nodes:
  - {id: start, type: start}
  - id: offer
    type: agent
    model: scripted:echo
    output_schema: {type: object, properties: {title: {type: string}, body: {type: string}}, required: [title, body]}
    widget: card
  - {id: ask, type: human_approval, message: "Accept the quote?", allow_requester: true}
  - {id: ok, type: end, output: "'accepted'"}
  - {id: nope, type: end, output: "'declined'"}
edges:
  - {from: start, to: offer}
  - {from: offer, to: ask}
  - {from: ask, port: approved, to: ok}
  - {from: ask, port: rejected, to: nope}
"""

EVENTS: TypeAdapter[Any] = TypeAdapter(ThreadStreamEvent)


@pytest.fixture(scope="module")
def widget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("widgets-home")
    publish(home, ORDERS, "orders")
    publish(home, LISTED, "listed")
    publish(home, SIGNUP, "signup")
    publish(home, QUOTE, "quote")
    server = start_server(home)
    try:
        yield server
    finally:
        server.stop()


def message(text: str) -> dict[str, Any]:
    return {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}


def stream(server: Server, doc: dict[str, Any]) -> list[Any]:
    """The request's Server-Sent Events, parsed as ChatKit's own event types."""
    r = httpx.post(f"{server.url}/chatkit", json=doc, timeout=60)
    assert r.status_code == 200, r.text
    return [EVENTS.validate_json(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]


def widgets(evs: list[Any]) -> list[WidgetItem]:
    return [e.item for e in evs if e.type == "thread.item.done" and isinstance(e.item, WidgetItem)]


def texts(evs: list[Any]) -> list[str]:
    return [e.item.content[0].text for e in evs if e.type == "thread.item.done"
            and e.item.type == "assistant_message"]


def test_a_chatkit_client_receives_the_widget_and_its_button_calls_back_into_the_workflow(
        widget_server: Server) -> None:
    evs = stream(widget_server, {"type": "threads.create", "metadata": {"workflow": "orders"},
                                 "params": {"input": message('{"order": "7", "status": "Shipped \\"today\\""}')}})
    thread = evs[0].thread.id
    [item] = widgets(evs)
    doc = item.widget.model_dump(exclude_none=True)
    assert doc["type"] == "Card"
    assert doc["children"][0] == {"type": "Title", "value": "Order 7"}
    assert doc["children"][1] == {"type": "Text", "value": 'Shipped "today"'}  # escaped, not broken JSON
    button = doc["children"][2]
    assert button["onClickAction"]["type"] == "order.cancel" and button["onClickAction"]["payload"] == {"order": "7"}
    assert texts(evs) == []  # the answer is the widget's data: no JSON message beside it

    pressed = stream(widget_server, {"type": "threads.custom_action", "params": {
        "thread_id": thread, "item_id": item.id, "action": {"type": "order.cancel", "payload": {"order": "7"}}}})
    [said] = texts(pressed)
    turn = json.loads(said)  # the cancel agent echoes the turn the action became
    assert turn["action"] == "order.cancel" and turn["payload"] == {"order": "7"}
    assert turn["from"]["node_id"] == "card" and len(turn["from"]["run_id"]) == 32
    runs = httpx.get(f"{widget_server.url}/v1/runs", params={"workflow": "orders"}).json()["data"]
    assert {r["id"] for r in runs} >= {turn["from"]["run_id"]} and len(runs) == 2
    action_run = next(r for r in runs if r["id"] != turn["from"]["run_id"])
    assert [(m["role"], json.loads(m["content"])) for m in action_run["input"]["messages"]] == [
        ("user", {"order": "7", "status": 'Shipped "today"'}),
        ("assistant", {"order": "7", "status": 'Shipped "today"'}),  # the widget's data
        ("user", turn)]

    # An action the widget does not declare (or a forged payload) starts nothing.
    for action in ({"type": "order.refund", "payload": {"order": "7"}},
                   {"type": "order.cancel", "payload": {"order": "8"}}):
        refused = stream(widget_server, {"type": "threads.custom_action", "params": {
            "thread_id": thread, "item_id": item.id, "action": action}})
        assert [e.type for e in refused if e.type != "stream_options"] == ["error"]
        assert "does not belong to a widget of this thread" in refused[-1].message
    assert len(httpx.get(f"{widget_server.url}/v1/runs", params={"workflow": "orders"}).json()["data"]) == 2

    stored = httpx.post(f"{widget_server.url}/chatkit", json={"type": "items.list", "params": {
        "thread_id": thread, "order": "asc"}}).json()["data"]
    assert [i["type"] for i in stored] == ["user_message", "widget", "assistant_message"]


def test_a_gallery_list_widget_and_the_openai_endpoint_returns_the_data(widget_server: Server) -> None:
    data = {"title": "Open orders", "items": [{"title": "Order 7", "detail": "shipped"},
                                              {"title": "Order 9", "detail": "packing"}]}
    evs = stream(widget_server, {"type": "threads.create", "metadata": {"workflow": "listed"},
                                 "params": {"input": message(json.dumps(data))}})
    [item] = widgets(evs)
    doc = item.widget.model_dump(exclude_none=True)
    assert doc["type"] == "ListView" and doc["status"] == {"text": "Open orders"}
    shown = [[c["value"] for c in row["children"][0]["children"]] for row in doc["children"]]
    assert shown == [["Order 7", "shipped"], ["Order 9", "packing"]]

    r = httpx.post(f"{widget_server.url}/v1/chat/completions", timeout=60, json={
        "model": "listed", "messages": [{"role": "user", "content": json.dumps(data)}]})
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == data


def test_a_gallery_form_submits_its_fields_back_into_the_workflow(widget_server: Server) -> None:
    form = {"title": "Where to?", "submit_label": "Book",
            "fields": [{"name": "city", "label": "City", "placeholder": "Oslo"}]}
    evs = stream(widget_server, {"type": "threads.create", "metadata": {"workflow": "signup"},
                                 "params": {"input": message(json.dumps(form))}})
    [item] = widgets(evs)
    [inner] = item.widget.model_dump(exclude_none=True)["children"]
    assert inner["type"] == "Form" and inner["onSubmitAction"]["type"] == "keel.form.submit"
    assert [c["children"][1]["name"] for c in inner["children"] if c["type"] == "Col"] == ["city"]
    submitted = stream(widget_server, {"type": "threads.custom_action", "params": {
        "thread_id": evs[0].thread.id, "item_id": item.id,
        "action": {"type": "keel.form.submit", "payload": {"city": "Bergen"}}}})
    [said] = texts(submitted)
    assert json.loads(said)["payload"] == {"city": "Bergen"} and json.loads(said)["from"]["node_id"] == "ask"


def test_a_widget_before_an_approval_shows_with_the_card_and_not_again_after_it(widget_server: Server) -> None:
    evs = stream(widget_server, {"type": "threads.create", "metadata": {"workflow": "quote"},
                                 "params": {"input": message('{"title": "Quote 12", "body": "40 EUR"}')}})
    quote, card = widgets(evs)
    assert quote.widget.model_dump(exclude_none=True)["children"][0]["value"] == "Quote 12"
    approve = next(b["onClickAction"] for b in card.widget.model_dump(exclude_none=True)["children"][-1]["children"]
                   if b["label"] == "Approve")
    pressed = stream(widget_server, {"type": "threads.custom_action", "params": {
        "thread_id": evs[0].thread.id, "item_id": card.id, "action": approve}})
    assert widgets(pressed) == [] and texts(pressed) == ["accepted"]
