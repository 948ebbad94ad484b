"""CEL as Keel evaluates it, checked against cases from the official cel-spec conformance suite
(google/cel-spec, tests/simple/testdata/*.textproto; the section/name is given per case)."""

from __future__ import annotations

import pytest

from keel.workflows.cel import CelError, compile_expression, referenced

VARS = {"input": {"output_parsed": {"classification": "refund", "items": [1, 2]}, "output_text": "hi"},
        "input_as_text": "I want a refund", "state": {"tries": 1, "name": "Ada"}, "nodes": {}, "workflow": {}}

CASES = [
    ("logic/conditional/true_case", "true ? 1 : 2", 1),
    ("logic/conditional/false_case", "false ? 'foo' : 'bar'", "bar"),
    ("logic/AND/short_circuit_error_left", "false && (2 / 0 > 3 ? false : true)", False),
    ("logic/AND/short_circuit_error_right", "(2 / 0 > 3 ? false : true) && false", False),
    ("logic/OR/short_circuit_error_right", "(2 / 0 > 3 ? false : true) || true", True),
    ("logic/NOT/not_true", "!true", False),
    ("string/size/unicode", "size('πέντε')", 5),
    ("string/starts_with/unicode", "'завтра'.startsWith('за')", True),
    ("string/ends_with/unicode", "'forté'.endsWith('té')", True),
    ("string/matches/re_alt", "'grey'.matches('gr(a|e)y')", True),
    ("string/concatentation/ascii_unicode", "'r' + 'ô' + 'le'", "rôle"),
    ("string/contains/contains_unicode", "'Straße'.contains('aß')", True),
    ("comparisons/eq_literal/eq_list_numbers", "[1, 2, 3] == [1, 2, 3]", True),
    ("comparisons/eq_literal/eq_map_string", "{'k':'v'} == {'k':'v'}", True),
    ("comparisons/in_list_literal/elem_in_list", "'elem' in ['elem', 'elemA', 'elemB']", True),
    ("comparisons/in_map_literal/key_in_map", "'key' in {'key':'1', 'other':'2'}", True),
    ("integer_math/int64_math/div_positive_negative", "-17 / 3", -5),
    ("integer_math/int64_math/mod_negative_positive", "-43 % 5", -3),
    ("fp_math/fp_math/add_positive_positive", "4.25 + 15.25", 19.5),
    ("fields/map_fields/map_key_int64", "{0:1,2:2,5:true}[5]", True),
    ("fields/map_has/has", "has({'a': 1, 'b': 2}.a)", True),
    ("fields/map_has/has_not", "has({'a': 1, 'b': 2}.c)", False),
    ("lists/index/zero_based", "[7, 8, 9][0]", 7),
    ("macros/exists/list_elem_some_true", "[1, 2, 3].exists(e, e == 2)", True),
    ("macros/filter/list_filter", "[1, 2, 3, 4].filter(n, n % 2 == 0)", [2, 4]),
    ("conversions/int/string", "int('987')", 987),
    ("conversions/string/int", "string(-123)", "-123"),
    ("string_ext/lower_ascii", "'TacoCat'.lowerAscii()", "tacocat"),
    ("string_ext/split", "'hello world'.split(' ')", ["hello", "world"]),
    ("keel/brief example", "input.output_parsed.classification == 'refund'", True),
    ("keel/state", "state.tries < 3 && state.name.startsWith('A')", True),
    ("keel/has on a variable", "has(input.output_parsed.reason)", False),
    ("keel/ternary and size", "size(input.output_parsed.items) > 1 ? 'many' : 'few'", "many"),
    ("keel/map literal", "{'who': state.name, 'n': state.tries + 1}", {"who": "Ada", "n": 2}),
]


@pytest.mark.parametrize(("name", "expr", "expected"), CASES, ids=[c[0] for c in CASES])
def test_conformance_case(name: str, expr: str, expected: object) -> None:
    got = compile_expression(expr).evaluate(VARS)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("expr", ["2 / 0 > 4 ? 'baz' : 'quux'", "true && 1/0 != 0", "9223372036854775807 + 1",
                                  "{0:1,2:2,5:3}[1]", "state.missing"])
def test_evaluation_errors_are_raised_not_returned(expr: str) -> None:
    with pytest.raises(CelError):
        compile_expression(expr).evaluate(VARS)


@pytest.mark.parametrize(("expr", "says", "column"), [
    ("1 +", "Syntax error", 4),
    ("inpt.x", "undeclared reference to 'inpt.x'", 5),
    ("'a' + 1", "no matching overload", 5),
    ("size(1)", "no matching overload", 5),
    ("input_as_text > 3", "no matching overload", 15),
])
def test_errors_found_at_compile_time(expr: str, says: str, column: int) -> None:
    with pytest.raises(CelError) as e:
        compile_expression(expr)
    assert says in e.value.message and e.value.column == column


def test_state_and_node_references_are_found_outside_strings() -> None:
    assert referenced("state.a + nodes.b.output_text + 'state.z' + x.state.q") == [("state", "a"), ("nodes", "b")]


def test_plain_paths_read_without_cel_give_what_cel_gives() -> None:
    """``input.output_text`` and the like skip CEL for scalars; anything else (a missing key,
    a map, a list, an int beyond int64) goes to CEL, whose answer or error is the reference.
    One difference, on purpose: a plain path reads only what it names, where CEL refuses every
    expression when any variable holds a value it cannot convert (an int beyond int64)."""
    import dataclasses

    import pytest

    from keel.workflows.cel import CelError, compile_expression

    env = {"input": {"output_text": "hi", "output_parsed": {"n": 3, "x": 1.5, "ok": True, "none": None,
                                                              "list": [1, 2], "map": {"a": 1}}},
           "input_as_text": "hi", "state": {}, "nodes": {}, "workflow": {"name": "w"}}
    sources = ["input.output_text", "input_as_text", "input . output_parsed . n", "input.output_parsed.x",
               "input.output_parsed.ok", "input.output_parsed.none", "input.output_parsed.list",
               "input.output_parsed.map", "workflow.name", "input.output_parsed.missing"]
    for source in sources:
        fast = compile_expression(source)
        assert fast._path is not None, source
        slow = dataclasses.replace(fast, _path=None)
        try:
            expected = slow.evaluate(env)
        except CelError as e:
            with pytest.raises(CelError) as got:
                fast.evaluate(env)
            assert got.value.message == e.message
            continue
        assert fast.evaluate(env) == expected and type(fast.evaluate(env)) is type(expected), source
    env["input"]["output_parsed"]["big"] = 2**70
    assert compile_expression("input.output_text").evaluate(env) == "hi"
    # an integer outside int64 is a double in CEL's JSON mapping (issue 15), on both paths
    assert compile_expression("input.output_parsed.big").evaluate(env) == float(2**70)
    assert compile_expression("input.output_text + '!'").evaluate(env) == "hi!"
    assert compile_expression("input.output_text + '!'")._path is None
    assert compile_expression("size(input_as_text)")._path is None
