"""``keel workflows import`` on the shared Agent Builder cases: every workflow JSON and every
exported Agents SDK Python file imports, validates and runs with a scripted model, and the two
forms of one case give the same Keel workflow (docs/decisions/0012-agent-builder-import.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keel.testing import scripted
from keel.workflows import aapprove, arun
from keel.workflows.importers import NotImportable, import_file, import_text
from keel.workflows.importers.canonical import canonical
from keel.workflows.loader import parse_spec
from keel.workflows.validate import compile_workflow

CASES = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "agent-builder" / "cases"
HERE = Path(__file__).resolve().parent
needs_cases = pytest.mark.skipif(not CASES.is_dir(), reason=f"the Agent Builder cases are not at {CASES}")


def _cases(name: str) -> list[str]:
    if not CASES.is_dir():
        return []
    return sorted(d.name for d in CASES.iterdir() if (d / name).is_file() and not (d / "expected_error.txt").exists())


ERROR_CASES = ["logic_nodes--if_else--if_else_partial_invalid_expression",
               "logic_nodes--if_else--if_else_with_else_if_invalid_expression",
               "logic_nodes--while_loop--empty_while_loop"]

#: Cases whose own workflow cannot finish, with the failure a correct import must show.
#: The While cases loop on a state variable nothing changes (Agent Builder would loop too);
#: the MCP case calls https://api.example.com/mcp; the transform case's End reads `result`
#: from a Transform whose only entry had no value (Agent Builder's export dropped it too).
EXPECTED_FAILURES = {
    "logic_nodes--while_loop--nested_while_loops": "max_iterations",
    "logic_nodes--while_loop--while_loop_after_if_else": "max_iterations",
    "logic_nodes--while_loop--while_with_agent_body": "max_iterations",
    "logic_nodes--while_loop--while_with_agent_guardrails": "max_iterations",
    "logic_nodes--mcp--basic_mcp": "cannot connect to MCP server 'https://api.example.com/mcp'",
    ("logic_nodes--if_else--if_else_with_transform_in_branch", "input.json"): 'Key not found in map : "result"',
}
#: Inputs other than "hello": this case compares the input with numbers after `== ""`.
INPUTS = {"logic_nodes--if_else--if_else_with_multiple_else_if": ""}


def _instance(schema: dict) -> object:
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {k: _instance(v) for k, v in (schema.get("properties") or {}).items()}
    return {"string": "x", "number": 1.5, "integer": 1, "boolean": True, "array": []}.get(kind)


def _reply(request) -> str:
    return json.dumps(_instance(request.output_schema)) if request.output_schema else "ok"


def _scripted(spec: dict) -> dict:
    for n in spec["nodes"]:
        if n["type"] == "agent":
            n["model"] = "scripted:bot"
        for c in n.get("checks") or []:
            if isinstance(c, dict) and "model" in c:
                c["model"] = "scripted:bot"
    return spec


@pytest.fixture
def collections(tmp_path, keel_home, monkeypatch):
    """The collections the imported File search nodes name, made as the import report says."""
    pytest.importorskip("keel.context")
    from keel.context import Collection

    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "policy.md").write_text("# Holidays\n\nEveryone gets 27 days of paid holiday.\n")
    for name in ("files", "vs_123"):
        with Collection.open(name, embedder="test-hashing") as col:
            col.add(["docs"])


@needs_cases
@pytest.mark.parametrize(("case", "form"), [(c, f) for f in ("input.json", "expected_output.py") for c in _cases(f)])
async def test_every_case_imports_validates_and_runs(case, form, store, collections) -> None:
    path = CASES / case / form
    result = import_file(path)
    compile_workflow(parse_spec(result.yaml, file=str(path)))  # the YAML as written validates
    spec = _scripted(result.spec)
    with scripted("bot") as bot:
        bot.default = _reply
        run = await arun(parse_spec(yaml.safe_dump(spec), file="imported.yaml"), INPUTS.get(case, "hello"),
                         store=store)
        for _ in range(10):
            if run.status != "waiting":
                break
            run = await aapprove(run.approval.id, by="test", store=store)
    expected = EXPECTED_FAILURES.get((case, form), EXPECTED_FAILURES.get(case))
    if expected is None:
        assert run.status == "succeeded", (run.status, run.error)
    else:
        assert run.status == "failed" and expected in str(run.error), (run.status, run.error)


@needs_cases
@pytest.mark.parametrize("case", _cases("expected_output.py"))
def test_exported_code_gives_the_same_workflow_as_the_json(case) -> None:
    from_json = import_file(CASES / case / "input.json")
    from_code = import_file(CASES / case / "expected_output.py")
    assert canonical(from_code.spec) == canonical(from_json.spec)
    assert not [d for d in from_code.report.decisions if d.kind == "not_recognised"]


@needs_cases
def test_every_pair_is_equivalent_45_of_45() -> None:
    pairs = _cases("expected_output.py")
    assert len(pairs) == 45
    same = [c for c in pairs if canonical(import_file(CASES / c / "expected_output.py").spec)
            == canonical(import_file(CASES / c / "input.json").spec)]
    assert same == pairs


@needs_cases
@pytest.mark.parametrize("case", ERROR_CASES)
def test_invalid_expressions_name_the_node_and_the_expression(case) -> None:
    with pytest.raises(NotImportable) as e:
        import_file(CASES / case / "input.json")
    data = json.loads((CASES / case / "input.json").read_text())
    bad = next(n for n in data["nodes"] if n["node_type"] in ("builtins.IfElse", "builtins.While"))
    assert bad["id"] in e.value.message and repr(bad["label"]) in e.value.message
    assert "is not valid CEL" in e.value.message and "in ''" in e.value.message


@needs_cases
def test_json_import_keeps_positions_messages_schemas_and_marks_placeholders() -> None:
    r = import_file(CASES / "core_nodes--agent--agent_with_tools--function_tool_with_multi_instructions" / "input.json")
    agent = next(n for n in r.spec["nodes"] if n["type"] == "agent")
    assert agent["instructions"] == "this is default instruction"
    assert [m["role"] for m in agent["messages"]] == ["user", "assistant", "user"]
    assert "position" not in agent and isinstance(r.spec["layout"]["nodes"][agent["id"]]["x"], float)
    assert set(r.spec["layout"]["nodes"]) <= {n["id"] for n in r.spec["nodes"]}
    assert parse_spec(r.yaml).spec.layout.nodes[agent["id"]].x == r.spec["layout"]["nodes"][agent["id"]]["x"]
    note = next(n for n in r.spec["nodes"] if n["type"] == "note")
    assert note["text"].startswith("PLACEHOLDER") and "get_weather(location: string, unit: string)" in note["text"]
    assert any(d.kind == "placeholder" and "get_weather" in d.what for d in r.report.decisions)
    fs = import_file(CASES / "tool_nodes--file_search--file_search_with_quotes" / "input.json")
    node = next(n for n in fs.spec["nodes"] if n["type"] == "file_search")
    assert node["collection"] == "vs_123" and node["query"] == '"search query \\"with\\" quotes"'
    assert any(d.fix and d.fix.startswith("keel context add vs_123") for d in fs.report.placeholders())


@needs_cases
def test_settings_keel_cannot_express_are_reported_not_dropped_silently() -> None:
    doc = json.loads((CASES / "core_nodes--agent--basic_agent--default_instructions" / "input.json").read_text())
    agent = next(n for n in doc["nodes"] if n["node_type"] == "builtins.Agent")
    agent["config"].setdefault("model_settings", {})["top_p"] = 0.3
    r = import_text(json.dumps(doc), source="wf.json")
    assert any(d.kind == "dropped" and "top_p 0.3" in d.what for d in r.report.decisions)


async def test_agent_messages_reach_the_model_after_the_input(spec_file, store) -> None:
    path = spec_file("""
        name: msgs
        nodes:
          - {id: start, type: start}
          - id: a
            type: agent
            model: scripted:bot
            messages: [{role: user, content: first}, {role: assistant, content: second}]
          - {id: end, type: end}
        edges: [{from: start, to: a}, {from: a, to: end}]
    """)
    with scripted("bot") as bot:
        bot.reply("done")
        result = await arun(path, "question", store=store)
    assert result.status == "succeeded"
    assert [(m.role, m.content) for m in bot.calls[0].messages] == [
        ("user", "question"), ("user", "first"), ("assistant", "second")]


async def test_agent_builder_workflow_names_work_at_run_time(spec_file, store) -> None:
    path = spec_file("""
        name: ab-names
        nodes:
          - id: start
            type: start
            input_schema: {type: object, properties: {city: {type: string}}, required: [city]}
          - {id: t, type: transform, expression: "workflow.input_as_text + ' / ' + workflow.city"}
          - {id: end, type: end}
        edges: [{from: start, to: t}, {from: t, to: end}]
    """)
    result = await arun(path, {"city": "Oslo"}, store=store)
    assert result.status == "succeeded" and result.output == '{"city": "Oslo"} / Oslo'
    text = spec_file("""
        name: ab-text
        nodes:
          - {id: start, type: start}
          - {id: t, type: transform, expression: "'Hello, ' + workflow.input_as_text"}
          - {id: end, type: end}
        edges: [{from: start, to: t}, {from: t, to: end}]
    """, "text.yaml")
    result = await arun(text, "Ada", store=store)
    assert result.status == "succeeded" and result.output == "Hello, Ada"


def test_unknown_workflow_field_is_a_validation_problem(spec_file) -> None:
    from keel.workflows import SpecError
    from keel.workflows import validate as check

    path = spec_file("""
        name: ab-bad
        nodes:
          - {id: start, type: start, input_schema: {type: object, properties: {city: {type: string}}}}
          - {id: t, type: transform, expression: "workflow.country"}
          - {id: end, type: end}
        edges: [{from: start, to: t}, {from: t, to: end}]
    """)
    with pytest.raises(SpecError) as e:
        check(path)
    assert "unknown variable workflow.country" in str(e.value.problems[0])
    assert "city" in e.value.problems[0].hint


TS_EXPORT = (HERE / "agent_builder_export.ts").read_text() if (HERE / "agent_builder_export.ts").exists() else ""


@pytest.mark.skipif(not TS_EXPORT, reason="no TypeScript export fixture")
async def test_typescript_export_imports_and_runs(store) -> None:
    r = import_text(TS_EXPORT, source="export.ts")
    kinds = [n["type"] for n in r.spec["nodes"]]
    assert kinds.count("agent") == 2 and "if_else" in kinds and "human_approval" in kinds
    classify = next(n for n in r.spec["nodes"] if n["type"] == "agent" and "output_schema" in n)
    assert classify["output_schema"]["properties"]["kind"] == {"type": "string", "enum": ["refund", "other"]}
    route = next(n for n in r.spec["nodes"] if n["type"] == "if_else")
    assert route["branches"][0]["condition"] == 'input.output_parsed.kind == "refund"'
    spec = _scripted(r.spec)
    with scripted("bot") as bot:
        bot.reply(parsed={"kind": "refund", "order_id": 7})
        bot.reply("refunded")
        run = await arun(parse_spec(yaml.safe_dump(spec), file="ts.yaml"), "refund order 7", store=store)
        assert run.status == "waiting", run.error
        assert run.approval.message == "Refund this order?"
        run = await aapprove(run.approval.id, by="test", store=store)
    assert run.status == "succeeded" and run.output == "refunded"


# -- the CLI on bad input: one error line, an exit code, nothing written ------------------------


def _keel(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEEL_HOME": str(cwd / "home")}
    return subprocess.run([sys.executable, "-m", "keel", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


BAD_INPUTS = {
    "not_a_workflow.json": ('{"object": "eval", "id": "eval_1"}', "is not an Agent Builder workflow"),
    "plain.py": ("print('hello')\n", "not an Agent Builder workflow or Agents SDK export"),
    "no_run_workflow.py": ("from agents import Agent\nagent = Agent(name='a')\n", "without `async def run_workflow"),
    "truncated.json": ('{"object": "workflow", "nodes": [{"id": "n1", "node_ty', "not valid JSON"),
    "not_an_export.ts": ('import { Agent } from "@openai/agents";\nconsole.log(new Agent({name: "a"}));\n',
                         "TypeScript without `export const runWorkflow"),
    "truncated.py": ("from agents import Agent\nasync def run_workflow(workflow_input):\n  state = {\n",
                     "not valid Python"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_cli_bad_input_is_one_error_line_and_nothing_written(tmp_path, name) -> None:
    text, expected = BAD_INPUTS[name]
    (tmp_path / name).write_text(text)
    r = _keel("workflows", "import", name, "-o", "out.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], r.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_cli_refuses_a_50_mb_file(tmp_path) -> None:
    with (tmp_path / "big.json").open("w") as f:
        f.write('{"object": "workflow", "pad": "')
        f.write("x" * 50_000_000)
        f.write('"}')
    r = _keel("workflows", "import", "big.json", "-o", "out.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "too large" in r.stderr and not (tmp_path / "out.yaml").exists()


@needs_cases
def test_cli_imports_writes_yaml_that_validates_and_publishes(tmp_path) -> None:
    case = CASES / "logic_nodes--complex_workflow--user_approval_agent_if_else_guardrails"
    r = _keel("workflows", "import", str(case / "input.json"), str(case / "expected_output.py"), "-o", "out",
              "--report", "report.json", "--publish", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    written = sorted((tmp_path / "out").glob("*.yaml"))
    assert len(written) == 2
    report = json.loads((tmp_path / "report.json").read_text())
    assert [x["form"] for x in report] == ["agent_builder_json", "agents_sdk_python"]
    assert any(d["kind"] == "placeholder" for d in report[0]["decisions"])
    v = _keel("workflows", "validate", *map(str, written), cwd=tmp_path)
    assert v.returncode == 0 and v.stdout.count(": ok") == 2, v.stderr
    assert "published tdd version 1" in r.stderr


@needs_cases
def test_cli_expression_error_names_node_and_writes_nothing(tmp_path) -> None:
    case = CASES / "logic_nodes--while_loop--empty_while_loop" / "input.json"
    r = _keel("workflows", "import", str(case), "-o", "out.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "While node 'While' (node_2b1rv9eb)" in r.stderr and not (tmp_path / "out.yaml").exists()
