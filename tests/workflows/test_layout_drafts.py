"""The spec's ``layout`` section, drafts and preview versions, and the YAML round trip
(keel.workflows.drafts, keel.workflows.roundtrip), on a real SQLite store."""

from __future__ import annotations

import pytest

from keel.store import open_store
from keel.workflows import SpecError, Versions
from keel.workflows.drafts import PREVIEW_VERSION, DraftConflict, Drafts
from keel.workflows.loader import parse_spec, read_document
from keel.workflows.roundtrip import apply_data
from keel.workflows.validate import compile_workflow

SPEC = """\
name: moved
nodes:
  - {id: start, type: start}
  # the end
  - {id: done, type: end}
edges:
  - {from: start, to: done}
"""


def test_a_layout_entry_naming_no_node_is_a_problem_at_its_line() -> None:
    text = SPEC + "layout:\n  nodes:\n    start: {x: 0, y: 0}\n    dnoe: {x: 200, y: 0}\n"
    with pytest.raises(SpecError) as e:
        compile_workflow(parse_spec(text, file="moved.yaml"))
    [p] = e.value.problems
    assert p.path == "layout.nodes.dnoe" and p.line == 11 and "'done'" in p.hint
    assert compile_workflow(parse_spec(text.replace("dnoe", "done"))).spec.layout.nodes["done"].x == 200


def test_a_node_position_is_refused_with_a_pointer_to_layout() -> None:
    text = SPEC.replace("{id: done, type: end}", "{id: done, type: end, position: {x: 1, y: 2}}")
    with pytest.raises(SpecError) as e:
        parse_spec(text)
    [p] = e.value.problems
    assert p.node_id == "done" and p.line == 5 and "layout" in p.hint and "done" in p.hint


def test_moving_nodes_is_not_a_new_version(keel_home) -> None:
    store = open_store()
    first, created = Versions(store).publish(parse_spec(SPEC), models={})
    moved = SPEC + "layout:\n  nodes: {start: {x: 5, y: 5}}\n  viewport: {x: 0, y: 0, zoom: 1.5}\n"
    again, created_again = Versions(store).publish(parse_spec(moved), models={})
    assert created and not created_again and again.version == first.version == 1 and again.digest == first.digest


def test_drafts_conflict_publish_and_preview_versions(keel_home) -> None:
    store = open_store()
    drafts = Drafts(store)
    d1 = drafts.save("moved", SPEC, base_revision=0, by="me")
    assert (d1.revision, d1.updated_by) == (1, "me") and d1.digest is not None
    with pytest.raises(DraftConflict) as e:
        drafts.save("moved", SPEC + "# other tab\n", base_revision=0)
    assert e.value.current is not None and e.value.current.source == SPEC
    d2 = drafts.save("moved", "not: [a spec", base_revision=1)  # a draft may be work in progress
    assert d2.revision == 2 and d2.digest is None
    with pytest.raises(SpecError):
        drafts.publish("moved", revision=2)
    drafts.save("moved", SPEC, base_revision=2)
    with pytest.raises(DraftConflict):
        drafts.publish("moved", revision=2)
    version, created = drafts.publish("moved", revision=3, models={})
    assert created and version.version == 1
    preview = drafts.preview("moved", SPEC.replace("# the end", "# the end, previewed"), revision=3, aliases={})
    assert preview.version == PREVIEW_VERSION and Versions(store).by_id(preview.id).source == preview.source
    assert drafts.preview("moved", preview.source, revision=3, aliases={}).id == preview.id  # reused
    assert [w["latest"] for w in Versions(store).list()] == [1]  # never listed


def test_round_trip_quotes_what_pyyaml_would_read_as_another_type() -> None:
    data, _ = read_document(SPEC)
    data["description"] = "no"
    data["nodes"][1]["title"] = "12:30"
    result = apply_data(SPEC, data)
    assert result.comments_kept and "# the end" in result.text
    assert read_document(result.text)[0] == data  # "no" stays a string, not False


def test_deleting_a_node_keeps_the_comments_of_the_others() -> None:
    text = SPEC.replace("  # the end\n", "  # middle\n  - {id: note, type: note, text: hi}\n  # the end\n")
    data, _ = read_document(text)
    data["nodes"] = [n for n in data["nodes"] if n["id"] != "note"]
    out = apply_data(text, data).text
    assert "# the end" in out and "note, text: hi" not in out and read_document(out)[0] == data
