"""The workflow canvas (issue 16) in a real browser against a real server and SQLite store: open
a workflow and edit it in the inspector, save and publish; build the customer-service graph from
an empty canvas with the palette, drags, connections and forms, preview-run it and approve the
refund in place; an imported Agent Builder workflow keeps its positions; a CEL error lands on its
node and field; two tabs on one draft; keyboard only; a spec the canvas cannot draw."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")
from playwright.sync_api import Browser, Page, expect

from keel.workflows.drafts import Drafts
from keel.workflows.loader import parse_spec
from tests.ui.conftest import TIMEOUT_MS
from tests.ui.demo import Server

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "src" / "keel" / "workflows" / "templates" / "customer-service" / "workflow.yaml"
CASES = ROOT / ".." / "shared" / "datasets" / "agent-builder" / "cases"

SLICE = """\
# kept: a comment the canvas must not lose
name: canvas-slice
description: ask, then answer
nodes:
  - {id: start, type: start}
  - {id: bot, type: agent, model: "scripted:slice", instructions: Be brief.}
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
layout:
  nodes:
    start: {x: 0, y: 0}
    bot: {x: 300, y: 40}
    done: {x: 600, y: 80}
"""


def _draft(store: Any, name: str, text: str) -> None:
    drafts = Drafts(store)
    current = drafts.get(name)
    drafts.save(name, text, base_revision=current.revision if current else 0, by="test")


def _open(page: Page, name: str) -> None:
    page.goto(f"/ui/#/workflows/{name}")
    expect(page.locator(".canvas-page")).to_be_visible()
    expect(page.get_by_role("toolbar", name="Canvas")).to_be_visible()


def _select(page: Page, node_id: str) -> None:
    """Click a node until the inspector shows it (a click while the view still fits can miss)."""
    for _ in range(5):
        page.locator(f'[data-node-id="{node_id}"]').click()
        try:
            expect(page.locator(".inspector")).to_have_attribute("data-inspector-node", node_id, timeout=2_000)
            return
        except AssertionError:
            continue
    expect(page.locator(".inspector")).to_have_attribute("data-inspector-node", node_id)


def _field(page: Page, pointer: str) -> Any:
    return page.locator(f'.inspector [data-pointer="{pointer}"]').first


def _saved(page: Page, revision: int) -> None:
    expect(page.locator(".canvas-message")).to_contain_text(f"Saved draft revision {revision}")


def _position(page: Page, node_id: str) -> tuple[float, float]:
    style = page.locator(f'.react-flow__node[data-id="{node_id}"]').get_attribute("style") or ""
    m = re.search(r"translate\(([-\d.]+)px,\s*([-\d.]+)px\)", style)
    assert m, style
    return float(m.group(1)), float(m.group(2))


# --- the vertical slice: list -> canvas -> inspector -> save -> publish ----------------------------


def test_open_from_the_list_edit_in_the_inspector_save_and_publish(page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-slice", SLICE)
    page.goto("/ui/#/workflows")
    page.get_by_role("link", name="canvas-slice").click()
    expect(page.locator('[data-node-id="bot"]')).to_be_visible()
    expect(page.locator("[data-edge-id]")).to_have_count(2)
    assert _position(page, "bot") == (300, 40) and _position(page, "done") == (600, 80)  # the spec's layout
    _select(page, "bot")
    expect(page.locator(".inspector")).to_have_attribute("data-inspector-node", "bot")
    _field(page, "/instructions").locator("textarea").fill("Answer in one sentence.")
    expect(page.get_by_text("unsaved changes")).to_be_visible()
    page.get_by_role("button", name="Save draft").click()
    _saved(page, 2)
    text = Drafts(ui_store).get("canvas-slice").source
    assert "Answer in one sentence." in text and "# kept: a comment the canvas must not lose" in text
    assert parse_spec(text).spec.layout.nodes["bot"].x == 300
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".canvas-message")).to_contain_text("published canvas-slice version 1")
    page.get_by_role("tab", name="Versions").click()
    expect(page.locator(".versions li")).to_have_count(1)


# --- a CEL error on its node and field ---------------------------------------------------------------

ROUTE = """\
name: canvas-cel
nodes:
  - {id: start, type: start}
  - id: route
    type: if_else
    branches: [{name: refund, condition: 'input.output_text == "refund"'}]
  - {id: done, type: end}
