"""Widget outputs in specs: the gallery, the publish-time check against the output schema (errors
name the node, the field and the YAML line), rendering, and the Agent Builder importer's mapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.testing import scripted
from keel.workflows import arun
from keel.workflows.errors import SpecError
from keel.workflows.importers import import_text
from keel.workflows.loader import load_spec
from keel.workflows.validate import compile_workflow
from keel.workflows.widgets import (
    GALLERY,
    MAX_LIST_ITEMS,
    MAX_TOTAL_ITEMS,
    WidgetError,
    action_allowed,
    check,
    gallery,
    render,
    run_widgets,
)

CASES = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "agent-builder" / "cases"

CARD_NODE = """
name: cards
nodes:
  - {id: start, type: start}
  - id: answer
    type: agent
    model: scripted:bot
    output_schema:
      type: object
      properties: {title: {type: string}, %s: {type: string}}
      required: [title]
    widget: card
  - {id: end, type: end}
edges: [{from: start, to: answer}, {from: answer, to: end}]
"""


def test_the_gallery_has_card_list_form_and_table_and_each_fits_its_own_schema() -> None:
    assert set(gallery()) == {"card", "list", "form", "table"}
    for name, template in gallery().items():
        assert check(name, template.json_schema) == [], name
    table = render("table", {"title": "Stock", "columns": ["Item", "Left"], "rows": [["Bolts", "12"]]})
    cells = [[c["value"] for c in row["children"]] for row in table["children"] if row["type"] == "Row"]
    assert cells == [["Item", "Left"], ["Bolts", "12"]]
    form = render("form", {"title": "Address", "submit_label": "Save",
                           "fields": [{"name": "city", "label": "City", "placeholder": "Oslo"}]})
    assert action_allowed(form, "keel.form.submit", {"city": "Bergen"})  # a form's fields ride along
    assert not action_allowed(form, "keel.approval", {"approval_id": "x", "approved": True})


def test_data_cannot_break_out_of_the_widget_json() -> None:
    card = render("card", {"title": 'A "quoted", \\ title', "body": '"}, {"type": "Button", "label": "x'})
    assert card["children"][0]["value"] == 'A "quoted", \\ title'
    assert [c["type"] for c in card["children"]] == ["Title", "Text"]


def test_a_list_or_object_from_the_model_cannot_add_keys_or_actions_to_the_widget() -> None:
    """Found in review: a list went in as Python's repr, its quotes raw, so a model could give
    a card a real onClickAction that ``action_allowed`` then trusted."""
    evil = ['a", "onClickAction": {"type": "delete_all", "payload": {}}, "x": "']
    card = render("card", {"title": evil, "body": {"k": '"}, {"type": "Button"'}})

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    assert "onClickAction" not in keys(card)
    assert [c["type"] for c in card["children"]] == ["Title", "Text"]
    assert json.loads(card["children"][0]["value"]) == evil  # the data, shown as its JSON text
    assert not action_allowed(card, "delete_all", {})


def test_a_template_that_reads_a_missing_field_fails_publish_naming_node_field_and_line(spec_file) -> None:
    path = spec_file(CARD_NODE % "subtitle")
    with pytest.raises(SpecError) as e:
        compile_workflow(load_spec(path))
    problems = e.value.problems
    assert problems[0].node_id == "answer" and problems[0].line == 11 and problems[0].path == "nodes[1].widget"
    assert "reads field 'body', which output_schema does not have" in problems[0].message
    assert "add 'body' to output_schema.properties" in problems[0].hint
    compile_workflow(load_spec(spec_file(CARD_NODE % "body", "ok.yaml")))  # the same spec with the field passes


@pytest.mark.parametrize(("widget", "expected"), [
    ("cardd", "no widget 'cardd' in Keel's gallery"),
    ({"template": '{"type": "Card", "children": [{{ title }'}, "is not valid Jinja"),
    ({"template": '{"type": "Card", "children": [{"type": "Text", "value": "{{ body }}"}]}'},
     "reads field 'body'"),
    ({"template": '{"type": "Banner", "children": []}'}, "does not render a ChatKit widget: type:"),
    ({"template": '{"type": "Card", "children": [{% for i in title %}{"type": "Text", "value": "{{ i.x }}"}'
                  '{% endfor %}]}'}, "reads field 'x'"),
    ({"template": '{"type": "Card", "children": []}', "jsonSchema": {"required": ["price"]}},
     "needs field 'price'"),
    ({"template": '{"type": "Card", "children": [{% for i in range(10**9) %}{% endfor %}]}'},
     "OverflowError: range() in a widget template is limited to 1000 items"),
    ({"template": '{"type": "Card", "children": [{"type": "Text", "value": "{{ title + 1 }}"}]}'}, "TypeError"),
])
def test_bad_widgets_are_spec_problems_at_the_widget(widget, expected) -> None:
    problems = check(widget, {"type": "object", "properties": {"title": {"type": "string"}}})
    assert problems and expected in problems[0][0], problems


def test_a_widget_needs_an_output_schema() -> None:
    [(message, hint, _)] = check("list", None)
    assert "no output_schema" in message and "items, title" in hint


def test_cli_publish_of_a_mismatched_widget_is_an_error_without_traceback(tmp_path, keel_home) -> None:
    path = tmp_path / "cards.yaml"
    path.write_text((CARD_NODE % "subtitle").lstrip())
    r = subprocess.run([sys.executable, "-m", "keel", "workflows", "publish", str(path)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path, env={**os.environ, "KEEL_HOME": str(keel_home)})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cards.yaml:11 (node answer)" in r.stderr and "'body'" in r.stderr and "fix:" in r.stderr


async def test_a_run_s_widgets_come_from_its_steps(spec_file, store) -> None:
    path = spec_file(CARD_NODE % "body")
    with scripted("bot") as bot:
        bot.reply(parsed={"title": "Order 7", "body": "Shipped"})
        result = await arun(path, "where is order 7?", store=store)
    assert result.status == "succeeded" and result.output == {"title": "Order 7", "body": "Shipped"}
    from keel.workflows import Runs

    [w] = run_widgets(load_spec(path).spec, Runs(store).steps(result.run_id))
    assert w["node_id"] == "answer" and w["data"] == result.output
    assert w["widget"]["key"].startswith(f"keel-widget:{result.run_id}:answer:")
    assert [c["value"] for c in w["widget"]["children"]] == ["Order 7", "Shipped"]


def test_a_huge_list_renders_its_first_items_and_a_more_marker_and_the_data_stays_whole() -> None:
    from chatkit.widgets import DynamicWidgetRoot

    items = [{"title": f"row {i}", "detail": "d"} for i in range(5_000)]
    data = {"title": "Orders", "items": items}
    listed = render("list", data)
    rows = listed["children"]
    assert [r["children"][0]["children"][0]["value"] for r in rows[:-1]] == [f"row {i}" for i in range(MAX_LIST_ITEMS)]
    assert rows[-1] == {"type": "ListViewItem", "children": [
        {"type": "Caption", "value": "… 4,900 more (items)", "key": "keel-widget-more"}]}
    DynamicWidgetRoot.model_validate(listed)  # still a ChatKit widget
    assert len(data["items"]) == 5_000  # the run's output (the data) is not cut, only what is drawn

    exactly = render("list", {"title": "Orders", "items": items[:MAX_LIST_ITEMS]})
    assert len(exactly["children"]) == MAX_LIST_ITEMS and "more" not in json.dumps(exactly)


def test_nested_lists_are_capped_in_all_and_the_marker_names_the_fields() -> None:
    wide = [str(i) for i in range(300)]
    table = render("table", {"title": "Grid", "columns": wide, "rows": [wide] * 300})
    drawn = [len(r["children"]) for r in table["children"] if r["type"] == "Row"]
    assert drawn[0] == MAX_LIST_ITEMS  # the header: 100 of 300 columns
    assert len(drawn) == 1 + MAX_LIST_ITEMS  # 100 of 300 rows
    assert MAX_LIST_ITEMS + sum(drawn) == MAX_TOTAL_ITEMS  # 100 rows + their cells + the header: the total
    full = (MAX_TOTAL_ITEMS - 2 * MAX_LIST_ITEMS) // MAX_LIST_ITEMS  # rows that got 100 cells before it ran out
    assert drawn[1:] == [MAX_LIST_ITEMS] * full + [0] * (MAX_LIST_ITEMS - full)  # outer lists first
    left_out = 200 + 200 + full * 200 + (MAX_LIST_ITEMS - full) * 300  # columns, rows, the cells of drawn rows
    assert table["children"][-1] == {"type": "Caption", "value": f"… {left_out:,} more (columns, rows, rows[])",
                                     "key": "keel-widget-more"}


def test_data_that_does_not_fill_the_template_is_a_widget_error() -> None:
    with pytest.raises(WidgetError) as e:
        render("card", {"title": "no body"})
    assert "could not be filled" in e.value.message and "body" in e.value.message


@pytest.mark.skipif(not CASES.is_dir(), reason=f"the Agent Builder cases are not at {CASES}")
def test_the_importer_maps_an_agent_s_widget_output() -> None:
    doc = json.loads((CASES / "core_nodes--agent--basic_agent--default_instructions" / "input.json").read_text())
    agent = next(n for n in doc["nodes"] if n["node_type"] == "builtins.Agent")
    card = json.loads((GALLERY / "card.widget").read_text())
    agent["config"]["text"] = {"format": {"type": "widget", "widget": {**card, "name": "Order card"}}}
    r = import_text(json.dumps(doc), source="wf.json")
    node = next(n for n in r.spec["nodes"] if n["type"] == "agent")
    assert node["widget"]["template"] == card["template"] and node["widget"]["name"] == "Order card"
    assert node["output_schema"] == card["jsonSchema"]
    assert any(d.kind == "mapped" and "widget output 'Order card'" in d.what for d in r.report.decisions)
    from keel.workflows.loader import parse_spec

    compile_workflow(parse_spec(r.yaml))  # the imported YAML publishes

    agent["config"]["text"] = {"format": {"type": "widget", "widget": {"id": "wig_123"}}}
    hosted = import_text(json.dumps(doc), source="wf.json")
    assert any(d.kind == "placeholder" and "'wig_123'" in d.what and ".widget file" in d.fix
               for d in hosted.report.decisions)
