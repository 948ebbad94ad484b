"""Read the Agents SDK TypeScript code (``@openai/agents``) Agent Builder's Code export produced.

No TypeScript parser: the export has the same fixed shape as the Python one, so this module
rewrites it into that shape and lets :mod:`.agents_sdk_python` read it (with :mod:`ast`, never
executing anything). Zod schemas (``z.object``, ``z.string``, ``z.number``, ``z.boolean``,
``z.array``, ``z.enum``) become pydantic-style classes; ``new Agent({...})`` becomes
``Agent(...)``; the ``runWorkflow`` body's blocks (``if`` / ``else if`` / ``else``, ``while``)
become indented Python; camelCase names become snake_case (``classifyResultTemp`` ->
``classify_result_temp``); ``===``, ``&&``, ``||``, ``!``, ``??``, ``?.``, ``a ? b : c`` become Python's
(:mod:`.typescript_syntax`); ``try`` / ``catch`` (a Guardrails node that continues on error)
becomes ``try`` / ``except``. Guardrails configs, hosted tools, File search and MCP steps are
rewritten by :mod:`.typescript_steps`.
"""

from __future__ import annotations

import json
import re

from keel.workflows.importers.errors import NotImportable
from keel.workflows.importers.ir import AbGraph
from keel.workflows.importers.report import Report
from keel.workflows.importers.typescript_steps import definitions, step
from keel.workflows.importers.typescript_syntax import balance as _balance
from keel.workflows.importers.typescript_syntax import fields as _fields
from keel.workflows.importers.typescript_syntax import join_template_lines
from keel.workflows.importers.typescript_syntax import js_to_py as _js_to_py
from keel.workflows.importers.typescript_syntax import snake as _snake

__all__ = ["read_typescript", "to_python"]

_SCHEMA_RE = re.compile(r"^const (\w+) = (z\.object\(.*\));\s*$", re.M)
_AGENT_RE = re.compile(r"^const (\w+) = new Agent\((\{.*?\n\})\);", re.M | re.S)
_HEADER_RE = re.compile(r"(\}\s*else\s+)?(if|while)\s*\(.*\)\s*\{|(\}\s*else|try|\}\s*catch\s*(\(\s*\w*\s*\))?|"
                        r"\}\s*finally)\s*\{")


def _zod(expr: str, classes: list[str], name: str) -> str:
    """A Python annotation for a zod expression (nested objects become classes in ``classes``)."""
    expr = expr.strip()
    for suffix in (".optional()", ".nullable()"):
        if expr.endswith(suffix):
            return f"{_zod(expr[: -len(suffix)], classes, name)} | None"
    simple = {"z.string()": "str", "z.number()": "float", "z.boolean()": "bool", "z.number().int()": "int"}
    if expr in simple:
        return simple[expr]
    if expr.startswith("z.enum("):
        values = json.loads(expr[len("z.enum("):-1])
        return "Literal[" + ", ".join(json.dumps(v) for v in values) + "]"
    if expr.startswith("z.array("):
        return f"list[{_zod(expr[len('z.array('):-1], classes, name)}]"
    if expr.startswith("z.object("):
        body = expr[len("z.object("):-1].strip()[1:-1]
        fields = []
        for key, value in _fields(body):
            fields.append(f"  {key}: {_zod(value, classes, f'{name}__{key.capitalize()}')}")
        classes.append(f"class {name}(BaseModel):\n" + ("\n".join(fields) or "  pass") + "\n")
        return name
    if re.fullmatch(r"\w+", expr):
        return expr
    raise NotImportable(f"zod schema {expr[:60]!r} is not one the export writes",
                        hint="expected z.object / z.string / z.number / z.boolean / z.array / z.enum")


def _agent(var: str, literal: str, schemas: set[str]) -> str:
    args = []
    for key, value in _fields(literal.strip()[1:-1]):
        if key == "outputType":
            args.append(f"output_type={value}")
        elif key == "modelSettings":
            settings = dict(_fields(value.strip()[1:-1]))
            parts = [f"{_snake(k)}={_js_to_py(v)}" for k, v in settings.items() if k in ("temperature", "maxTokens",
                                                                                        "topP")]
            if "reasoning" in settings:
                effort = dict(_fields(settings["reasoning"].strip()[1:-1])).get("effort")
                parts.append(f"reasoning=Reasoning(effort={effort})")
            args.append(f"model_settings=ModelSettings({', '.join(parts)})")
        elif key == "instructions" and "=>" in value:  # a function of the run context: reported, not read
            args.append("instructions=instructions_function()")
        elif key in ("name", "instructions", "model", "tools", "handoffs"):  # asTool, handoffs: .sub_agents
            args.append(f"{key}={_js_to_py(value)}")
        elif key == "handoffDescription":
            args.append(f"handoff_description={_js_to_py(value)}")
    return f"{_snake(var)} = Agent({', '.join(args)})\n"


