"""Spec errors as a user meets them (issue 15, "Spec errors"): the real line of a YAML syntax error,
"did you mean" for unknown node types and fields, every problem of a node, both start nodes named."""

from __future__ import annotations

import pytest

from keel.workflows import SpecError, validate
from tests.workflows.test_cli import clean_failure, keel


def problems(spec_file, text: str) -> list:
    with pytest.raises(SpecError) as e:
        validate(spec_file(text))
    return e.value.problems


def test_an_unclosed_quote_is_reported_where_it_opened_with_the_parsers_words(spec_file) -> None:
    (p,) = problems(spec_file, """
        name: t
        nodes:
          - {id: start, type: start}
          - id: shape
            type: transform
            expression: "'unterminated
          - {id: end, type: end}
        edges:
          - {from: start, to: shape}
          - {from: shape, to: end}
        """)
    assert p.line == 6
    assert "while scanning a quoted scalar at line 6" in p.message
    assert "found unexpected end of stream" in p.message


def test_a_misindented_key_is_reported_at_its_own_line(spec_file) -> None:
    (p,) = problems(spec_file, """
        name: t
        nodes:
          - id: start
           type: start
        """)
    assert p.line == 4 and "while parsing a block collection at line 3" in p.message


def test_unknown_fields_get_did_you_mean_and_every_problem_of_a_node_is_listed(spec_file) -> None:
    found = problems(spec_file, """
        name: t
        nodes:
          - {id: start, type: start, stat: {n: 0}}
          - id: shape
            type: transform
            expresion: "1"
            fields: 3
          - id: ask
            type: agent
            model: scripted:x
            mcp: [{server: "stdio:x", tool: [a]}]
          - {id: end, type: end}
        edgs: []
        """)
    by = {(p.node_id, p.path): p for p in found}
    assert "did you mean 'state'?" in by[("start", "nodes[0].stat")].hint
    assert "did you mean 'expression'?" in by[("shape", "nodes[1].expresion")].hint
    assert ("shape", "nodes[1].fields") in by  # the node's second problem is listed too
    assert "did you mean 'tools'?" in by[("ask", "nodes[2].mcp[0].tool")].hint
    assert "did you mean 'edges'?" in by[(None, "edgs")].hint
    assert [p.line for p in found] == sorted(p.line for p in found)


def test_an_unknown_node_type_does_not_hide_the_other_nodes_problems(spec_file) -> None:
    found = problems(spec_file, """
        name: t
        nodes:
          - {id: start, type: start}
          - {id: a, type: transfrom, expression: "1"}
          - {id: b, type: transform, expresion: "1"}
          - {id: end, type: end}
        edges: []
        """)
    assert [(p.node_id, p.hint.split("?")[0]) for p in found] == [
        ("a", "did you mean 'transform'"), ("b", "did you mean 'expression'")]


def test_every_cel_problem_of_an_expression_is_listed(spec_file) -> None:
    found = problems(spec_file, """
        name: t
        nodes:
          - {id: start, type: start}
          - {id: shape, type: transform, expression: "foo + bar"}
          - {id: end, type: end}
        edges:
          - {from: start, to: shape}
          - {from: shape, to: end}
        """)
    assert [p.message.split(" — ")[0] for p in found] == [
        "CEL error in expression (column 1): undeclared reference to 'foo'",
        "CEL error in expression (column 7): undeclared reference to 'bar'"]


def test_two_start_nodes_are_both_named(spec_file) -> None:
    path = spec_file("""
        name: t
        nodes:
          - {id: begin, type: start}
          - {id: start2, type: start}
          - {id: end, type: end}
        edges:
          - {from: begin, to: end}
          - {from: start2, to: end}
        """)
    clean_failure(keel("workflows", "validate", str(path)), "found 2: 'begin', 'start2'")