edges:
  - {from: start, to: route}
  - {from: route, port: refund, to: done}
  - {from: route, port: else, to: done}
"""


def test_a_cel_error_appears_on_its_node_and_field_as_you_type(page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-cel", ROUTE)
    _open(page, "canvas-cel")
    expect(page.get_by_test_id("problem-count")).to_have_text("valid")
    _select(page, "route")
    condition = _field(page, "/branches/0/condition")
    condition.locator("textarea").fill("input.output_text ==")
    expect(page.locator('[data-node-id="route"] .kn-problems')).to_have_text("1")
    expect(condition.locator(".field-problems")).to_contain_text("CEL error in branches.refund")
    expect(condition.locator("textarea")).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-node-id="done"] .kn-problems')).to_have_count(0)
    expect(condition.locator(".cel-hl .tok-root").first).to_have_text("input")  # highlighted
    condition.locator("textarea").fill('input.output_text == "refund"')
    expect(page.locator('[data-node-id="route"] .kn-problems')).to_have_count(0)
    expect(page.get_by_test_id("problem-count")).to_have_text("valid")


def test_cel_completion_offers_the_names_in_scope(page: Page, ui_store: Any) -> None:
    text = ROUTE.replace("canvas-cel", "canvas-names").replace("{id: start, type: start}",
                                                              "{id: start, type: start, state: {tries: 0}}")
    _draft(ui_store, "canvas-names", text)
    _open(page, "canvas-names")
    _select(page, "route")
    box = _field(page, "/branches/0/condition").locator("textarea")
    box.fill("")
    box.press_sequentially("state.t")
    expect(page.get_by_role("option", name=re.compile("state.tries"))).to_be_visible()
    box.press("Enter")
    expect(box).to_have_value("state.tries")


# --- two tabs, one draft ---------------------------------------------------------------------------


def test_two_tabs_editing_one_draft_the_second_save_is_a_conflict_and_nothing_is_lost(
        browser: Browser, server: Server, ui_store: Any) -> None:
    _draft(ui_store, "canvas-tabs", SLICE.replace("canvas-slice", "canvas-tabs"))
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        a, b = context.new_page(), context.new_page()
        for pg in (a, b):
            _open(pg, "canvas-tabs")
            _select(pg, "bot")
        _field(a, "/instructions").locator("textarea").fill("From tab A.")
        a.get_by_role("button", name="Save draft").click()
        _saved(a, 2)
        _field(b, "/instructions").locator("textarea").fill("From tab B.")
        b.get_by_role("button", name="Save draft").click()
        dialog = b.get_by_role("dialog", name="Someone saved this draft meanwhile")
        expect(dialog).to_be_visible()
        expect(dialog.locator("pre.mine")).to_contain_text("From tab B.")
        expect(dialog.locator("pre.theirs")).to_contain_text("From tab A.")
        assert "From tab A." in Drafts(ui_store).get("canvas-tabs").source  # B wrote nothing
        dialog.get_by_role("button", name="Merge by hand").click()
        merged = dialog.get_by_label(re.compile("Merged YAML"))
        merged.fill(merged.input_value().replace("From tab A.", "From tab A. From tab B."))
        dialog.get_by_role("button", name="Save merged").click()
        expect(b.locator(".canvas-message")).to_contain_text("Saved the merge as revision 3")
        assert "From tab A. From tab B." in Drafts(ui_store).get("canvas-tabs").source
        # tab A is now behind: it saves again, gets the conflict, keeps its own
        _field(a, "/instructions").locator("textarea").fill("A again.")
        a.get_by_role("button", name="Save draft").click()
        a.get_by_role("dialog").get_by_role("button", name="Keep mine").click()
        _saved(a, 4)
        assert "A again." in Drafts(ui_store).get("canvas-tabs").source
    finally:
        context.close()


# --- keyboard only ---------------------------------------------------------------------------------


def _tab_to(page: Page, selector: str, *, limit: int = 80) -> None:
    """Press Tab until the focused element matches ``selector`` (the keyboard is the only input)."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def test_keyboard_only_add_connect_configure_and_delete_a_node(page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-keys", "name: canvas-keys\nnodes:\n  - {id: start, type: start}\n  - {id: done, type: end}\n"
                                    "edges:\n  - {from: start, to: done}\n")
    _open(page, "canvas-keys")
    expect(page.locator('[data-node-id="done"]')).to_be_visible()
    page.locator("body").press("p")  # the palette
    _tab_to(page, '.palette-item[data-type="agent"]')
    page.keyboard.press("Enter")
    expect(page.locator('[data-node-id="agent"]')).to_be_visible()
    expect(page.locator(".inspector")).to_have_attribute("data-inspector-node", "agent")
    # configure: rename it and write its instructions
    _tab_to(page, ".inspector [data-pointer='/id'] input")
    page.keyboard.press("Control+A")
    page.keyboard.type("helper")
    page.keyboard.press("Enter")
    expect(page.locator('[data-node-id="helper"]')).to_be_visible()
    _tab_to(page, ".inspector [data-pointer='/instructions'] textarea")
    page.keyboard.type("Help with orders.")
    # connect: its next port to done
    _tab_to(page, ".connections select[id^='conn-to-']")
    page.keyboard.press("ArrowDown")  # (node) -> done
    _tab_to(page, ".connections button:not(.secondary)")
    page.keyboard.press("Enter")
    expect(page.locator('[data-edge-id="helper.next->done"]')).to_have_count(1)
    page.keyboard.press("Control+s")
    _saved(page, 2)
    spec = parse_spec(Drafts(ui_store).get("canvas-keys").source).spec
    assert spec.node("helper").instructions == "Help with orders."
    assert [(e.source, e.port, e.target) for e in spec.edges if e.source == "helper"] == [("helper", "next", "done")]
    # delete it
    _tab_to(page, ".connections button:not(.secondary)")
    page.keyboard.press("Delete")
    expect(page.locator('[data-node-id="helper"]')).to_have_count(0)
    expect(page.locator('[data-edge-id="helper.next->done"]')).to_have_count(0)
    page.keyboard.press("Control+z")  # undo brings it back, redo removes it again
    expect(page.locator('[data-node-id="helper"]')).to_be_visible()
    page.keyboard.press("Control+Shift+z")
    expect(page.locator('[data-node-id="helper"]')).to_have_count(0)
    page.keyboard.press("Control+s")
    _saved(page, 3)
    assert [n.id for n in parse_spec(Drafts(ui_store).get("canvas-keys").source).spec.nodes] == ["start", "done"]


