"""Values at the CEL boundary (issue 15, "CEL correctness"): wide integers go in as doubles,
bytes / timestamps / durations / types / NaN come out as JSON, and `keel run --json` stays JSON."""

from __future__ import annotations

import json

import pytest

from keel.workflows import arun, validate
from keel.workflows.cel import compile_expression
from tests.workflows.test_cli import keel

WIDE = 2**70  # outside int64; a JSON number like it is a double in CEL's JSON mapping


@pytest.mark.parametrize("source, variables, expected", [
    ("input.n + 1.0", {"input": {"n": WIDE}}, float(WIDE) + 1.0),
    ("input.n > 5.0", {"input": {"n": -WIDE}}, False),
    ("size(state.ids)", {"state": {"ids": [1, WIDE, -WIDE]}}, 3),
    ("nodes.a.output_parsed.big == nodes.a.output_parsed.big", {"nodes": {"a": {"output_parsed": {"big": WIDE}}}},
     True),
])
def test_integers_outside_int64_do_not_break_expressions(source, variables, expected) -> None:
    assert compile_expression(source).evaluate(variables) == expected


@pytest.mark.parametrize("source, expected", [
    ('b"ab"', "YWI="),
    ('timestamp("2024-01-01T10:00:00Z")', "2024-01-01T10:00:00Z"),
    ('timestamp("2024-01-01T10:00:00.250Z")', "2024-01-01T10:00:00.25Z"),
    ('duration("90s")', "90s"),
    ('duration("1.5s")', "1.5s"),
    ("type(1)", "int"),
    ("type([1])", "list"),
    ("0.0 / 0.0", "NaN"),
    ("-1.0 / 0.0", "-Infinity"),
    ('{"k": [b"a", duration("2m")]}', {"k": ["YQ==", "120s"]}),
])
def test_values_json_cannot_hold_come_out_in_their_json_form(source, expected) -> None:
    value = compile_expression(source).evaluate({})
    assert value == expected
    json.dumps(value, allow_nan=False)


ODD = """
name: odd
nodes:
  - {id: start, type: start}
  - id: t
    type: transform
    fields:
      raw: 'b"ab"'
      at: 'timestamp("2024-01-01T10:00:00Z")'
      took: 'duration("90s")'
      kind: 'type(1)'
      ratio: '0.0 / 0.0'
      top: '1.0 / 0.0'
      big: 'input.output_parsed.n + 1.0'
  - {id: end, type: end, output: "nodes.t.output_parsed"}
edges:
  - {from: start, to: t}
  - {from: t, to: end}
"""


def test_keel_run_json_prints_valid_json_and_records_the_run(spec_file) -> None:
    path = spec_file(ODD)
    r = keel("run", str(path), "--input-json", json.dumps({"n": WIDE}), "--json", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert doc["status"] == "succeeded"
    assert doc["output"] == {"raw": "YWI=", "at": "2024-01-01T10:00:00Z", "took": "90s", "kind": "int",
                             "ratio": "NaN", "top": "Infinity", "big": float(WIDE) + 1.0}
    shown = keel("runs", "show", doc["run_id"])
    assert shown.returncode == 0 and "succeeded" in shown.stdout


def test_nan_from_the_input_still_prints_valid_json(spec_file) -> None:
    path = spec_file("""
        name: passthrough
        nodes:
          - {id: start, type: start}
          - {id: end, type: end, output: "input.output_parsed"}
        edges:
          - {from: start, to: end}
        """)
    r = keel("run", str(path), "--input-json", '{"x": NaN, "y": [Infinity]}', "--json", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert doc["output"] == {"x": "NaN", "y": ["Infinity"]}


async def test_wide_integer_in_state_and_input_runs(spec_file, keel_home) -> None:
    path = spec_file(f"""
        name: wide
        nodes:
          - {{id: start, type: start, state: {{big: {WIDE}}}}}
          - {{id: bump, type: set_state, assign: {{big: "state.big * 2.0"}}}}
          - {{id: end, type: end, output: "{{'big': state.big, 'in': input.output_parsed.id}}"}}
        edges:
          - {{from: start, to: bump}}
          - {{from: bump, to: end}}
        """)
    result = await arun(path, {"id": -WIDE})
    assert result.status == "succeeded", result.error
    assert result.output == {"big": float(WIDE) * 2.0, "in": float(-WIDE)}


def test_has_on_a_field_a_strict_schema_lacks_is_legal(spec_file) -> None:
    wf = validate(spec_file("""
        name: strict
        nodes:
          - {id: start, type: start}
          - id: classify
            type: agent
            model: scripted:x
            output_schema:
              type: object
              properties: {label: {type: string}}
              required: [label]
              additionalProperties: false
          - id: route
            type: if_else
            branches:
              - {name: scored, condition: "has(input.output_parsed.score)"}
              - {name: urgent, condition: "has(nodes.classify.output_parsed.urgent) ? nodes.classify.output_parsed.urgent : false"}
          - {id: end, type: end}
        edges:
          - {from: start, to: classify}
          - {from: classify, to: route}
          - {from: route, port: scored, to: end}
          - {from: route, port: urgent, to: end}
          - {from: route, port: else, to: end}
        """))
    assert ("route", "branches.scored") in wf.expressions
