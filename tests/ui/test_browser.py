"""The web UI in a real browser (headless chromium) against a real server and SQLite store."""

from __future__ import annotations

import json
import re

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")
from playwright.sync_api import Page, expect

from tests.ui.demo import queue_helper_replies


def open_chat(page: Page, workflow: str) -> None:
    page.goto(f"/ui#/chat?workflow={workflow}")
    expect(page.get_by_label("Workflow")).to_have_value(workflow)


def send(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def test_chat_streams_the_answer_and_links_the_trace(page: Page) -> None:
    open_chat(page, "echo-bot")
    expect(page.get_by_text("Start a conversation with echo-bot")).to_be_visible()
    send(page, "Hello from the browser")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".text")).to_have_text("Hello from the browser")
    expect(answer.locator("[aria-live=polite]")).to_have_count(1)
    expect(answer.locator(".badge")).to_have_text("succeeded")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    # the thread goes on with the history, and New thread clears it
    send(page, "Second message")
    expect(page.locator(".msg.assistant .text")).to_have_text(["Hello from the browser", "Second message"])
    page.get_by_role("button", name="New thread").click()
    expect(page.locator(".msg")).to_have_count(0)


def test_tool_calls_show_inline(page: Page) -> None:
    queue_helper_replies()
    open_chat(page, "order-helper")
    send(page, "Where is my order A-1001?")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".text")).to_have_text("Order A-1001 has shipped with DHL and should arrive on Thursday.")
    tool = answer.locator("details.tool")
    expect(tool.locator("summary")).to_contain_text("lookup_order")
    tool.locator("summary").click()
    expect(tool).to_contain_text('"order_id": "A-1001"')
    expect(tool).to_contain_text("DHL")


