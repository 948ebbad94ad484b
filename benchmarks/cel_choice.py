"""Which CEL library: run cel-spec conformance cases and time evaluation on each candidate.

The cases are taken from google/cel-spec `tests/simple/testdata/*.textproto`
(the sections named in each case), limited to the features Keel's workflows use:
field access, comparisons, &&, ||, !, in, size(), string functions, arithmetic,
the ternary operator, has(), list and map literals, and the list macros.

Usage (each library that is installed is measured; others are skipped):

    pip install cel-expr-python common-expression-language cel-python
    python benchmarks/cel_choice.py
"""

from __future__ import annotations

import sys
import time

ERROR = object()  # the case expects an evaluation error

# (cel-spec file/section/name, expression, variables, expected value or ERROR)
CASES: list[tuple[str, str, dict, object]] = [
    ("logic/conditional/true_case", "true ? 1 : 2", {}, 1),
    ("logic/conditional/false_case", "false ? 'foo' : 'bar'", {}, "bar"),
    ("logic/conditional/error_case", "2 / 0 > 4 ? 'baz' : 'quux'", {}, ERROR),
    ("logic/AND/all_true", "true && true", {}, True),
    ("logic/AND/false_right", "true && false", {}, False),
    ("logic/AND/short_circuit_error_left", "false && (2 / 0 > 3 ? false : true)", {}, False),
    ("logic/AND/short_circuit_error_right", "(2 / 0 > 3 ? false : true) && false", {}, False),
    ("logic/AND/error_right", "true && 1/0 != 0", {}, ERROR),
    ("logic/OR/false_left", "false || true", {}, True),
    ("logic/OR/short_circuit_error_right", "(2 / 0 > 3 ? false : true) || true", {}, True),
    ("logic/OR/error_left", "1/0 != 0 || false", {}, ERROR),
    ("logic/NOT/not_true", "!true", {}, False),
    ("string/size/unicode", "size('πέντε')", {}, 5),
    ("string/starts_with/basic_true", "'foobar'.startsWith('foo')", {}, True),
    ("string/ends_with/unicode", "'forté'.endsWith('té')", {}, True),
    ("string/matches/re_alt", "'grey'.matches('gr(a|e)y')", {}, True),
    ("string/matches/basic", "'hubba'.matches('ubb')", {}, True),
    ("string/concatentation/ascii_unicode", "'r' + 'ô' + 'le'", {}, "rôle"),
    ("string/contains/contains_unicode", "'Straße'.contains('aß')", {}, True),
    ("comparisons/eq_literal/eq_string", "'' == \"\"", {}, True),
    # heterogeneous equality; cel-spec runs it unchecked (a type checker may reject it)
    ("comparisons/eq_literal/eq_mixed_types (unchecked)", "dyn(1) == dyn(1.0)", {}, True),
    ("comparisons/eq_literal/eq_list_numbers", "[1, 2, 3] == [1, 2, 3]", {}, True),
    ("comparisons/eq_literal/eq_map_string", "{'k':'v'} == {'k':'v'}", {}, True),
    ("comparisons/lt_literal/lt_string", "'a' < 'b'", {}, True),
    ("comparisons/in_list_literal/elem_in_list", "'elem' in ['elem', 'elemA', 'elemB']", {}, True),
    ("comparisons/in_list_literal/elem_not_in_list", "'not' in ['elem1', 'elem2', 'elem3']", {}, False),
    ("comparisons/in_map_literal/key_in_map", "'key' in {'key':'1', 'other':'2'}", {}, True),
    ("integer_math/int64_math/add_positive_positive", "40 + 2", {}, 42),
    ("integer_math/int64_math/div_positive_negative", "-17 / 3", {}, -5),
    ("integer_math/int64_math/mod_negative_positive", "-43 % 5", {}, -3),
    ("integer_math/int64_math/int64_overflow_positive", "9223372036854775807 + 1", {}, ERROR),
    ("fp_math/fp_math/add_positive_positive", "4.25 + 15.25", {}, 19.5),
    ("fields/map_fields/map_key_int64", "{0:1,2:2,5:true}[5]", {}, True),
    ("fields/map_fields/map_no_such_key", "{0:1,2:2,5:3}[1]", {}, ERROR),
    ("fields/qualified_identifier_resolution/map_field_select", "a.b.c", {"a": {"b": {"c": 10}}}, 10),
    ("fields/map_has/has", "has({'a': 1, 'b': 2}.a)", {}, True),
    ("fields/map_has/has_not", "has({'a': 1, 'b': 2}.c)", {}, False),
    ("fields/has on a variable", "has(input.output_parsed.reason)", {"input": {"output_parsed": {"x": 1}}}, False),
    ("lists/concatenation/list_append", "[0, 1, 2] + [3, 4, 5] == [0, 1, 2, 3, 4, 5]", {}, True),
    ("lists/index/zero_based", "[7, 8, 9][0]", {}, 7),
    ("lists/size/list_size", "size([1, 2, 3])", {}, 3),
    ("lists/in/list_in", "7 in [5, 6, 7]", {}, True),
    ("macros/exists/list_elem_some_true", "[1, 2, 3].exists(e, e == 2)", {}, True),
    ("macros/all/list_elem_all_true", "[1, 2, 3].all(e, e > 0)", {}, True),
    ("macros/map/list_one", "[3].map(n, n * n) == [9]", {}, True),
    ("macros/filter/list_filter", "[1, 2, 3, 4].filter(n, n % 2 == 0)", {}, [2, 4]),
    ("conversions/string/int", "string(-123)", {}, "-123"),
    ("conversions/int/string", "int('987')", {}, 987),
    ("conversions/double/int", "double(-3)", {}, -3.0),
    ("parse/whitespace/spaces", "[ . 1 ]", {}, ERROR),  # syntax error expected at compile or eval
    ("keel/refund", "input.output_parsed.classification == 'refund' && state.tries < 3",
     {"input": {"output_parsed": {"classification": "refund"}}, "state": {"tries": 1}}, True),
    ("keel/transform", "{'name': input.name, 'n': size(input.items)}",
     {"input": {"name": "x", "items": [1, 2]}}, {"name": "x", "n": 2}),
]


