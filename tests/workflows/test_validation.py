"""Bad specs are reported at validate time with file, line, node id and a hint — never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.workflows import SpecError, validate

GOOD = """
name: good
nodes:
  - {id: start, type: start, state: {tries: 0}}
  - id: route
    type: if_else
    branches:
      - {name: refund, condition: 'input_as_text.contains("refund")'}
  - {id: bump, type: set_state, assign: {tries: "state.tries + 1"}}
  - {id: done, type: end}
edges:
  - {from: start, to: route}
  - {from: route, port: refund, to: bump}
  - {from: route, port: else, to: done}
  - {from: bump, to: done}
"""


def problems(spec_file, text: str) -> list:
    with pytest.raises(SpecError) as e:
        validate(spec_file(text))
    return e.value.problems


def test_a_good_spec_validates(spec_file) -> None:
    wf = validate(spec_file(GOOD))
    assert wf.spec.name == "good" and wf.target("route", "refund") == "bump"


def test_malformed_yaml_names_the_line(spec_file) -> None:
    [p] = problems(spec_file, "name: x\nnodes:\n  - {id: start, type: start\n")
    assert "malformed" in p.message and p.line == 4 and p.file.endswith("wf.yaml")


def test_malformed_json_names_the_line(spec_file) -> None:
    [p] = problems(spec_file, '{"name": "x",\n "nodes": [\n  {"id": "start" "type": "start"}]}')
    assert "malformed" in p.message and p.line == 3


def test_unknown_node_type_suggests_the_right_one(spec_file) -> None:
    [p] = problems(spec_file, GOOD.replace("type: set_state", "type: set_sate"))
    assert p.message == "unknown node type 'set_sate'" and "set_state" in p.hint
    assert p.node_id == "bump" and p.line == 8


def test_unknown_and_missing_fields(spec_file) -> None:
    ps = problems(spec_file, GOOD.replace("assign: {tries:", "asign: {tries:"))
    msgs = [p.message for p in ps]
    assert any("unknown field 'asign'" in m for m in msgs) and any("missing required field 'assign'" in m for m in msgs)
    assert all(p.node_id == "bump" and p.line == 8 for p in ps)


def test_dangling_edge(spec_file) -> None:
    [p] = problems(spec_file, GOOD.replace("{from: bump, to: done}", "{from: bump, to: dne}"))
    assert "unknown node 'dne'" in p.message and "done" in p.hint and p.line == 14


def test_missing_edge(spec_file) -> None:
    ps = problems(spec_file, GOOD.replace("  - {from: route, port: else, to: done}\n", ""))
    [p] = [p for p in ps if "missing edge" in p.message]
    assert p.node_id == "route" and "port: else" in p.hint and p.line == 4


def test_bad_port(spec_file) -> None:
    [p] = problems(spec_file, GOOD.replace("port: refund, to: bump", "port: refnd, to: bump"))
    assert "no port 'refnd'" in p.message and "refund" in p.hint


def test_unreachable_node(spec_file) -> None:
    text = GOOD.replace("  - {id: done, type: end}\n", "  - {id: done, type: end}\n  - {id: orphan, type: end}\n")
    [p] = problems(spec_file, text)
    assert "unreachable" in p.message and p.node_id == "orphan" and p.line == 10


def test_cel_syntax_error(spec_file) -> None:
    [p] = problems(spec_file, GOOD.replace('input_as_text.contains("refund")', 'input_as_text.contains("refund"'))
    assert "CEL error" in p.message and "Syntax error" in p.message and p.node_id == "route" and p.line == 7


def test_cel_type_error(spec_file) -> None:
    [p] = problems(spec_file, GOOD.replace("state.tries + 1", "'a' + 1"))
    assert "no matching overload" in p.message and p.node_id == "bump" and "typed" in p.hint


def test_unknown_variables(spec_file) -> None:
    ps = problems(spec_file, GOOD.replace("state.tries + 1", "state.trys + nodes.nope.output_parsed + inpt"))
    msgs = " | ".join(p.message for p in ps)
    assert "undeclared reference to 'inpt'" in msgs
    ps = problems(spec_file, GOOD.replace("state.tries + 1", "state.trys + size(nodes.nope.output_text)"))
    msgs = " | ".join(p.message for p in ps)
    assert "unknown variable state.trys" in msgs and "unknown variable nodes.nope" in msgs
    assert all(p.node_id == "bump" for p in ps)


def test_start_and_end_are_required(spec_file) -> None:
    ps = problems(spec_file, "name: x\nnodes:\n  - {id: a, type: note}\n")
    msgs = " | ".join(p.message for p in ps)
    assert "exactly one start node" in msgs and "no end node" in msgs


def test_file_search_query_is_checked(spec_file) -> None:
    text = GOOD.replace("  - {id: done, type: end}\n",
                        "  - {id: done, type: end}\n  - {id: fs, type: file_search, collection: docs,"
                        " query: 'input_as_text + nodes.nope.output_text'}\n")
    text = text.replace("{from: bump, to: done}", "{from: bump, to: fs}\n  - {from: fs, to: done}")
    [p] = problems(spec_file, text)
    assert "nodes.nope" in p.message and p.node_id == "fs"


def test_agent_checks_model_tools_and_schema(spec_file) -> None:
    text = """
    name: a
    nodes:
      - {id: start, type: start}
      - id: bot
        type: agent
        model: opneai:gpt-4.1-mini
        tools: [no_such_tool, "os:nope"]
        output_schema: {type: objekt}
        instructions: "Hi {{ state.who }}"
      - {id: done, type: end}
    edges:
      - {from: start, to: bot}
      - {from: bot, to: done}
    """
    msgs = " | ".join(p.message for p in problems(spec_file, text))
    for want in ("unknown provider 'opneai'", "tool 'no_such_tool'", "tool 'os:nope'", "not a valid JSON Schema",
                 "unknown variable state.who"):
        assert want in msgs


def test_while_body_must_loop_back(spec_file) -> None:
    text = """
    name: w
    nodes:
      - {id: start, type: start}
      - {id: loop, type: while, condition: "true"}
      - {id: body, type: transform, expression: "1"}
      - {id: done, type: end}
    edges:
      - {from: start, to: loop}
      - {from: loop, port: body, to: body}
      - {from: body, to: done}
      - {from: loop, to: done}
    """
    [p] = problems(spec_file, text)
    assert "never returns" in p.message and p.node_id == "loop"


def test_yaml_pitfall_no_as_false(spec_file) -> None:
    ps = problems(spec_file, GOOD.replace("id: done", "id: no").replace("to: done", "to: no"))
    assert any("valid string" in p.message for p in ps)


def test_every_problem_is_a_user_error(spec_file: object, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        validate(tmp_path / "missing.yaml")
    assert e.value.exit_code == 2 and "does not exist" in e.value.message


def test_fields_of_a_strict_output_schema_are_checked(spec_file) -> None:
    text = """
    name: typo
    nodes:
      - {id: start, type: start}
      - id: triage
        type: agent
        model: scripted:x
        output_schema:
          type: object
          properties: {classification: {type: string}}
          required: [classification]
          additionalProperties: false
      - id: route
        type: if_else
        branches: [{name: refund, condition: 'input.output_parsed.clasification == "refund"'}]
      - {id: done, type: end, output: "nodes.triage.output_parsed.classification"}
      - {id: other, type: end, output: "nodes.triage.output_parsed.clas"}
    edges:
      - {from: start, to: triage}
      - {from: triage, to: route}
      - {from: route, port: refund, to: done}
      - {from: route, port: else, to: other}
    """
    ps = problems(spec_file, text)
    assert [(p.node_id, p.line) for p in ps] == [("route", 14), ("other", 16)]
    assert "input.output_parsed.clasification" in ps[0].message and "classification" in ps[0].hint
    assert "nodes.triage.output_parsed.clas " in ps[1].message
