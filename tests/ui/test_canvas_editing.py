"""Editing on the workflow canvas (issue 16) in a real browser against a real server and SQLite
store: multi-select (Shift+click, Shift+drag box) and move, copy/paste, delete, undo/redo; the
state-variables panel; version history and the visual diff of two versions; the palette, ports
per node type, the minimap and fit-to-view; a big graph opened at a readable zoom with only the
nodes on screen drawn, and edges that meet their ports."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")
from playwright.sync_api import Page, expect

from keel.workflows.drafts import Drafts
from keel.workflows.loader import parse_spec
from tests.ui.test_canvas import _draft, _position, _saved, _select
from tests.ui.test_canvas import _open as _open_page

CHAIN = """\
name: {name}
nodes:
  - {{id: start, type: start, state: {{tries: 0, topic: billing}}}}
  - {{id: ask, type: agent, model: "scripted:chain", instructions: Ask.}}
  - {{id: shape, type: transform, expression: input.output_text}}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: ask}}
  - {{from: ask, to: shape}}
  - {{from: shape, to: done}}
layout:
  nodes:
    start: {{x: 0, y: 0}}
    ask: {{x: 260, y: 0}}
    shape: {{x: 260, y: 200}}
    done: {{x: 560, y: 200}}
"""


def _open(page: Page, name: str) -> None:
    """Open the canvas and let it settle: it fits the view two frames after the document is drawn."""
    _open_page(page, name)
    expect(page.locator("[data-node-id]").first).to_be_attached()
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => "
                  "requestAnimationFrame(r))))")


def _node(page: Page, node_id: str) -> Any:
    return page.locator(f'.react-flow__node[data-id="{node_id}"]')


def _ids(page: Page) -> set[str]:
    return set(page.locator("[data-node-id]").evaluate_all("(els) => els.map((e) => e.dataset.nodeId)"))


def _selected(page: Page) -> set[str]:
    return set(page.locator(".react-flow__node.selected").evaluate_all("(els) => els.map((e) => e.dataset.id)"))


def _clear_selection(page: Page) -> None:
    page.locator(".react-flow__pane").click(position={"x": 5, "y": 5})
    assert _selected(page) == set()


def _drag(page: Page, node_id: str, dx: float, dy: float) -> None:
    box = _node(page, node_id).locator(".kn-title").bounding_box()
    assert box
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx / 2, y + dy / 2, steps=4)
    page.mouse.move(x + dx, y + dy, steps=4)
    page.mouse.up()


def _at(page: Page, node_id: str, where: tuple[float, float]) -> None:
    """Wait until the node is drawn at ``where`` (React draws an undo on its next frame)."""
    for _ in range(100):
        if _position(page, node_id) == pytest.approx(where, abs=0.5):
            return
        page.wait_for_timeout(50)
    assert _position(page, node_id) == pytest.approx(where, abs=0.5)


def _saved_spec(store: Any, name: str) -> Any:
    return parse_spec(Drafts(store).get(name).source).spec


# --- multi-select, move, copy/paste, delete, undo/redo ------------------------------------------------


def test_multi_select_move_copy_paste_delete_undo_and_redo(page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-multi", CHAIN.format(name="canvas-multi"))
    _open(page, "canvas-multi")
    expect(page.locator("[data-edge-id]")).to_have_count(3)
    # Shift+click selects a second node; the inspector says what a multi-selection can do
    _select(page, "ask")
    _node(page, "shape").click(modifiers=["Shift"])
    assert _selected(page) == {"ask", "shape"}
    expect(page.get_by_text("2 nodes selected")).to_be_visible()

    # moving one moves both, by the same distance; the others stay
    before = {i: _position(page, i) for i in ("start", "ask", "shape", "done")}
    _drag(page, "ask", 120, 60)
    after = {i: _position(page, i) for i in before}
    moved = [(after[i][0] - before[i][0], after[i][1] - before[i][1]) for i in ("ask", "shape")]
    assert moved[0] == pytest.approx(moved[1], abs=0.01)
    assert moved[0][0] > 20 and moved[0][1] > 10  # (a loaded machine's pointer events may coalesce: not exact)
    assert after["start"] == before["start"] and after["done"] == before["done"]

    # copy/paste: new ids, the edge between the copied nodes kept, none to the nodes not copied
    page.keyboard.press("Control+c")
    expect(page.locator(".canvas-message")).to_contain_text("Copied 2 nodes")
    page.keyboard.press("Control+v")
    expect(page.locator('[data-node-id="ask_2"]')).to_be_visible()
    expect(page.locator('[data-node-id="shape_2"]')).to_be_visible()
    expect(page.locator('[data-edge-id="ask_2.next->shape_2"]')).to_have_count(1)
    expect(page.locator("[data-edge-id]")).to_have_count(4)
    assert _selected(page) == {"ask_2", "shape_2"}  # the copies are the selection now
    a, c = _position(page, "ask"), _position(page, "ask_2")
    assert (c[0] - a[0], c[1] - a[1]) == (pytest.approx(40, abs=0.5), pytest.approx(40, abs=0.5))
    page.keyboard.press("Control+s")
    _saved(page, 2)
    spec = _saved_spec(ui_store, "canvas-multi")
    copy = spec.node("ask_2")
    assert copy.type == "agent" and copy.instructions == "Ask." and copy.model == "scripted:chain"
    assert sorted((e.source, e.target) for e in spec.edges if "_2" in e.source + e.target) == [("ask_2", "shape_2")]

    # delete a multi-selection: the nodes and every edge touching them
    page.keyboard.press("Delete")
    expect(page.locator('[data-node-id="ask_2"]')).to_have_count(0)
    expect(page.locator('[data-node-id="shape_2"]')).to_have_count(0)
    expect(page.locator("[data-edge-id]")).to_have_count(3)
    # undo brings them back with their edge; redo deletes them again; undo twice more undoes the paste
    # and the move
    page.get_by_role("button", name="Undo").click()
    expect(page.locator('[data-edge-id="ask_2.next->shape_2"]')).to_have_count(1)
    page.get_by_role("button", name="Redo").click()
    expect(page.locator('[data-node-id="ask_2"]')).to_have_count(0)
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    expect(page.locator('[data-node-id="ask_2"]')).to_have_count(0)
    expect(page.locator("[data-node-id]")).to_have_count(4)
    page.keyboard.press("Control+z")
    _at(page, "ask", before["ask"])
    _at(page, "shape", before["shape"])
    page.keyboard.press("Control+Shift+z")
    _at(page, "ask", after["ask"])


def test_a_shift_drag_box_selects_the_nodes_inside_it(page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-box", CHAIN.format(name="canvas-box"))
    _open(page, "canvas-box")
    _clear_selection(page)
    shape, done = _node(page, "shape").bounding_box(), _node(page, "done").bounding_box()
    assert shape and done
    x0, y0 = shape["x"] - 10, min(shape["y"], done["y"]) - 10
    x1, y1 = done["x"] + done["width"] + 10, max(shape["y"] + shape["height"], done["y"] + done["height"]) + 10
    page.keyboard.down("Shift")
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert _selected(page) == {"shape", "done"}
    page.keyboard.press("Delete")
    expect(page.locator("[data-node-id]")).to_have_count(2)
    expect(page.locator("[data-edge-id]")).to_have_count(1)
    page.keyboard.press("Control+s")
    _saved(page, 2)
    assert [n.id for n in _saved_spec(ui_store, "canvas-box").nodes] == ["start", "ask"]


# --- state variables ---------------------------------------------------------------------------------


def test_the_state_panel_edits_the_start_nodes_state_variables(page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-state", CHAIN.format(name="canvas-state"))
    _open(page, "canvas-state")
    page.get_by_role("tab", name="State").click()
    panel = page.get_by_role("region", name="State variables")
    expect(panel.get_by_label("State variable 1 name")).to_have_value("tries")
    expect(panel.get_by_label("State variable tries value")).to_have_value("0")
    expect(panel.get_by_label("State variable topic value")).to_have_value('"billing"')
    panel.get_by_label("State variable tries value").fill("3")
    panel.get_by_role("button", name="Remove state variable topic").click()
    panel.get_by_role("button", name="Add state variable").click()
    panel.get_by_label("State variable 2 name").fill("seen")
    bad = panel.get_by_label("State variable seen value")
    bad.fill("[1, 2")  # not JSON yet: marked, the last valid value kept
    expect(bad).to_have_class(re.compile("invalid"))
    bad.fill('["a", "b"]')
    expect(bad).not_to_have_class(re.compile("invalid"))
    page.keyboard.press("Control+s")
    _saved(page, 2)
    assert _saved_spec(ui_store, "canvas-state").node("start").state == {"tries": 3, "seen": ["a", "b"]}
    # the names are offered in CEL fields
    _select(page, "shape")
    box = page.locator('.inspector [data-pointer="/expression"] textarea')
    box.fill("")
    box.press_sequentially("state.s")
    expect(page.get_by_role("option", name=re.compile(r"state\.seen"))).to_be_visible()


# --- version history and the visual diff ---------------------------------------------------------------


def test_version_history_and_a_visual_diff_of_two_versions(page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-diff", CHAIN.format(name="canvas-diff"))
    _open(page, "canvas-diff")
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".canvas-message")).to_contain_text("published canvas-diff version 1")
    # version 2: ask's instructions changed, shape removed, a new Set state node wired in
    _select(page, "ask")
    page.locator('.inspector [data-pointer="/instructions"] textarea').fill("Ask twice.")
    _select(page, "shape")
    page.keyboard.press("Delete")
    page.locator('.palette-item[data-type="set_state"]').click()
    expect(page.locator(".inspector")).to_have_attribute("data-inspector-node", "set_state")
    page.locator(".connections select[id^='conn-to-']").select_option("done")
    page.locator(".connections button:not(.secondary)").click()
    _select(page, "ask")
    page.locator(".connections select[id^='conn-to-']").select_option("set_state")
    page.locator(".connections button:not(.secondary)").click()
    page.get_by_role("button", name="Publish").click()
    expect(page.locator(".canvas-message")).to_contain_text("published canvas-diff version 2")

    page.get_by_role("tab", name="Versions").click()
    expect(page.locator(".versions li")).to_have_count(2)
    expect(page.locator(".versions li").first).to_contain_text("v2")
    page.locator("#diff-a").select_option("1")
    page.locator("#diff-b").select_option("2")
    page.get_by_role("button", name="Compare").click()
    summary = page.get_by_label("Differences")
    expect(summary).to_contain_text("v1 → v2")
    expect(summary.locator(".diff-added")).to_contain_text(["node set_state"])
    expect(summary.locator(".diff-removed").first).to_contain_text("node shape")
    expect(summary.locator(".diff-changed").first).to_contain_text("node ask: /instructions")
    # on the canvas: added green, changed amber, the removed node drawn faded where it was
    expect(page.locator('[data-node-id="set_state"]')).to_have_class(re.compile("diff-added"))
    expect(page.locator('[data-node-id="ask"]')).to_have_class(re.compile("diff-changed"))
    expect(page.locator('[data-node-id="done"]')).not_to_have_class(re.compile("diff-"))
    ghost = page.locator('[data-node-id="removed:shape"]')
    expect(ghost).to_have_class(re.compile("diff-removed"))
    assert _position(page, "removed:shape") == (260, 200)  # where version 1's layout had it
    expect(page.locator('.react-flow__edge:has([data-edge-id="ask.next->set_state"])')).to_have_class(re.compile("diff-added"))
    page.get_by_role("button", name="Clear diff").click()
    expect(ghost).to_have_count(0)
    expect(page.locator('[data-node-id="ask"]')).not_to_have_class(re.compile("diff-"))


# --- palette, ports per type, minimap, fit ------------------------------------------------------------

EVERY_TYPE = """\
name: canvas-types
nodes:
  - {id: start, type: start}
  - {id: note, type: note, text: Every node type.}
  - {id: bot, type: agent, model: "scripted:types", instructions: Hi.}
  - {id: search, type: file_search, collection: docs, query: input_as_text}
  - {id: guard, type: guardrails, checks: [jailbreak], text: input_as_text}
  - {id: tool, type: mcp, server: "stdio:true", tool: ping}
  - id: route
    type: if_else
    branches: [{name: refund, condition: 'true'}, {name: status, condition: 'false'}]
  - {id: loop, type: while, condition: 'false'}
  - {id: ok, type: human_approval, message: Go?}
  - {id: shape, type: transform, expression: input}
  - {id: remember, type: set_state, assign: {n: '1'}}
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
"""

PORTS = {"start": ["next"], "note": [], "bot": ["next", "error"], "search": ["next", "error"],
         "guard": ["pass", "fail", "error"], "tool": ["next", "error"], "route": ["refund", "status", "else"],
         "loop": ["body", "next"], "ok": ["approved", "rejected", "timeout"], "shape": ["next", "error"],
         "remember": ["next", "error"], "done": []}


def test_palette_ports_per_node_type_minimap_zoom_and_fit(page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-types", EVERY_TYPE)
    _open(page, "canvas-types")
    palette = page.get_by_role("navigation", name="Palette: add a node")
    expect(palette.locator(".palette-item")).to_have_count(12)
    expect(palette.locator("h3")).to_have_text(["core", "tools", "logic", "data"])
    for node_id, ports in PORTS.items():
        node = page.locator(f'[data-node-id="{node_id}"]')
        handles = node.locator(".react-flow__handle.source").evaluate_all("(els) => els.map((e) => e.dataset.handleid)")
        assert handles == ports, (node_id, handles)
        assert node.locator(".react-flow__handle.target").count() == (0 if node_id in ("start", "note") else 1)
    cats = {i: page.locator(f'[data-node-id="{i}"]').get_attribute("class") for i in ("bot", "guard", "route", "shape")}
    assert "cat-core" in cats["bot"] and "cat-tools" in cats["guard"]
    assert "cat-logic" in cats["route"] and "cat-data" in cats["shape"]
    expect(page.locator(".react-flow__minimap")).to_be_visible()
    expect(page.locator(".react-flow__minimap .react-flow__minimap-node")).to_have_count(12)

    def on_screen() -> int:
        pane = page.locator(".react-flow__pane").bounding_box()
        assert pane
        return sum(1 for b in (page.locator(f'[data-node-id="{i}"]').bounding_box() for i in PORTS)
                   if b and b["x"] >= pane["x"] - 1 and b["x"] + b["width"] <= pane["x"] + pane["width"] + 1
                   and b["y"] >= pane["y"] - 1 and b["y"] + b["height"] <= pane["y"] + pane["height"] + 1)

    assert on_screen() == 12  # opened fitted to the view
    zoom_in = page.locator(".react-flow__controls-zoomin")
    for _ in range(4):
        zoom_in.click()
    page.wait_for_function("() => parseFloat(/scale\\(([\\d.]+)\\)/.exec(document.querySelector("
                           "'.react-flow__viewport').style.transform)[1]) > 1.2")
    assert on_screen() < 12
    page.get_by_role("button", name="Fit", exact=True).click()
    page.wait_for_function("() => parseFloat(/scale\\(([\\d.]+)\\)/.exec(document.querySelector("
                           "'.react-flow__viewport').style.transform)[1]) <= 1.2")
    assert on_screen() == 12


# --- a big graph: culling, level of detail, edges on their ports ---------------------------------------


def _grid(n: int) -> str:
    lines = ["name: canvas-big", "nodes:", "  - {id: start, type: start}"]
    ids = ["start"] + [f"n{i}" for i in range(1, n - 1)] + ["done"]
    for i in range(1, n - 1):
        lines.append(f"  - {{id: n{i}, type: if_else, branches: [{{name: go, condition: 'true'}}]}}" if i % 10 == 0
                     else f"  - {{id: n{i}, type: transform, expression: input}}")
    lines += ["  - {id: done, type: end}", "edges:"]
    for a, b in itertools.pairwise(ids):
        lines.append(f"  - {{from: {a}, port: go, to: {b}}}" if a[1:].isdigit() and int(a[1:]) % 10 == 0
                     else f"  - {{from: {a}, to: {b}}}")
        if a[1:].isdigit() and int(a[1:]) % 10 == 0:
            lines.append(f"  - {{from: {a}, port: else, to: {b}}}")
    lines.append("layout:\n  nodes:")
    lines += [f"    {i}: {{x: {(k % 20) * 260}, y: {(k // 20) * 140}}}" for k, i in enumerate(ids)]
    return "\n".join(lines) + "\n"


_EDGE_ENDS = """() => {
  const [, tx, ty, z] = /translate\\(([-\\d.]+)px, ([-\\d.]+)px\\) scale\\(([-\\d.]+)\\)/
    .exec(document.querySelector('.react-flow__viewport').style.transform).map(Number);
  const pane = document.querySelector('.react-flow').getBoundingClientRect();
  const flow = (r) => ({ l: (r.left - pane.left - tx) / z, r: (r.right - pane.left - tx) / z,
                         cy: ((r.top + r.bottom) / 2 - pane.top - ty) / z });
  const off = [];
  let n = 0;
  for (const g of document.querySelectorAll('[data-edge-id]')) {
    const [, from, port, to] = /^(.*)\\.(\\w+)->(.*)$/.exec(g.dataset.edgeId);
    const sh = document.querySelector(`.react-flow__node[data-id="${from}"] .react-flow__handle[data-handleid="${port}"]`);
    const th = document.querySelector(`.react-flow__node[data-id="${to}"] .react-flow__handle[data-handleid="in"]`);
    if (!sh || !th) continue;
    const xy = g.querySelector('path').getAttribute('d').match(/-?[\\d.]+/g).map(Number);
    const a = flow(sh.getBoundingClientRect()), b = flow(th.getBoundingClientRect());
    const d = Math.max(Math.abs(xy[0] - a.r), Math.abs(xy[1] - a.cy), Math.abs(xy.at(-2) - b.l), Math.abs(xy.at(-1) - b.cy));
    n++;
    if (d > 1) off.push([g.dataset.edgeId, d]);
  }
  return { n, off };
}"""


def test_a_big_graph_opens_readable_draws_what_is_on_screen_and_fit_shows_all(page: Page, ui_store: Any) -> None:
    _draft(ui_store, "canvas-big", _grid(300))
    _open(page, "canvas-big")
    expect(page.locator('[data-node-id="start"]')).to_be_visible()
    expect(page.locator(".canvas-message")).to_contain_text("300 nodes: opened at a readable zoom")
    drawn = page.locator(".react-flow__node").count()
    assert 0 < drawn < 100  # culled: only what is on screen, not all 300
    expect(page.locator(".kn.lod")).to_have_count(0)  # readable: full detail, port labels drawn
    expect(page.locator('[data-node-id="n1"] .kn-port-label')).to_have_text(["next", "error"])
    ends = page.evaluate(_EDGE_ENDS)
    assert ends["n"] > 10 and ends["off"] == []  # edges start and end on their ports (handles given up front)
    page.keyboard.press("f")
    expect(page.locator(".react-flow__node")).to_have_count(300)
    expect(page.locator(".kn.lod")).to_have_count(300)  # zoomed out: less detail
    expect(page.locator(".kn-port-label")).to_have_count(0)
    ends = page.evaluate(_EDGE_ENDS)
    assert ends["n"] >= 300 and ends["off"] == []
    # a node found and edited at this zoom; its connections list the 298 other targets once used
    _select(page, "n151")
    page.locator('.inspector [data-pointer="/title"] input').fill("the middle")
    expect(page.locator('[data-node-id="n151"] .kn-title')).to_have_text("the middle")
    targets = page.locator(".connections select[id^='conn-to-']")
    expect(targets.locator("option")).to_have_count(1)  # not built on selection (a 300-node graph)
    targets.focus()
    expect(targets.locator("option")).to_have_count(1 + 298)  # (node), and every node but start and itself
    targets.select_option("done")
    page.locator(".connections button:not(.secondary)").click()
    expect(page.locator('[data-edge-id="n151.next->done"]')).to_have_count(1)


# --- the model field offers the configured aliases ------------------------------------------------------


def test_the_model_field_offers_the_aliases_of_keel_toml(page: Page, ui_store: Any, tmp_path: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the server (in this process) reads ./keel.toml
    (tmp_path / "keel.toml").write_text('[models]\nfast = "scripted:fast"\n')
    _draft(ui_store, "canvas-alias", CHAIN.format(name="canvas-alias"))
    _open(page, "canvas-alias")
    _select(page, "ask")
    field = page.locator('.inspector [data-pointer="/model"]')
    options = field.locator("datalist option")
    expect(options.first).to_be_attached()
    got = dict(options.evaluate_all("(els) => els.map((o) => [o.value, o.textContent])"))
    assert got["fast"] == "alias → scripted:fast"
    field.locator("input").fill("fast")
    page.keyboard.press("Control+s")
    _saved(page, 2)
    expect(page.get_by_test_id("problem-count")).to_have_text("valid")
    assert _saved_spec(ui_store, "canvas-alias").node("ask").model == "fast"
