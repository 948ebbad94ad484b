"""The workflow canvas's API (keel.operate.ui.canvas) against a real ``keel serve`` with keys:
drafts and their conflicts, publish, versions, diff, validation placed on node and field,
preview runs answered in place, the YAML round trip of every template and every Agent Builder
case, read-only documents, and who may edit."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keel.workflows.loader import parse_spec, read_document
from tests.operate.conftest import APPROVE, Server, create_key, publish, server_env, start_server

TEMPLATES = Path(__file__).resolve().parents[2] / "src" / "keel" / "workflows" / "templates"
CASES = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "agent-builder" / "cases"

TRIAGE = """\
# Triage, then ask a person.
name: triage
description: classify, then ask
nodes:
  - {id: start, type: start}
  # the classifier: its answer is structured
  - id: classify
    type: agent
    model: scripted:echo
    instructions: Classify.   # short on purpose
  - id: route
    type: if_else
    branches:
      - {name: yes_branch, condition: 'input.output_text == "refund"'}
  - {id: ask, type: human_approval, message: "Refund {{ input_as_text }}?"}
  - {id: ok, type: end, output: "'approved by ' + input.output_parsed.by"}
  - {id: nope, type: end, output: "'rejected'"}
edges:
  - {from: start, to: classify}
  - {from: classify, to: route}
  - {from: route, port: yes_branch, to: ask}
  - {from: route, port: else, to: nope}
  - {from: ask, port: approved, to: ok}
  - {from: ask, port: rejected, to: nope}