# --- bad input -------------------------------------------------------------------------------------


def test_a_spec_from_a_newer_keel_opens_read_only_naming_the_problem_and_a_refused_save_keeps_the_text(
        page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-future", "name: canvas-future\nnodes:\n  - {id: start, type: start}\n"
                                      "  - {id: think, type: quantum_agent}\n  - {id: done, type: end}\n"
                                      "edges:\n  - {from: start, to: think}\n  - {from: think, to: done}\n")
    _open(page, "canvas-future")
    banner = page.locator(".read-only-banner")
    expect(banner).to_contain_text("Read-only")
    expect(banner).to_contain_text("quantum_agent")
    expect(page.locator('[data-node-id="think"]')).to_be_visible()  # still drawn, never a blank page
    expect(page.get_by_role("button", name="Save draft")).to_be_disabled()
    page.get_by_role("tab", name="YAML").click()
    yaml_box = page.get_by_label("YAML text")
    edited = yaml_box.input_value().replace("name: canvas-future", "name: another-name")
    yaml_box.fill(edited)
    page.get_by_role("button", name="Save YAML as draft").click()
    expect(page.locator(".canvas-message")).to_contain_text("Not saved")
    expect(yaml_box).to_have_value(edited)  # the refused edit stays in the page
    yaml_box.fill(edited.replace("name: another-name", "name: canvas-future").replace("quantum_agent", "end"))
    page.get_by_role("button", name="Save YAML as draft").click()
    expect(page.locator(".canvas-message")).to_contain_text("Saved draft revision 2")
    expect(page.locator(".read-only-banner")).to_have_count(0)