def _plain(v):
    """Normalise library values to plain Python for comparison."""
    if isinstance(v, bool) or v is None:
        return v
    if "Bool" in type(v).__name__:  # celpy's BoolType subclasses int
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, dict) or hasattr(v, "items"):
        return {_plain(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple) or hasattr(v, "__iter__"):
        return [_plain(x) for x in v]
    return v


def lib_google():
    from cel_expr_python import cel

    def run(expr, variables):
        env = cel.NewEnv(variables={k: cel.Type.DYN for k in variables})
        value = env.compile(expr).eval(data=variables)
        if value.type() == cel.Type.ERROR:  # cel-cpp returns errors as values
            raise RuntimeError(value.plain_value())
        return value.plain_value()

    def prepare(expr, variables):
        env = cel.NewEnv(variables={k: cel.Type.DYN for k in variables})
        e = env.compile(expr)
        return lambda: e.eval(data=variables).plain_value()

    return "cel-expr-python (cel-cpp)", run, prepare


def lib_rust():
    import cel

    def run(expr, variables):
        return cel.compile(expr).execute(variables)

    def prepare(expr, variables):
        p = cel.compile(expr)
        return lambda: p.execute(variables)

    return "common-expression-language (cel-rust)", run, prepare


def lib_celpy():
    import celpy

    env = celpy.Environment()

    def run(expr, variables):
        prg = env.program(env.compile(expr))
        result = prg.evaluate({k: celpy.json_to_cel(v) for k, v in variables.items()})
        if isinstance(result, celpy.CELEvalError):  # errors come back as values
            raise result
        return result

    def prepare(expr, variables):
        prg = env.program(env.compile(expr))
        act = {k: celpy.json_to_cel(v) for k, v in variables.items()}
        return lambda: prg.evaluate(act)

    return "cel-python (celpy)", run, prepare


def lib_celparser():
    import celparser

    def run(expr, variables):
        return celparser.compile(expr)(variables)

    def prepare(expr, variables):
        fn = celparser.compile(expr)
        return lambda: fn(variables)

    return "celparser", run, prepare


def conformance(run) -> tuple[int, list[str]]:
    passed, failures = 0, []
    for name, expr, variables, expected in CASES:
        try:
            got = _plain(run(expr, variables))
            ok = expected is not ERROR and got == expected and type(got) is type(expected)
            detail = f"got {got!r}"
        except Exception as e:  # any library error counts as an evaluation error
            ok = expected is ERROR
            detail = f"raised {type(e).__name__}: {str(e).splitlines()[0][:80]}"
        if ok:
            passed += 1
        else:
            failures.append(f"{name}: {expr!r} -> {detail}")
    return passed, failures


def speed(prepare, n: int = 20_000) -> float:
    """Microseconds per evaluation of a typical If/else condition (compiled once)."""
    fn = prepare(
        "input.output_parsed.classification == 'refund' && state.tries < 3",
        {"input": {"output_parsed": {"classification": "refund"}}, "state": {"tries": 1}},
    )
    for _ in range(200):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    print(f"python {sys.version.split()[0]}; {len(CASES)} cases")
    for factory in (lib_google, lib_rust, lib_celpy, lib_celparser):
        try:
            name, run, prepare = factory()
        except ImportError as e:
            print(f"- {factory.__name__}: not installed ({e})")
            continue
        passed, failures = conformance(run)
        try:
            us = f"{speed(prepare, 5_000 if 'celpy' in name or 'celparser' in name else 20_000):.1f} µs/eval"
        except Exception as e:
            us = f"speed test failed: {e}"
        print(f"## {name}: {passed}/{len(CASES)} cases pass; {us}")
        for f in failures:
            print(f"   FAIL {f}")


if __name__ == "__main__":
    main()