"""


@pytest.fixture(scope="module")
def canvas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("canvas-home")
    publish(home, APPROVE, "approve")
    server = start_server(home)
    server.admin_key = create_key(home, "admin", "--workflow", "*", "--admin")
    server.scoped_key = create_key(home, "editor-less", "--workflow", "*", "--approver")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(canvas: Server) -> Iterator[httpx.Client]:
    with canvas.client() as c:
        yield c


def events(text: str) -> list[tuple[str, dict]]:
    return [(m.group(1), json.loads(m.group(2))) for m in re.finditer(r"event: (\w+)\ndata: (.*)\n\n", text)]


def fresh(client: httpx.Client, name: str) -> None:
    """No draft of ``name`` (a test starts from the published version, or from nothing)."""
    doc = client.get(f"/ui/api/canvas/workflows/{name}")
    if doc.status_code == 200 and doc.json()["origin"] == "draft":
        r = client.delete(f"/ui/api/canvas/workflows/{name}/draft", params={"revision": doc.json()["revision"]})
        assert r.status_code == 200, r.text


def test_two_tabs_the_second_save_is_a_conflict_and_nothing_is_lost(client) -> None:
    fresh(client, "approve")
    doc = client.get("/ui/api/canvas/workflows/approve").json()
    assert doc["origin"] == "version" and doc["revision"] == 0 and doc["version"] == 1 and not doc["read_only"]
    tab_a, tab_b = copy.deepcopy(doc["spec"]), copy.deepcopy(doc["spec"])
    tab_a["nodes"][1]["message"] = "Tab A asks: refund {{ input_as_text }}?"
    tab_b["nodes"][1]["message"] = "Tab B asks something else"
    first = client.put("/ui/api/canvas/workflows/approve/draft", json={"base_revision": 0, "spec": tab_a})
    assert first.status_code == 200, first.text
    assert first.json()["revision"] == 1 and "Tab A asks" in first.json()["yaml"]
    second = client.put("/ui/api/canvas/workflows/approve/draft", json={"base_revision": 0, "spec": tab_b})
    assert second.status_code == 409
    body = second.json()
    assert body["error"]["code"] == "draft_conflict" and body["error"]["hint"]
    assert body["current"]["revision"] == 1 and "Tab A asks" in body["current"]["yaml"]
    assert body["rejected"]["spec"] == tab_b  # the second tab's edit comes back: it can merge and retry
    now = client.get("/ui/api/canvas/workflows/approve").json()
    assert now["origin"] == "draft" and now["revision"] == 1 and "Tab A asks" in now["yaml"]
    assert "Tab B" not in now["yaml"] and now["draft_changed"] is True
    merged = client.put("/ui/api/canvas/workflows/approve/draft",
                        json={"base_revision": body["current"]["revision"], "spec": tab_b})
    assert merged.status_code == 200 and merged.json()["revision"] == 2
    # the same conflict for a YAML save, the text sent comes back
    stale = client.put("/ui/api/canvas/workflows/approve/draft", json={"base_revision": 1, "yaml": APPROVE})
    assert stale.status_code == 409 and stale.json()["rejected"] == {"yaml": APPROVE}


def test_publish_versions_and_structural_diff(client) -> None:
    fresh(client, "approve")
    spec = client.get("/ui/api/canvas/workflows/approve").json()["spec"]
    spec["nodes"][1]["message"] = "Refund it? {{ input_as_text }}"
    spec["edges"] = [e for e in spec["edges"] if e.get("port") != "timeout"]
    spec["nodes"] = [n for n in spec["nodes"] if n["id"] != "late"]
    saved = client.put("/ui/api/canvas/workflows/approve/draft", json={"base_revision": 0, "spec": spec}).json()
    assert saved["problems"] == [] and saved["changed"] and saved["comments_kept"]
    draft_diff = client.get("/ui/api/canvas/workflows/approve/diff", params={"a": "1", "b": "draft"}).json()
    assert draft_diff["nodes"]["removed"] == [{"id": "late", "type": "end"}]
    assert draft_diff["edges"]["removed"] == [{"from": "ask", "to": "late", "port": "timeout"}]
    [changed] = draft_diff["nodes"]["changed"]
    assert changed["id"] == "ask" and [c["path"] for c in changed["changes"]] == ["/message"]
    assert changed["changes"][0]["after"] == "Refund it? {{ input_as_text }}" and not draft_diff["same_meaning"]

    published = client.post("/ui/api/canvas/workflows/approve/publish", json={"revision": saved["revision"]})
    assert published.status_code == 200, published.text
    number = published.json()["version"]
    assert published.json()["created"] and number >= 2
    versions = client.get("/ui/api/canvas/workflows/approve/versions").json()["versions"]
    assert [v["version"] for v in versions] == list(range(number, 0, -1))
    between = client.get("/ui/api/canvas/workflows/approve/diff", params={"a": "1", "b": str(number)}).json()
    assert between["nodes"]["removed"] == draft_diff["nodes"]["removed"]

    # Moving nodes is no new version: the layout is not part of a version's meaning
    spec["layout"] = {"nodes": {"start": {"x": 0, "y": 0}, "ask": {"x": 240, "y": 0}}}
    moved = client.put("/ui/api/canvas/workflows/approve/draft",
                       json={"base_revision": saved["revision"], "spec": spec}).json()
    assert moved["layout"] == spec["layout"] and moved["draft_changed"] is False
    again = client.post("/ui/api/canvas/workflows/approve/publish", json={"revision": moved["revision"]}).json()
    assert again == {**again, "version": number, "created": False} and "layout" in again["message"]
    layout_diff = client.get("/ui/api/canvas/workflows/approve/diff", params={"a": str(number), "b": "draft"}).json()
    assert layout_diff["layout_changed"] and layout_diff["same_meaning"]
    # publishing a revision that is not the draft's is a conflict, not a publish
    stale = client.post("/ui/api/canvas/workflows/approve/publish", json={"revision": saved["revision"]})
    assert stale.status_code == 409 and stale.json()["current"]["revision"] == moved["revision"]


def test_validate_places_a_cel_error_on_its_node_and_field_with_the_clis_message(client, tmp_path) -> None:
    bad = TRIAGE.replace('input.output_text == "refund"', 'input.output_text == ')
    r = client.post("/ui/api/canvas/validate", json={"yaml": bad})
    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is False
    [cel] = [p for p in body["problems"] if "CEL" in p["message"]]
    assert cel["node_id"] == "route" and cel["pointer"] == "/nodes/2/branches/0/condition"
    assert cel["line"] == bad.splitlines().index(next(x for x in bad.splitlines() if "yes_branch" in x)) + 1
    (tmp_path / "triage.yaml").write_text(bad)
    cli = subprocess.run([sys.executable, "-m", "keel", "workflows", "validate", "triage.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, env=server_env(tmp_path), timeout=120)
    assert cli.returncode == 2 and cel["message"] in cli.stdout + cli.stderr
    # the structured form gives the same problem
    data, _ = read_document(bad)
    same = client.post("/ui/api/canvas/validate", json={"spec": data}).json()
    assert next(p for p in same["problems"] if p["node_id"] == "route")["pointer"] == cel["pointer"]
    # a layout naming no node is a problem placed on its entry
    data["layout"] = {"nodes": {"clasify": {"x": 1, "y": 2}}}
    layout = client.post("/ui/api/canvas/validate", json={"spec": data}).json()["problems"]
    assert any(p["pointer"] == "/layout/nodes/clasify" and "'classify'" in p["hint"] for p in layout)
    ok = client.post("/ui/api/canvas/validate", json={"yaml": TRIAGE}).json()
    assert ok == {"valid": True, "problems": []}


def test_preview_runs_the_draft_unpublished_and_its_approval_is_answered_in_place(client) -> None:
    fresh(client, "triage")
    saved = client.put("/ui/api/canvas/workflows/triage/draft", json={"base_revision": 0, "yaml": TRIAGE})
    assert saved.status_code == 200 and saved.json()["revision"] == 1 and saved.json()["version"] is None
    r = client.post("/ui/api/canvas/workflows/triage/preview", json={"input": "refund", "revision": 1})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    evs = events(r.text)
    names = [e for e, _ in evs]
    assert names[:2] == ["preview", "run"] and names[-1] == "done"
    started = {d["node_id"] for e, d in evs if e == "node"}
    assert {"start", "classify", "route", "ask"} <= started
    approval = dict(evs)["approval"]
    assert approval["node_id"] == "ask" and approval["message"] == "Refund refund?"
    assert dict(evs)["done"]["status"] == "waiting"
    run_id = dict(evs)["run"]["run_id"]
    # not published: no version, nothing in the published list
    assert client.get("/v1/workflows/triage").status_code == 404
    assert client.get("/ui/api/canvas/workflows/triage/versions").json()["versions"] == []
    # the run is a run like any other (version 0), and the admin who started it answers in place
    answered = client.post(f"/ui/api/approvals/{approval['id']}/approve", json={})
    assert answered.status_code == 200, answered.text
    done = dict(events(answered.text))["done"]
    assert done["status"] == "succeeded" and done["output"].startswith("approved by key:")
    run = client.get(f"/ui/api/runs/{run_id}").json()["run"]
    assert run["status"] == "succeeded" and run["version"] == 0 and run["workflow"] == "triage"
    # an invalid draft is refused with its problems, and runs nothing
    broken = client.put("/ui/api/canvas/workflows/triage/draft",
                        json={"base_revision": 1, "yaml": TRIAGE.replace("to: ask}", "to: asq}")}).json()
    assert broken["revision"] == 2 and any("asq" in p["message"] for p in broken["problems"])
    refused = client.post("/ui/api/canvas/workflows/triage/preview", json={"input": "x", "revision": 2})
    assert refused.status_code == 400 and refused.json()["problems"]
    assert client.post("/ui/api/canvas/workflows/triage/preview",
                       json={"input": "x", "revision": 1}).status_code == 409


def _round_trip(client: httpx.Client, text: str) -> None:
    """Save ``text`` as YAML, read it back as JSON, save the JSON unmodified (same bytes), then
    save an edit of one node (the comments of the others survive, the meaning is the edit)."""
    data, _ = read_document(text)
    name = data["name"]
    fresh(client, name)
    saved = client.put(f"/ui/api/canvas/workflows/{name}/draft", json={"base_revision": 0, "yaml": text})
    assert saved.status_code == 200, saved.text
    doc = client.get(f"/ui/api/canvas/workflows/{name}").json()
    assert not doc["read_only"], doc["message"]
    same = client.put(f"/ui/api/canvas/workflows/{name}/draft",
                      json={"base_revision": doc["revision"], "spec": doc["spec"]}).json()
    assert same["yaml"] == text and same["changed"] is False
    assert parse_spec(same["yaml"]).spec == parse_spec(text).spec
    edited = copy.deepcopy(doc["spec"])
    last = edited["nodes"][-1]
    last["title"] = "Edited # on the canvas: yes"
    edited["layout"] = {"nodes": {n["id"]: {"x": 10.5 * i, "y": -3} for i, n in enumerate(edited["nodes"])}}
    after = client.put(f"/ui/api/canvas/workflows/{name}/draft",
                       json={"base_revision": same["revision"], "spec": edited}).json()
    assert after["comments_kept"], name
    assert read_document(after["yaml"])[0] == edited
    expected = parse_spec(text).spec.model_dump()
    expected["nodes"][-1]["title"] = "Edited # on the canvas: yes"
    got = parse_spec(after["yaml"]).spec.model_dump()
    assert got["layout"]["nodes"][last["id"]] == {"x": 10.5 * (len(edited["nodes"]) - 1), "y": -3}
    got.pop("layout"), expected.pop("layout")
    assert got == expected
    comments = [line.strip() for line in text.splitlines() if line.strip().startswith("#")]
    assert all(c in after["yaml"] for c in comments)


@pytest.mark.parametrize("template", sorted(p.parent.name for p in TEMPLATES.glob("*/workflow.yaml")))
def test_every_template_round_trips_through_the_save_api(client, template) -> None:
    _round_trip(client, (TEMPLATES / template / "workflow.yaml").read_text(encoding="utf-8"))


def _importable_cases() -> list[str]:
    if not CASES.is_dir():
        return []
    return sorted(d.name for d in CASES.iterdir() if (d / "input.json").is_file()
                  and not (d / "expected_error.txt").exists())


@pytest.mark.skipif(not CASES.is_dir(), reason=f"the Agent Builder cases are not at {CASES}")
def test_every_agent_builder_case_round_trips_through_the_save_api_with_its_layout(client) -> None:
    from keel.workflows.importers import NotImportable, import_file

    done = laid_out = 0
    for case in _importable_cases():
        try:
            imported = import_file(CASES / case / "input.json")
        except NotImportable:  # the cases whose Agent Builder CEL is invalid (tested in tests/workflows)
            continue
        _round_trip(client, imported.yaml)
        layout = imported.spec.get("layout")
        if layout:  # an imported workflow keeps its positions, and the canvas gets them
            name = imported.spec["name"]
            fresh(client, name)
            client.put(f"/ui/api/canvas/workflows/{name}/draft", json={"base_revision": 0, "yaml": imported.yaml})
            assert client.get(f"/ui/api/canvas/workflows/{name}").json()["layout"] == layout
            laid_out += 1
        done += 1
    assert done >= 40 and laid_out >= 40


def test_a_comment_survives_an_edit_of_another_node(client) -> None:
    fresh(client, "triage")
    client.put("/ui/api/canvas/workflows/triage/draft", json={"base_revision": 0, "yaml": TRIAGE})
    doc = client.get("/ui/api/canvas/workflows/triage").json()
    spec = doc["spec"]
    spec["nodes"][3]["message"] = "Refund now?"
    after = client.put("/ui/api/canvas/workflows/triage/draft",
                       json={"base_revision": doc["revision"], "spec": spec}).json()["yaml"]
    assert "# the classifier: its answer is structured" in after and "# short on purpose" in after
    assert "# Triage, then ask a person." in after
    changed = [(a, b) for a, b in zip(TRIAGE.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [('  - {id: ask, type: human_approval, message: "Refund {{ input_as_text }}?"}',
                        '  - {id: ask, type: human_approval, message: "Refund now?"}')]


def test_what_the_canvas_cannot_draw_opens_read_only_and_refused_saves_return_the_text(client) -> None:
    fresh(client, "future")
    newer = TRIAGE.replace("name: triage", "name: future").replace("type: if_else", "type: web_browser")
    saved = client.put("/ui/api/canvas/workflows/future/draft", json={"base_revision": 0, "yaml": newer})
    assert saved.status_code == 200  # a draft may be anything; the canvas says what it cannot draw
    doc = client.get("/ui/api/canvas/workflows/future").json()
    assert doc["read_only"] and "'web_browser'" in doc["message"] and "route" in doc["message"]
    assert doc["yaml"] == newer and any("web_browser" in p["message"] for p in doc["problems"])
    broken = TRIAGE.replace("name: triage", "name: future") + "layout: {nodes: [1, 2]}\n"
    client.put("/ui/api/canvas/workflows/future/draft", json={"base_revision": 1, "yaml": broken})
    doc = client.get("/ui/api/canvas/workflows/future").json()
    assert doc["read_only"] and "layout" in doc["message"] and doc["layout"] is None
    not_yaml = client.put("/ui/api/canvas/workflows/future/draft", json={"base_revision": 2, "yaml": "nodes: [oops"})
    assert client.get("/ui/api/canvas/workflows/future").json()["read_only"] and not_yaml.status_code == 200
    # refused saves give the user's edit back
    spec = read_document(TRIAGE)[0]
    wrong = client.put("/ui/api/canvas/workflows/future/draft", json={"base_revision": 3, "spec": spec})
    assert wrong.status_code == 400 and wrong.json()["rejected"] == {"spec": spec}
    assert "'triage'" in wrong.json()["error"]["message"] and "Traceback" not in wrong.text
    both = client.put("/ui/api/canvas/workflows/future/draft", json={"base_revision": 3})
    assert both.status_code == 422 and "exactly one" in both.text


def test_inspector_helpers_schema_models_and_names_in_scope(client) -> None:
    schema = client.get("/ui/api/canvas/schema").json()
    assert schema["title"] == "Keel workflow" and "layout" in schema["properties"]
    models = client.get("/ui/api/canvas/models").json()
    assert "aliases" in models and "scripted" in models["providers"]
    fresh(client, "triage")
    spec = read_document(TRIAGE)[0]
    spec["nodes"][1]["output_schema"] = {"type": "object", "properties": {"kind": {"type": "string"}},
                                         "required": ["kind"], "additionalProperties": False}
    spec["nodes"][0]["state"] = {"tries": 0}
    client.put("/ui/api/canvas/workflows/triage/draft", json={"base_revision": 0, "spec": spec})
    names = client.get("/ui/api/canvas/workflows/triage/names", params={"node": "route"}).json()["names"]
    found = {n["name"]: n for n in names}
    assert found["input.output_parsed.kind"]["type"] == "string" and "state.tries" in found
    assert "workflow.input" in found and "nodes.classify.output_parsed.kind" in found
    assert "nodes.ok.output_text" not in found  # not before route
    missing = client.get("/ui/api/canvas/workflows/triage/names", params={"node": "ghost"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "query.node"


def test_only_admin_keys_edit(canvas, client) -> None:
    with canvas.client(canvas.scoped_key) as approver:  # an approver of every workflow, not an admin
        r = approver.put("/ui/api/canvas/workflows/approve/draft", json={"base_revision": 0, "yaml": APPROVE})
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_an_admin"
        assert "--admin" in r.json()["error"]["hint"]
        assert approver.get("/ui/api/canvas/workflows").json() == {"workflows": []}
        assert approver.get("/ui/api/canvas/workflows/approve").status_code == 403
        assert approver.post("/ui/api/canvas/workflows/approve/publish", json={"revision": 1}).status_code == 403
        assert approver.post("/ui/api/canvas/validate", json={"yaml": APPROVE}).status_code == 403
    with httpx.Client(base_url=canvas.url, timeout=30) as nobody:
        assert nobody.get("/ui/api/canvas/workflows").status_code == 401
    listed = client.get("/ui/api/canvas/workflows").json()["workflows"]
    assert "approve" in {w["name"] for w in listed}