# --- an imported Agent Builder workflow ------------------------------------------------------------


@pytest.mark.skipif(not CASES.is_dir(), reason=f"the Agent Builder cases are not at {CASES}")
def test_an_imported_agent_builder_workflow_keeps_its_layout(page: Page, ui_store: Any) -> None:
    from keel.workflows.importers import import_file

    r = import_file(CASES / "core_nodes--agent--agent_with_tools--function_tool_with_multi_instructions" / "input.json")
    name = r.spec["name"]
    _draft(ui_store, name, r.yaml)
    _open(page, name)
    layout = r.spec["layout"]["nodes"]
    assert layout
    for node_id, at in layout.items():
        expect(page.locator(f'[data-node-id="{node_id}"]')).to_be_attached()
        assert _position(page, node_id) == (pytest.approx(round(at["x"]), abs=1), pytest.approx(round(at["y"]), abs=1))


# --- the customer-service graph, built from an empty canvas ----------------------------------------

_COLS, _ROWS = (110, 360, 610, 860), (70, 260, 450)
_PLACES = {  # node -> (column, row) on the canvas
    "start": (0, 0), "about": (0, 2), "screen": (1, 0), "blocked": (3, 2), "triage": (2, 0), "route": (3, 0),
    "approve_refund": (0, 1), "refund": (1, 1), "decline": (2, 1), "status": (3, 1), "answer": (1, 2), "reply": (2, 2),
}


def _built_spec() -> dict[str, Any]:
    """The template, on scripted models and the demo's tool (what the test builds)."""
    from keel.workflows.loader import read_document
    from keel.workflows.roundtrip import to_json

    data = to_json(read_document(TEMPLATE.read_text())[0])
    for n in data["nodes"]:
        if n["type"] == "agent":
            n["model"] = "scripted:cs-triage" if n["id"] == "triage" else "scripted:cs-agent"
            if n.get("tools"):
                n["tools"] = ["tests.ui.demo:lookup_order"]
    return data


def _add(page: Page, type_: str, node_id: str) -> None:
    col, row = _PLACES[node_id]
    page.locator(f'.palette-item[data-type="{type_}"]').drag_to(page.locator(".canvas-flow"),
                                                              target_position={"x": _COLS[col], "y": _ROWS[row]})
    expect(page.locator(".inspector")).to_have_attribute("data-inspector-node", re.compile(f"^{type_}"))
    default = page.locator(".inspector").get_attribute("data-inspector-node")
    if default != node_id:
        box = _field(page, "/id").locator("input")
        box.fill(node_id)
        box.press("Enter")
    expect(page.locator(".inspector")).to_have_attribute("data-inspector-node", node_id)


def _set(page: Page, node: dict[str, Any], key: str, value: Any) -> None:
    field = _field(page, f"/{key}")
    if isinstance(value, str):
        field.locator("input, textarea").first.fill(value)
    elif isinstance(value, (int, float)):
        field.locator("input").fill(str(value))
    elif key == "tools":
        for i, tool in enumerate(value):
            field.get_by_role("button", name="Add tools").click()
            field.get_by_role("textbox", name=f"Tools {i + 1}", exact=True).fill(tool)
    elif key == "branches":
        for i, b in enumerate(value):
            if i >= 1:
                field.get_by_role("button", name="Add branch").click()
            _field(page, f"/branches/{i}/name").locator("input").fill(b["name"])
            _field(page, f"/branches/{i}/condition").locator("textarea").fill(b["condition"])
    else:  # objects and lists as JSON (output_schema, checks)
        field.locator("textarea").fill(json.dumps(value))