def _statements(lines: list[str]) -> list[str]:
    """Lines joined into statements: a line that opens brackets continues until they close;
    block headers (``if (...) {``, ``} else {``) and closing ``}`` stand alone."""
    out: list[str] = []
    cur, bal = "", 0
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if bal == 0 and (_HEADER_RE.fullmatch(line) or line in ("}", "};", "});")):
            out.append(line)
            continue
        cur = f"{cur} {line}" if cur else line
        bal += _balance(line)
        if bal <= 0:
            out.append(cur)
            cur, bal = "", 0
    if cur:
        out.append(cur)
    return out


def _body(lines: list[str]) -> list[str]:
    """The statements of runWorkflow's body as indented Python lines."""
    out: list[str] = []
    depth = 1
    skip_until: int | None = None
    for line in _statements(lines):
        if skip_until is not None:
            depth += _balance(line) if line.endswith("{") or line.startswith("}") else 0
            if depth <= skip_until:
                skip_until = None
            continue
        ind = "  " * depth
        m = re.fullmatch(r"(\}\s*else\s+)?(if|while)\s*\((.*)\)\s*\{", line)
        if m and re.fullmatch(r"!\s*\w+\.finalOutput", m.group(3).strip()):
            skip_until = depth
            depth += 1
            continue
        if m:
            if m.group(1):
                depth -= 1
                ind = "  " * depth
            keyword = "elif" if m.group(1) and m.group(2) == "if" else m.group(2)
            out.append(f"{ind}{keyword} {_js_to_py(m.group(3))}:")
            depth += 1
            continue
        if re.fullmatch(r"\}\s*else\s*\{", line):
            out.append("  " * (depth - 1) + "else:")
            continue
        if line.startswith("try"):
            out.append(f"{ind}try:")
            depth += 1
            continue
        m = re.fullmatch(r"\}\s*(catch|finally)\s*(\(\s*(\w*)\s*\))?\s*\{", line)
        if m:
            name = f" as {_snake(m.group(3))}" if m.group(3) else ""
            out.append("  " * (depth - 1) + ("finally:" if m.group(1) == "finally" else f"except Exception{name}:"))
            continue
        if line in ("}", "};", "});"):
            depth -= 1
            continue
        if line.startswith(("conversationHistory.push", "throw ", "const runner = ", "const conversationHistory")):
            continue
        stmt = re.sub(r"^(const|let|var)\s+", "", line.rstrip(";"))
        stmt = re.sub(r"^state\.(\w+)\s*=", r'state["\1"] =', stmt)
        stmt = re.sub(r"runner\.run\(\s*(\w+)\s*,", r"Runner.run(\1, input=", stmt)
        out.append(ind + (step(stmt) or _js_to_py(stmt)))
    return out


def to_python(text: str, source: str) -> str:
    """The export rewritten in the Python export's shape."""
    start = re.search(r"export\s+const\s+runWorkflow\s*=\s*async\s*\(\s*(\w+)[^)]*\)\s*=>\s*\{", text)
    if start is None or ("new Agent(" not in text and "runner.run(" not in text and "withTrace" not in text):
        raise NotImportable(f"{source}: TypeScript without `export const runWorkflow = async (...) => {{`: not an "
                            "Agent Builder export", hint="expected the @openai/agents code Agent Builder's Code "
                            "export produced")
    text = join_template_lines(text)
    start = re.search(r"export\s+const\s+runWorkflow\s*=\s*async\s*\(\s*(\w+)[^)]*\)\s*=>\s*\{", text)
    assert start is not None
    classes: list[str] = []
    for name, expr in _SCHEMA_RE.findall(text[: start.start()]):
        _zod(expr, classes, name)
    tools = "".join(line + "\n" for line in definitions(text[: start.start()]))
    agents = "".join(_agent(v, lit, set()) for v, lit in _AGENT_RE.findall(text[: start.start()]))
    lines = text[start.end():].splitlines()
    trace = next((i for i, ln in enumerate(lines) if "withTrace(" in ln), None)
    body = _body(lines[trace + 1:] if trace is not None else lines)
    head = ("from typing import Literal\nfrom pydantic import BaseModel\n"
            "from agents import Agent, ModelSettings, Runner\n\n")
    return (head + "\n".join(classes) + "\n" + tools + agents + "\n\nasync def run_workflow(workflow_input):\n"
            "  workflow = workflow_input.model_dump()\n" + "\n".join(body) + "\n")


def read_typescript(text: str, source: str, report: Report) -> AbGraph:
    from keel.workflows.importers.agents_sdk_python import read_python

    graph = read_python(to_python(text, source), source, report)
    if graph.name == re.split(r"[\\/]", source)[-1].rsplit(".", 1)[0]:
        m = re.search(r'withTrace\(\s*"([^"]+)"', text)
        graph.name = m.group(1) if m else graph.name
    return graph