def test_approve_a_pending_approval_then_open_the_trace(page: Page) -> None:
    open_chat(page, "refund")
    send(page, "Please refund my order")
    answer = page.locator(".msg.assistant").last
    card = answer.locator(".approval")
    expect(card).to_contain_text("Refund order A-1001 ($42.50)?")
    expect(answer.locator(".badge")).to_have_text("waiting")
    # focus is on Approve: the keyboard answers it
    expect(card.get_by_role("button", name="Approve")).to_be_focused()
    page.keyboard.press("Enter")
    expect(answer.locator(".text")).to_have_text("Refund sent: approved by web UI")
    expect(answer.locator(".badge")).to_have_text("succeeded")

    answer.get_by_role("link", name="Open trace").click()
    expect(page).to_have_url(re.compile(r"#/runs/[^/]+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("refund")
    expect(page.locator("h1 .badge")).to_have_text("succeeded")
    tree = page.get_by_role("tree", name="Trace")
    ask = tree.get_by_role("treeitem").filter(has_text="node ask")
    expect(ask).to_be_visible()
    ask.click()
    detail = page.locator("#span-detail")
    expect(detail.get_by_role("heading", level=2)).to_have_text("node ask")
    expect(detail).to_contain_text("approved")  # the edge the node took
    # keyboard: the tree moves with the arrow keys
    ask.focus()
    page.keyboard.press("ArrowDown")
    expect(tree.locator("[aria-selected=true]")).not_to_contain_text("node ask")


def test_runs_list_filters_by_status(page: Page, server) -> None:
    open_chat(page, "refund")
    send(page, "Another refund")
    expect(page.locator(".msg.assistant .approval")).to_be_visible()
    page.get_by_role("link", name="Runs").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    page.get_by_label("Status").select_option("waiting")
    expect(page).to_have_url(re.compile(r"#/runs\?status=waiting$"))
    rows = page.locator("table.data tbody tr")
    # the unfiltered list may still be on screen for a moment: wait for the filtered one
    expect(rows.locator(".badge").filter(has_not_text=re.compile(r"^waiting$"))).to_have_count(0)
    expect(rows.locator(".badge", has_text="waiting").first).to_be_visible()
    badges = rows.locator(".badge").all_inner_texts()
    assert badges and set(badges) == {"waiting"}, badges
    page.get_by_label("Workflow").select_option("echo-bot")
    expect(page.get_by_text("No runs match these filters")).to_be_visible()


def test_runs_list_keeps_the_newest_answer_when_an_older_one_arrives_late(page: Page, server) -> None:
    """The unfiltered list still in flight when a filter is chosen must not replace the filtered one."""
    open_chat(page, "echo-bot")
    send(page, "a run that succeeds")
    expect(page.locator(".msg.assistant .badge")).to_have_text("succeeded")
    open_chat(page, "refund")
    send(page, "One more refund")
    expect(page.locator(".msg.assistant .approval")).to_be_visible()
    held: list = []
    page.route(re.compile(r"/ui/api/runs\?$"), lambda route: held.append(route))  # hold the unfiltered answer
    page.get_by_role("link", name="Runs").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    page.get_by_label("Status").select_option("waiting")
    rows = page.locator("table.data tbody tr")
    expect(rows.locator(".badge", has_text="waiting").first).to_be_visible()
    assert len(held) == 1, held
    held[0].continue_()
    page.wait_for_timeout(500)  # give the late answer every chance to be drawn
    badges = rows.locator(".badge").all_inner_texts()
    assert badges and set(badges) == {"waiting"}, badges


def _count(page: Page, workflow: str) -> int:
    cell = page.locator(f'#dash-by-workflow tr[data-key="{workflow}"] td').first
    return int(cell.inner_text()) if cell.count() else 0


def test_dashboard_shows_the_requests_just_made(page: Page, server) -> None:
    page.goto("/ui#/dashboard?range=15m")
    expect(page.locator("#dash-updated")).to_contain_text("Updated")
    before = _count(page, "echo-bot")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(3):
            r = client.post("/ui/api/chat", json={"workflow": "echo-bot",
                                                  "messages": [{"role": "user", "content": f"ping {i}"}]})
            assert r.status_code == 200 and "event: done" in r.text
    # no reload: the page refreshes itself every 5 s
    row = page.locator('#dash-by-workflow tr[data-key="echo-bot"]')
    expect(row.locator("td").first).to_have_text(str(before + 3))
    latency = row.locator("td").nth(2)
    expect(latency).to_have_text(re.compile(r"^\d+(\.\d+)? (ms|s)$"))
    expect(page.locator("#kpi-requests .kpi-value")).not_to_have_text("0")
    expect(page.locator("#slo")).to_contain_text("Error budget left")
    canvases = page.locator("figure.chart canvas")
    expect(canvases).to_have_count(8)
    # the per-model table counts the scripted echo model's calls
    expect(page.locator('#dash-by-model tr[data-key="scripted:echo"]')).to_be_visible()


def test_eval_report_renders_its_charts_and_compares(page: Page, evals_made) -> None:
    baseline, candidate = evals_made
    page.goto("/ui#/evals")
    expect(page.get_by_role("link", name="capitals")).to_have_count(2)
    page.locator(f'a[href="#/evals/{candidate}"]').click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Eval capitals")
    expect(page.locator(".card")).to_have_count(2)
    charts = page.locator("figure.chart")
    # per-model pass rate, per-grader pass rate, one score distribution per grader
    expect(charts).to_have_count(4)
    for i in range(4):
        canvas = charts.nth(i).locator("canvas")
        expect(canvas).to_be_visible()
        box = canvas.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50
    expect(charts.nth(0).locator(".chart-data table")).to_contain_text("small")

    page.get_by_role("link", name="← Evals").click()
    page.get_by_label(re.compile(f"Select capitals \\({baseline}\\)")).check()
    page.get_by_label(re.compile(f"Select capitals \\({candidate}\\)")).check()
    page.get_by_role("button", name="Compare selected").click()
    section = page.locator("section.compare")
    expect(section).to_contain_text(f"Compared with {baseline}")
    expect(section.locator("tbody tr")).to_have_count(2)


def test_a_server_error_shows_the_message_and_retry_works(page: Page) -> None:
    failures = []

    def fail_once(route) -> None:
        if failures:
            route.continue_()
            return
        failures.append(route.request.url)
        route.fulfill(status=500, content_type="application/json",
                      body=json.dumps({"error": {"message": "database is locked", "hint": "try again"}}))

    page.route(lambda url: "/ui/api/runs" in url and "/ui/api/runs/" not in url, fail_once)
    page.goto("/ui#/runs")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The server had a problem.")
    expect(alert).to_contain_text("database is locked")
    retry = alert.get_by_role("button", name="Retry")
    expect(retry).to_be_focused()
    retry.click()
    expect(page.locator("table.data tbody tr").first).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    assert len(failures) == 1


def test_a_connection_lost_while_streaming_is_reported_and_retry_reads_the_run(page: Page, server) -> None:
    # a real run, then a chat whose stream stops after announcing it (as when the network drops)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.post("/ui/api/chat", json={"workflow": "echo-bot",
                                              "messages": [{"role": "user", "content": "finished in the server"}]})
    run_id = re.search(r'"run_id": "([^"]+)"', r.text).group(1)
    page.route("**/ui/api/chat", lambda route: route.fulfill(
        status=200, content_type="text/event-stream",
        body=f'event: run\ndata: {{"run_id": "{run_id}"}}\n\nevent: node\ndata: {{"kind": "node_started", '
             f'"run_id": "{run_id}", "node_id": "bot", "node_type": "agent"}}\n\n'))
    open_chat(page, "echo-bot")
    send(page, "finished in the server")
    answer = page.locator(".msg.assistant").last
    alert = answer.get_by_role("alert")
    expect(alert).to_contain_text("The connection to the server was lost.")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    alert.get_by_role("button", name="Retry").click()
    expect(answer.locator(".text")).to_have_text("finished in the server")
    expect(answer.locator(".badge")).to_have_text("succeeded")
    expect(answer.get_by_role("alert")).to_have_count(0)