def _connect(page: Page, source: str, port: str, target: str) -> None:
    handle = page.locator(f'.react-flow__node[data-id="{source}"] .react-flow__handle[data-handleid="{port}"]')
    into = page.locator(f'.react-flow__node[data-id="{target}"] .react-flow__handle[data-handleid="in"]')
    a, b = handle.bounding_box(), into.bounding_box()
    assert a and b
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move((a["x"] + b["x"]) / 2, (a["y"] + b["y"]) / 2, steps=4)
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=4)
    page.mouse.up()
    expect(page.locator(f'[data-edge-id="{source}.{port}->{target}"]')).to_have_count(1)


def test_build_the_customer_service_graph_from_an_empty_canvas_publish_preview_and_approve(
        browser: Browser, server: Server, ui_store: Any) -> None:
    from keel.testing import get_script

    want = _built_spec()
    context = browser.new_context(base_url=server.url, viewport={"width": 1700, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto("/ui/#/workflows")
        page.get_by_role("textbox", name="New workflow").fill("customer-service")
        page.get_by_role("button", name="Create").click()
        expect(page.locator(".canvas-empty")).to_be_visible()
        for node in want["nodes"]:
            _add(page, node["type"], node["id"])
            for key, value in node.items():
                if key not in ("id", "type") and not (key == "model" and value is None):
                    _set(page, node, key, value)
        expect(page.locator("[data-node-id]")).to_have_count(12)
        page.locator(".react-flow__pane").click(position={"x": 5, "y": 5})  # nothing selected
        for e in want["edges"]:
            _connect(page, e["from"], e.get("port", "next"), e["to"])
        page.get_by_role("button", name="Save draft").click()
        _saved(page, 1)
        expect(page.get_by_test_id("problem-count")).to_have_text("valid")
        got = parse_spec(Drafts(ui_store).get("customer-service").source).spec
        expected = parse_spec(json.dumps(want)).spec
        assert [n.model_dump() for n in got.nodes] == [n.model_dump() for n in expected.nodes]
        assert sorted((e.source, e.port, e.target) for e in got.edges) == sorted(
            (e.source, e.port, e.target) for e in expected.edges)
        assert set(got.layout.nodes) == {n.id for n in got.nodes}

        page.get_by_role("button", name="Publish").click()
        expect(page.locator(".canvas-message")).to_contain_text("published customer-service version 1")

        triage, agent = get_script("cs-triage"), get_script("cs-agent")
        triage.reply(json.dumps({"intent": "refund", "order_id": 1001, "reason": "The parcel arrived broken."}))
        agent.reply(tool_calls=[("lookup_order", {"order_id": "1001"})])
        agent.reply("Your order 1001 has been refunded.")
        page.get_by_role("tab", name="Preview").click()
        page.get_by_label("Input").fill("Please refund order 1001, it arrived broken.")
        page.get_by_role("button", name="Run draft").click()
        approval = page.get_by_role("group", name="Approval")
        expect(approval).to_contain_text("Refund order 1001?")
        expect(page.locator('[data-node-id="approve_refund"]')).to_have_class(re.compile("run-waiting"))
        expect(page.locator('[data-node-id="triage"]')).to_have_class(re.compile("run-done"))
        expect(page.locator('[data-node-id="answer"]')).not_to_have_class(re.compile("run-"))
        approval.get_by_role("button", name="Approve").click()
        expect(page.locator(".run-status")).to_contain_text("succeeded")
        expect(page.locator(".answer")).to_contain_text("refunded")
        expect(page.locator('[data-node-id="refund"]')).to_have_class(re.compile("run-done"))
        page.locator('[data-node-id="triage"]').click()  # what the node did, under the preview
        run_of = page.get_by_role("region", name="Run of triage")
        expect(run_of).to_contain_text("The parcel arrived broken.")
        expect(run_of).to_contain_text("in /")
        page.get_by_role("link", name="Open trace").click()
        expect(page).to_have_url(re.compile(r"#/runs/"))
        expect(page.get_by_text("approve_refund").first).to_be_visible()
    finally:
        context.close()
    assert not errors, errors
