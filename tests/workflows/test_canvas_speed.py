"""What makes a big workflow quick on the canvas (issue 16), asserted by what is done, not by
time: validation reads the settings once, the loader composes with libyaml within the same
bounds, and a save rewrites only the changed pieces through ruamel.yaml (with the same text
as the whole-document path)."""

from __future__ import annotations

import copy
import itertools

import pytest
import yaml

from keel import safeload
from keel.safeload import InputLimitError, compose_yaml
from keel.workflows import roundtrip
from keel.workflows.loader import parse_spec, read_document
from keel.workflows.roundtrip import apply_data
from keel.workflows.validate import compile_workflow


def big_spec(n: int) -> str:
    """A chain of ``n`` nodes (Agent / Transform / If-else), with comments, a multi-line text and a layout."""
    lines = ["# A long chain.", f"name: big-{n}", "description: many nodes", "nodes:", "  - {id: start, type: start}"]
    ids = ["start"]
    for i in range(1, n - 1):
        if i % 10 == 0:
            lines.append(f"  - {{id: n{i}, type: if_else, branches: [{{name: go, condition: 'size(input_as_text) > {i}'}}]}}")
        elif i % 2:
            lines.append(f"  - id: n{i}\n    type: agent\n    model: 'scripted:echo'\n    instructions: |\n"
                         f"      Step {i}.\n      Be brief.   # not a comment: in the block")
        else:
            lines.append(f"  # transform {i}\n  - {{id: n{i}, type: transform, expression: 'input.output_text'}}")
        ids.append(f"n{i}")
    lines.append("  - {id: done, type: end}  # the end")
    ids.append("done")
    lines.append("edges:")
    for i, (a, b) in enumerate(itertools.pairwise(ids)):
        if a.startswith("n") and int(a[1:]) % 10 == 0:
            lines.append(f"  - {{from: {a}, port: go, to: {b}}}")
            lines.append(f"  - {{from: {a}, port: else, to: {ids[min(i + 2, len(ids) - 1)]}}}")
        else:
            lines.append(f"  - {{from: {a}, to: {b}}}")
    lines.append("layout:\n  nodes:")
    lines += [f"    {node_id}: {{x: {(i % 25) * 260}, y: {(i // 25) * 140}}}" for i, node_id in enumerate(ids)]
    return "\n".join(lines) + "\n"


def test_validation_reads_the_settings_once_not_once_per_model(monkeypatch) -> None:
    import keel.config

    calls = []
    real = keel.config.get_settings
    monkeypatch.setattr(keel.config, "get_settings", lambda *a, **k: calls.append(1) or real(*a, **k))
    compiled = compile_workflow(parse_spec(big_spec(40)))
    assert len([n for n in compiled.spec.nodes if n.type == "agent"]) >= 15
    assert len(calls) == 1  # the old code read them once per Agent node


def _python_compose(text: str):
    loader = safeload._BoundedLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _shape(node, above: frozenset = frozenset()):
    if node is None:
        return None
    if id(node) in above:  # a recursive alias
        return ("cycle", node.start_mark.line)
    if isinstance(node, yaml.ScalarNode):
        return (node.tag, node.value, node.style, node.start_mark.line)
    above = above | {id(node)}
    if isinstance(node, yaml.SequenceNode):
        return (node.tag, node.start_mark.line, node.flow_style, [_shape(x, above) for x in node.value])
    return (node.tag, node.start_mark.line, node.flow_style,
            [(_shape(a, above), _shape(b, above)) for a, b in node.value])


DOCS = [big_spec(30), "a: &x [1, 2]\nb: *x\n", "- - - a\n", "<<: {a: 1}\nb: 2\n", "a: 2001-12-14\nb: !!binary aGk=\n",
        "", "# only a comment\n", "\ufeffa: 1\n", "{a: 1, a: 2}\n", "a: 'it''s'\nb: \"x\\ty\"\nc: |\n  one\n\n  two\n"]


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
@pytest.mark.parametrize("text", DOCS)
def test_libyaml_composes_the_same_tree_as_the_bounded_python_composer(text, monkeypatch) -> None:
    expected = _shape(_python_compose(text))

    def refuse(*a, **k):
        raise AssertionError("composed in Python")

    monkeypatch.setattr(safeload, "_BoundedLoader", refuse)  # the old code composed every document in Python
    assert _shape(compose_yaml(text)) == expected


@pytest.mark.parametrize("text", [
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    "[" * 150 + "]" * 150,
    "a: &a\n  b: *a\n",
    "a: 'unclosed\nb: 2\n",
])
def test_bounds_and_errors_are_the_python_composers(text) -> None:
    try:
        expected: object = ("ok", _shape(_python_compose(text)))
    except (InputLimitError, yaml.YAMLError) as e:
        expected = (type(e).__name__, str(e))
    try:
        got: object = ("ok", _shape(compose_yaml(text)))
    except (InputLimitError, yaml.YAMLError) as e:
        got = (type(e).__name__, str(e))
    assert got == expected


def _whole_document(text: str, new: dict) -> str:
    saved = roundtrip._splice
    roundtrip._splice = lambda *a: None
    try:
        return apply_data(text, new).text
    finally:
        roundtrip._splice = saved


EDITS = {
    "a title": lambda d: d["nodes"][20].__setitem__("title", "edited"),
    "instructions": lambda d: d["nodes"][21].__setitem__("instructions", "Step 21.\nBe brief, really.\n"),
    "a field removed": lambda d: d["nodes"][23].pop("instructions"),
    "two positions": lambda d: [d["layout"]["nodes"][k].__setitem__("x", -5.5) for k in ("n3", "n40")],
    "an edge": lambda d: d["edges"][4].__setitem__("to", "n9"),
    "a top-level string": lambda d: d.__setitem__("description", "no"),  # must stay a string
    "a viewport added": lambda d: d["layout"].__setitem__("viewport", {"x": 1, "y": -2.5, "zoom": 0.4}),
    "a viewport and a title": lambda d: (d["layout"].__setitem__("viewport", {"x": 0, "y": 0, "zoom": 1}),
                                         d["nodes"][5].__setitem__("title", "on: yes")),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_save_rewrites_only_the_changed_pieces_with_the_whole_document_paths_text(edit, monkeypatch) -> None:
    text = big_spec(60)
    new = copy.deepcopy(read_document(text)[0])
    EDITS[edit](new)
    expected = _whole_document(text, new)
    loaded: list[int] = []
    real_rt = roundtrip._rt

    def counting_rt(*a):
        y = real_rt(*a)
        load = y.load
        y.load = lambda s: loaded.append(len(s)) or load(s)
        return y

    monkeypatch.setattr(roundtrip, "_rt", counting_rt)
    result = apply_data(text, new)
    assert result.text == expected and result.changed and result.comments_kept
    assert read_document(result.text)[0] == new
    assert "# A long chain." in result.text and "# transform 32" in result.text and "# the end" in result.text
    assert max(loaded, default=0) < len(text) / 10  # the old code loaded the whole document into ruamel.yaml