def test_narrow_screen_has_no_sideways_scroll_and_keeps_the_nav(page: Page) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    for where in ("chat?workflow=echo-bot", "runs", "evals", "dashboard"):
        page.goto(f"/ui#/{where}")
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        expect(page.locator("main > *").first).to_be_visible()
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"#/{where} scrolls sideways by {overflow}px on a 375px screen"
    page.goto("/ui#/chat?workflow=echo-bot")
    send(page, "small screen")
    expect(page.locator(".msg.assistant .text")).to_have_text("small screen")


def test_keyboard_skip_link_and_labelled_controls(page: Page) -> None:
    page.goto("/ui#/chat?workflow=echo-bot")
    expect(page.get_by_label("Workflow")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    unlabelled = page.evaluate("""[...document.querySelectorAll('main input, main select, main textarea')]
        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')).length""")
    assert unlabelled == 0


KB = """
name: kb
description: Answers from the handbook collection, with its sources.
nodes:
  - {id: start, type: start}
  - {id: search, type: file_search, collection: handbook, query: "input_as_text", max_results: 2}
  - id: answer
    type: agent
    model: scripted:kb
    input: "input.output_text"
  - {id: done, type: end}
edges:
  - {from: start, to: search}
  - {from: search, to: answer}
  - {from: answer, to: done}
"""


def test_file_search_citations_show_under_the_answer(page: Page, ui_store, keel_home, tmp_path) -> None:
    """A real collection (hashing embedder, no model download) searched by a File search node:
    the passages it retrieved are listed, numbered, under the streamed answer."""
    pytest.importorskip("keel.context")
    from keel.context import Collection
    from keel.testing import get_script
    from keel.workflows import publish

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "time-off.md").write_text("# Time off\n\n## Holidays\n\nEveryone gets 27 days of paid holiday a year.\n")
    (docs / "laptops.md").write_text("# Security\n\n## Laptops\n\nLock your laptop screen when you leave.\n")
    with Collection.open("handbook", embedder="test-hashing") as col:
        col.add([str(docs)])
    spec = tmp_path / "kb.yaml"
    spec.write_text(KB)
    publish(spec, store=ui_store)
    get_script("kb").reply("You get 27 days of paid holiday [1].")
    open_chat(page, "kb")
    send(page, "How many holiday days do I get?")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".text")).to_have_text("You get 27 days of paid holiday [1].")
    first = answer.locator("ol.citations li.citation").first
    expect(first).to_contain_text("[1]")
    expect(answer.locator("ol.citations")).to_contain_text("27 days")
