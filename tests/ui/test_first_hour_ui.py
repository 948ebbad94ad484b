"""What a newcomer hit in the web UI in their first hour (issue 14), in a real browser against
a real server and SQLite store: the API key banner and dialog, failed runs on the dashboard,
a chat thread that comes back whole, and charts that read right."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")
from playwright.sync_api import Browser, Page, expect

from tests.ui.conftest import TIMEOUT_MS
from tests.ui.demo import ECHO, Server, _in_thread, make_app

BREAKS = """
name: breaks
description: Its model has no reply scripted, so every run fails.
nodes:
  - {id: start, type: start}
  - {id: bot, type: agent, model: "scripted:breaks"}
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
"""

KB = """
name: kb-thread
description: Answers from a handbook, with its sources.
nodes:
  - {id: start, type: start}
  - {id: search, type: file_search, collection: thread-handbook, query: "input_as_text", max_results: 1}
  - {id: answer, type: agent, model: "scripted:kb-thread", input: "input.output_text"}
  - {id: done, type: end}
edges:
  - {from: start, to: search}
  - {from: search, to: answer}
  - {from: answer, to: done}
"""


def _publish(store: Any, tmp: Path, name: str, text: str) -> None:
    from keel.workflows import publish

    path = tmp / f"{name}.yaml"
    path.write_text(text)
    publish(path, store=store)


def _send(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


# --- the API key -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any]]:
    """A server of its own (a key made here must not turn the package's shared server
    key-required): open at first, with one workflow."""
    from keel.store import open_store

    home = tmp_path_factory.mktemp("ui-key-home")
    store = open_store(home)
    _publish(store, home, "echo", ECHO)
    srv = Server(make_app(store)).start()
    yield srv, store
    srv.stop()
    store.close()


def test_a_server_that_starts_requiring_a_key_says_so_and_the_key_dialog_fixes_it(browser: Browser, keyed) -> None:
    from keel.operate.server.keys import Keys

    server, store = keyed
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        # open mode: the chat works without a key
        page.goto("/ui#/chat?workflow=echo-bot")
        expect(page.get_by_label("Workflow")).to_have_value("echo-bot")
        # someone creates a key (as the README's `keel keys create` does): the server now needs one
        _, secret = Keys(store).create("web", scopes=["*"])
        page.get_by_role("link", name="Runs").click()
        banner = page.locator("#notice [role=alert]")
        expect(banner).to_contain_text("This server now requires an API key.")
        expect(banner).to_contain_text("keel keys create")
        expect(banner).not_to_contain_text("expired or been revoked")  # no key was sent: nothing was refused
        # a banner across the main area, not a 240 px side column
        box = banner.bounding_box()
        assert box and box["width"] > 600, box
        # the header's API key button opens the dialog; the key saved there is used at once
        page.get_by_role("button", name="API key").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("keel keys create")
        dialog.get_by_label("Key", exact=True).fill(secret)
        dialog.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        expect(page.get_by_role("alert")).to_have_count(0)
        expect(page.get_by_role("button", name="API key ✓")).to_be_visible()
        # kept in this tab (sessionStorage), not in the browser for good: Remember was not ticked
        stored = page.evaluate("[sessionStorage.getItem('keel.apiKey'), localStorage.getItem('keel.apiKey')]")
        assert stored == [secret, None]
        # a key that is refused keeps the old wording: it was sent, and refused
        page.evaluate("sessionStorage.setItem('keel.apiKey', 'keel_sk_00000000_nope')")
        page.get_by_role("link", name="Evals").click()
        expect(page.locator("#notice [role=alert]")).to_contain_text("may have expired or been revoked")
        expect(page.locator("#notice [role=alert]")).to_contain_text("the API key is unknown or revoked")
    finally:
        context.close()


# --- the dashboard -----------------------------------------------------------------------------


def test_a_failed_run_counts_as_an_error_on_the_dashboard(page: Page, ui_store, tmp_path: Path) -> None:
    from keel.testing import get_script

    _publish(ui_store, tmp_path, "breaks", BREAKS)
    get_script("breaks").default = None  # no reply: the Agent node fails, the run fails
    page.goto("/ui#/chat?workflow=breaks")
    _send(page, "this will fail")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".badge")).to_have_text("failed")
    page.goto("/ui#/dashboard?range=15m&workflow=breaks")
    kpi = page.locator("#kpi-failed-runs")
    expect(kpi.locator(".kpi-value")).to_have_text("100.0%")
    expect(kpi).to_contain_text("1 of 1 run")
    expect(kpi).to_have_class(re.compile(r"\bbad\b"))
    row = page.locator('#dash-by-workflow tr[data-key="breaks"]')
    expect(row.locator('td[data-col="Failed runs"]')).to_have_text("1 (100.0%)")
    expect(row.locator('td[data-col="Runs"]')).to_have_text("1")
    # the chat's request was answered 200 (a stream) but its run failed: an error, and not good for the SLO
    expect(page.locator("#kpi-errors .kpi-value")).to_have_text("100.0%")
    expect(row.locator('td[data-col="Errors"]')).to_have_text("100.0%")
    expect(page.locator("#slo")).to_contain_text("0 / 1")


def test_a_long_model_name_is_cut_in_the_filter_row_and_typos_are_no_failing_models(page: Page, ui_store) -> None:
    from keel.store import ModelCallRecord, ModelCalls

    long = "openai-compatible:" + "a-very-long-fine-tuned-model-name-" * 4 + "v2"
    now = time.time()
    calls = ModelCalls(ui_store)
    calls.record(ModelCallRecord(provider="openai-compatible", model=long.split(":", 1)[1], status="ok",
                                 latency_ms=12.0, input_tokens=3, output_tokens=4, started_at=now - 5))
    calls.record(ModelCallRecord(provider="local", model="./typo.gguf", status="error", latency_ms=0.5,
                                 error_class="UnknownModelError", error_message="local model file ./typo.gguf does not exist",
                                 started_at=now - 5))
    page.goto("/ui#/dashboard?range=15m")
    select = page.locator("#dash-model")
    expect(select.locator("option", has_text="a-very-long")).to_have_count(1)
    expect(select.locator("option", has_text="typo.gguf")).to_have_count(0)
    expect(page.locator('#dash-by-model tr[data-key="local:./typo.gguf"]')).to_have_count(0)
    box = select.bounding_box()
    assert box and box["width"] <= 18 * 15 + 1, box  # 18rem at most: the row keeps its shape
    overflow = page.evaluate("(() => { const f = document.querySelector('.filters'); return f.scrollWidth - f.clientWidth; })()")
    assert overflow <= 0
    cell = page.locator(f'#dash-by-model tr[data-key="{long}"] th .clip')
    expect(cell).to_have_attribute("title", long)


# --- charts ------------------------------------------------------------------------------------


def _axis_values(page: Page, figure: Any, axis: int) -> list[str]:
    return figure.evaluate(f"(fig) => (fig._uplot.axes[{axis}]._values || []).map(String)")


def test_charts_have_distinct_integer_ticks_and_a_single_bar_is_a_bar(page: Page, ui_store, tmp_path: Path) -> None:
    # a response-codes chart over a quiet range: counts of 0 and 1, once read "0, 0, 0, 1, 1, 1"
    import uuid

    ui_store.execute("INSERT INTO serve_requests (id, started_at, method, path, route, workflow, status, latency_ms, "
                     "ttfb_ms, streamed) VALUES (?, ?, 'POST', '/v1/chat/completions', '/v1/chat/completions', "
                     "'quiet', 200, 12.0, 3.0, 0)", (uuid.uuid4().hex, time.time() - 5))
    page.goto("/ui#/dashboard?range=5m&workflow=quiet")
    codes = page.locator("figure.chart", has_text="Response codes")
    expect(codes.locator("canvas")).to_be_visible()
    page.wait_for_function("document.querySelector('figure.chart')._uplot?.axes[1]._values")
    ticks = [t for t in _axis_values(page, codes, 1) if t]
    assert ticks and len(ticks) == len(set(ticks)), ticks
    assert all(re.fullmatch(r"\d+", t) for t in ticks), ticks

    # an eval with one grader and one target: its pass-rate chart is a bar, not a 1 px line
    from keel.evals import parse_eval, run_eval
    from keel.testing import get_script

    data = tmp_path / "one.jsonl"
    data.write_text('{"q": "2+2", "a": "4"}\n{"q": "3+3", "a": "6"}\n')
    model = get_script("one-grader")
    model.default = None
    for a in ("4", "7"):
        model.reply(a)
    spec = parse_eval({"name": "one-grader", "dataset": str(data), "concurrency": 1,
                       "graders": [{"type": "string_check", "name": "exact", "operation": "eq",
                                    "input": "{{sample.output_text}}", "reference": "{{item.a}}"}],
                       "targets": [{"type": "model", "model": "scripted:one-grader", "name": "only",
                                    "prompt": "{{item.q}}"}]})
    run_id = _in_thread(lambda: __import__("asyncio").run(run_eval(ui_store, spec))).run_id
    page.goto(f"/ui#/evals/{run_id}")
    chart = page.locator("figure.chart", has_text="Pass rate per grader")
    expect(chart.locator("canvas")).to_be_visible()
    width = chart.evaluate("""(fig) => { const u = fig._uplot;
        return (u.valToPos(0.4, 'x') - u.valToPos(-0.4, 'x')); }""")
    assert width > 40, width
    painted = chart.evaluate("""(fig) => { const u = fig._uplot, c = u.ctx, y = Math.round(u.valToPos(0.25, 'y', true));
        const row = c.getImageData(0, y, c.canvas.width, 1).data; let n = 0;
        for (let i = 0; i < row.length; i += 4) if (row[i + 3] > 0 && row[i + 2] > 150 && row[i] < 120) n++;
        return n / devicePixelRatio; }""")
    assert painted > 40, painted  # the bar's blue, pixels across at a quarter of its height
    # the histogram's bin labels do not overlap: fewer labels than bins when they would
    hist = page.locator("figure.chart", has_text="Scores: exact")
    expect(hist.locator("canvas")).to_be_visible()
    labels = _axis_values(page, hist, 0)
    shown = [t for t in labels if t]
    px = hist.evaluate("(fig) => fig._uplot.bbox.width / devicePixelRatio")
    assert shown and max(len(t) for t in shown) * 7 * len(shown) <= px + 1, (shown, px)


# --- the chat thread ---------------------------------------------------------------------------


def test_returning_to_a_thread_restores_citations_status_trace_link_and_a_failed_answer(
        page: Page, ui_store, keel_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("keel.context")
    from keel.context import Collection
    from keel.testing import get_script

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "time-off.md").write_text("# Time off\n\n## Holidays\n\nEveryone gets 27 days of paid holiday a year.\n")
    with Collection.open("thread-handbook", embedder="test-hashing") as col:
        col.add([str(docs)])
    _publish(ui_store, tmp_path, "kb-thread", KB)
    model = get_script("kb-thread")
    model.default = None
    model.reply("You get 27 days of paid holiday [1].")  # the second question gets no reply: its run fails

    page.goto("/ui#/chat?workflow=kb-thread")
    _send(page, "How many holiday days do I get?")
    answers = page.locator(".msg.assistant")
    expect(answers.first.locator(".badge")).to_have_text("succeeded")
    _send(page, "And sick days?")
    expect(answers.nth(1).locator(".badge")).to_have_text("failed")
    expect(answers.nth(1)).to_contain_text("The run failed.")

    def check_thread() -> None:
        expect(page.locator(".msg.user .text")).to_have_text(["How many holiday days do I get?", "And sick days?"])
        first, second = answers.nth(0), answers.nth(1)
        expect(first.locator(".text")).to_have_text("You get 27 days of paid holiday [1].")
        expect(first.locator("ol.citations li.citation")).to_contain_text(["[1]"])
        expect(first.locator("ol.citations")).to_contain_text("27 days")
        expect(first.locator(".badge")).to_have_text("succeeded")
        expect(first.get_by_role("link", name="Open trace")).to_have_attribute("href", re.compile(r"^#/runs/\w+"))
        expect(second.locator(".badge")).to_have_text("failed")
        expect(second.get_by_role("alert")).to_contain_text("The run failed.")
        expect(second.get_by_role("link", name="Open trace")).to_be_visible()

    # to the trace and back: the thread is all there
    answers.first.get_by_role("link", name="Open trace").click()
    expect(page).to_have_url(re.compile(r"#/runs/[^/]+$"))
    expect(page.locator("h1 .badge")).to_have_text("succeeded")
    page.go_back()
    check_thread()
    # and after a reload of the page (the thread is kept in this tab)
    page.reload()
    check_thread()
    # the conversation goes on; a failed answer is shown but not sent back to the workflow as history
    model.reply("Sick days are in the handbook too.")
    with page.expect_request("**/ui/api/chat") as sent:
        _send(page, "Thanks")
    expect(answers.nth(2).locator(".badge")).to_have_text("succeeded")
    history = [(m["role"], m["content"]) for m in sent.value.post_data_json["messages"]]
    assert history == [("user", "How many holiday days do I get?"), ("assistant", "You get 27 days of paid holiday [1]."),
                       ("user", "And sick days?"), ("user", "Thanks")]
