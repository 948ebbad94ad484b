"""Read the Agents SDK Python code Agent Builder's Code export produced, with :mod:`ast`.

The code is parsed, never executed. The export has a fixed shape: module-level ``Agent(...)``
definitions (with pydantic ``output_type`` models, ``ModelSettings``, tools) and guardrail
configs, then ``async def run_workflow(workflow_input)``, whose body is the graph written as
nested code: ``Runner.run`` calls (Agent), ``if approval_request(...)`` (approval), ``if`` /
``elif`` / ``else`` (If/else), ``while`` (While), ``run_guardrails`` and ``if
guardrails_hastripwire`` (Guardrails; a ``try`` around it is ``continue_on_error``),
``client.vector_stores.search`` (File search), an MCP client's ``call_tool`` (MCP),
``transform_result = ...`` (Transform), ``state[...] = ...`` (Set state) and ``return`` (End).

The export writes empty branches as a bare ``if ...:`` with no body, which is not valid Python:
such blocks get a ``pass`` before parsing. A statement of another shape (code edited by hand) is
reported as not recognised and skipped; nothing is guessed.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from keel.workflows.importers import sub_agents
from keel.workflows.importers.errors import NotImportable
from keel.workflows.importers.ir import MISSING, AbEdge, AbGraph, AbNode
from keel.workflows.importers.python_cel import Unrecognised, python_to_cel
from keel.workflows.importers.python_cel import call_name as _call_name
from keel.workflows.importers.python_cel import const as _const
from keel.workflows.importers.python_cel import kw as _kw
from keel.workflows.importers.python_steps import ToolSteps
from keel.workflows.importers.report import Report

__all__ = ["python_to_cel", "read_python"]

_BLOCK_RE = re.compile(r"^(\s*)(if|elif|else|while|for|try|except|finally|with|def|async def|class)\b.*:\s*(#.*)?$")
_HEADER_RE = re.compile(r"^(\s*)(if|elif|else|while|try|except|finally)\b.*:\s*$")
_PY_TYPES = {"str": "string", "float": "number", "int": "integer", "bool": "boolean"}
_HOSTED_TOOLS = {"WebSearchTool": "web_search", "CodeInterpreterTool": "code_interpreter",
                 "ImageGenerationTool": "image_generation", "ComputerTool": "computer_use",
                 "FileSearchTool": "file_search", "HostedMCPTool": "mcp"}


def _fill_empty_blocks(text: str) -> str:
    """Give every block header whose body is empty a ``pass`` (the export omits it)."""
    lines = text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        out.append(line)
        m = _HEADER_RE.match(line)
        if not m:
            continue
        indent = len(m.group(1))
        nxt = next((ln for ln in lines[i + 1:] if ln.strip()), None)
        if nxt is None or len(nxt) - len(nxt.lstrip()) <= indent:
            out.append(" " * (indent + 2) + "pass")
    return "\n".join(out) + "\n"


class _Reader(ToolSteps):
    def __init__(self, tree: ast.Module, source: str, report: Report) -> None:
        self.source = source
        self.report = report
        self.g = AbGraph(name=re.split(r"[\\/]", source)[-1].rsplit(".", 1)[0] or "imported")
        self.schemas: dict[str, dict[str, Any]] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self.tools: dict[str, dict[str, Any]] = {}
        self.guardrail_configs: dict[str, list[dict[str, Any]]] = {}
        self.input_fields: dict[str, Any] | None = None
        self.count = 0
        self.results: dict[str, str] = {}
        """Python variable holding a node's output -> that node's id."""
        self.prev: str | None = None
        self.on_graph: dict[str, str] = {}
        """Agent variable -> the node its first ``Runner.run`` became (handoffs to it go there)."""
        self.module(tree)

    # -- module level ------------------------------------------------------------------

    def module(self, tree: ast.Module) -> None:
        run = None
        for stmt in tree.body:
            if isinstance(stmt, ast.ClassDef):
                schema = self.model_schema(stmt)
                if stmt.name == "WorkflowInput":
                    self.input_fields = schema
                else:
                    self.schemas[stmt.name] = schema
            elif isinstance(stmt, ast.FunctionDef) and any(
                    (isinstance(d, ast.Name) and d.id == "function_tool") or
                    (isinstance(d, ast.Call) and _call_name(d) == "function_tool") for d in stmt.decorator_list):
                params = {a.arg: {"type": _PY_TYPES.get(ast.unparse(a.annotation), "string")
                                  if a.annotation is not None else "string"} for a in stmt.args.args}
                self.tools[stmt.name] = {"type": "function", "name": stmt.name,
                                         "parameters": {"type": "object", "properties": params}}
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                name, value = stmt.targets[0].id, stmt.value
                cname = _call_name(value)
                if cname == "Agent":
                    self.agents[name] = self.agent(value)  # type: ignore[arg-type]
                elif cname in _HOSTED_TOOLS:
                    self.tools[name] = self.hosted_tool(cname, value)  # type: ignore[arg-type]
                elif re.fullmatch(r"guardrails\d*_config\d*", name) and isinstance(value, ast.Dict):
                    self.guardrail_configs[name] = [
                        {"type": str(g.get("name", "")).lower().replace(" ", "_"), "name": g.get("name"),
                         "config": g.get("config") or {}} for g in (_const(value, {}) or {}).get("guardrails", [])]
            elif isinstance(stmt, ast.AsyncFunctionDef | ast.FunctionDef) and stmt.name == "run_workflow":
                run = stmt
        if run is None:
            raise NotImportable(f"{self.source}: Python code without `async def run_workflow(...)`: not an Agent "
                                "Builder export", hint="expected the Agents SDK code Agent Builder's Code export "
                                "produced (it defines run_workflow(workflow_input))")
        start = self.add("Start", "Start", {})
        self.g.start = start
        self.prev = start
        if self.input_fields and set(self.input_fields.get("properties", {})) != {"input_as_text"}:
            self.g.input_schema = self.input_fields
        self.block(run.body, [(start, "out")], parent=None)
        sub_agents.attach(self.g, self.agents, self.add, self.report, on_graph=self.on_graph)

    def model_schema(self, cls: ast.ClassDef) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                props[stmt.target.id] = self.type_schema(stmt.annotation)
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    def type_schema(self, ann: ast.expr) -> dict[str, Any]:
        text = ast.unparse(ann)
        if text in _PY_TYPES:
            return {"type": _PY_TYPES[text]}
        if text in self.schemas:
            return self.schemas[text]
        if isinstance(ann, ast.Subscript) and ast.unparse(ann.value) in ("list", "List"):
            return {"type": "array", "items": self.type_schema(ann.slice)}
        if isinstance(ann, ast.Subscript) and ast.unparse(ann.value) == "Literal":
            values = _const(ann.slice, ())
            values = list(values) if isinstance(values, tuple) else [values]
            return {"type": "string", "enum": values}
        if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr) and ast.unparse(ann.right) == "None":
            inner = dict(self.type_schema(ann.left))
            inner["type"] = [inner.get("type", "string"), "null"]
            return inner
        self.report.add("not_recognised", None, f"type annotation {text!r}: read as a string")
        return {"type": "string"}

    def hosted_tool(self, cname: str, call: ast.Call) -> dict[str, Any]:
        tool: dict[str, Any] = {"type": _HOSTED_TOOLS[cname]}
        if cname == "FileSearchTool":
            tool["vector_store_ids"] = _const(_kw(call, "vector_store_ids"), [])
        if cname == "HostedMCPTool":
            cfg = _const(_kw(call, "tool_config"), {}) or {}
            tool.update({k: cfg[k] for k in ("server_label", "server_url") if k in cfg})
        return tool

    def agent(self, call: ast.Call) -> dict[str, Any]:
        config: dict[str, Any] = {"label": _const(_kw(call, "name"), "Agent")}
        instr = _kw(call, "instructions")
        if instr is not None:
            text = _const(instr)
            if isinstance(text, str):
                config["instructions"] = {"expression": json.dumps(text, ensure_ascii=False), "format": "cel"}
            else:
                self.report.add("not_recognised", None, f"instructions {ast.unparse(instr)[:60]!r} of agent "
                                f"{config['label']!r} are computed: not carried over", "write them in the spec")
        model = _const(_kw(call, "model"))
        if isinstance(model, str):
            config["model"] = {"expression": json.dumps(model), "format": "cel"}
        out = _kw(call, "output_type")
        if isinstance(out, ast.Name) and out.id in self.schemas:
            config["text"] = {"format": {"type": "json_schema", "name": out.id, "schema": self.schemas[out.id]}}
        tools = _kw(call, "tools")
        config["tools"] = []
        for t in tools.elts if isinstance(tools, ast.List) else []:
            ref = sub_agents.as_tool(t)
            if ref is not None:  # another agent as a tool (agents as tools)
                config.setdefault("agent_tool_refs", []).append(ref)
            elif isinstance(t, ast.Name) and t.id in self.tools:
                config["tools"].append(self.tools[t.id])
            elif isinstance(t, ast.Call) and _call_name(t) in _HOSTED_TOOLS:
                config["tools"].append(self.hosted_tool(_call_name(t), t))  # type: ignore[arg-type]
            else:
                self.report.add("not_recognised", None, f"tool {ast.unparse(t)[:60]!r} of agent {config['label']!r}")
        handoff_refs = sub_agents.handoffs(call, config["label"], self.report)
        if handoff_refs:
            config["handoff_refs"] = handoff_refs
        description = _const(_kw(call, "handoff_description"))
        if isinstance(description, str):
            config["description"] = description
        settings = _kw(call, "model_settings")
        if isinstance(settings, ast.Call):
            for key in ("temperature", "max_tokens", "top_p", "parallel_tool_calls"):
                value = _const(_kw(settings, key))
                if value is not None:
                    config[key] = value
            reasoning = _kw(settings, "reasoning")
            if isinstance(reasoning, ast.Call):
                config["reasoning"] = {"effort": _const(_kw(reasoning, "effort"))}
        return config

    # -- run_workflow ---------------------------------------------------------------------

    def add(self, type_: str, label: str | None, config: dict[str, Any], parent: str | None = None) -> str:
        self.count += 1
        node_id = f"n{self.count}"
        self.g.nodes.append(AbNode(node_id, type_, label, config, parent=parent))
        return node_id

    def connect(self, pending: list[tuple[str, str]], target: str) -> None:
        for src, port in pending:
            self.g.edges.append(AbEdge(src, port, target))

    def names(self) -> dict[str, str]:
        return {var: ("input" if node == self.prev else f"nodes.{node}") for var, node in self.results.items()}

    def cel(self, node: ast.expr, what: str) -> str:
        try:
            return python_to_cel(node, self.names())
        except Unrecognised:
            self.report.add("not_recognised", None, f"line {node.lineno}: {what} `{ast.unparse(node)[:80]}` is not "
                            "an expression the export writes: replaced by null", "write it in CEL in the spec")
            return "null"

    def unknown(self, stmt: ast.stmt) -> None:
        self.report.add("not_recognised", None, f"line {stmt.lineno}: `{ast.unparse(stmt).splitlines()[0][:80]}` "
                        "is not of the export's shape: skipped", "add what it does to the spec by hand")

    def block(self, stmts: list[ast.stmt], pending: list[tuple[str, str]], parent: str | None
              ) -> list[tuple[str, str]]:
        """Read ``stmts``; ``pending`` are the exits that flow into them. Returns the exits that
        flow out of the block's end (fall-through)."""
        i = 0
        approval_message: str | None = None
        while i < len(stmts):
            s = stmts[i]
            i += 1
            target = s.targets[0] if isinstance(s, ast.Assign) and len(s.targets) == 1 else None
            tname = target.id if isinstance(target, ast.Name) else None
            if isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)):
                continue
            if isinstance(s, ast.AnnAssign) or tname in ("workflow",):
                continue
            if tname == "state" and isinstance(s.value, ast.Dict):  # type: ignore[union-attr]
                for k, v in zip(s.value.keys, s.value.values, strict=True):  # type: ignore[union-attr]
                    if isinstance(k, ast.Constant):
                        value = _const(v, MISSING)
                        self.g.state[str(k.value)] = MISSING if value is None else value
                continue
            if tname and re.fullmatch(r"approval_message\d*", tname):
                approval_message = _const(s.value, "")  # type: ignore[union-attr]
                continue
            if isinstance(s, ast.Expr) and _call_name(s.value) == "extend":
                continue
            if tname and self.results.get(tname) == self.prev and self.prev is not None:
                continue  # the `<agent>_result = {...}` dict that follows its Runner.run
            if tname and re.fullmatch(r"(agent|guardrails_errorresult)\d*_result\d*|guardrails_errorresult\d*", tname):
                continue
            if tname and _call_name(s.value) == "run" and "Runner" in ast.unparse(s.value):  # type: ignore[union-attr]
                pending = [(self.agent_step(s.value, tname, pending, parent), "on_result")]  # type: ignore[union-attr]
                continue
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) and target.value.id == "state":
                assignments = []
                j = i - 1
                while j < len(stmts) and isinstance(stmts[j], ast.Assign) and isinstance(
                        stmts[j].targets[0], ast.Subscript) and ast.unparse(stmts[j].targets[0].value) == "state":
                    st = stmts[j]
                    assignments.append({"name": _const(st.targets[0].slice, "?"),  # type: ignore[attr-defined]
                                        "expression": {"expression": self.cel(st.value, "state value"),
                                                       "format": "cel"}})
                    j += 1
                i = j
                node = self.add("SetState", "Set state", {"assignments": assignments}, parent)
                self.connect(pending, node)
                pending = [(node, "out")]
                continue
            if tname and re.fullmatch(r"transform\d*_result\d*", tname):
                node = self.add("Transform", "Transform", {"expr": {"expression": self.cel(s.value, "transform"),  # type: ignore[union-attr]
                                                                     "format": "cel"}}, parent)
                pending = self.step(node, tname, pending, "out")
                continue
            if tname and re.fullmatch(r"filesearch\d*_result\d*", tname):
                node = self.file_search(s.value, parent)  # type: ignore[union-attr]
                pending = self.step(node, tname, pending, "on_result")
                continue
            if tname and re.fullmatch(r"guardrails_inputtext\d*", tname):
                node, pending, i = self.guardrails(stmts, i - 1, pending, parent)
                continue
            if isinstance(s, ast.Try) and s.body and isinstance(s.body[0], ast.Assign) and re.fullmatch(
                    r"guardrails_inputtext\d*", ast.unparse(s.body[0].targets[0])):
                node, inner, _ = self.guardrails(s.body, 0, pending, parent)
                self.g.node(node).config["continue_on_error"] = True
                handler = s.handlers[0].body if s.handlers else []
                pending = inner + self.block(handler, [(node, "on_error")], parent)
                continue
            if tname and re.fullmatch(r"mcp\d*_transport\d*", tname):
                node, i = self.mcp(stmts, i - 1, parent)
                pending = self.step(node, tname.replace("transport", "result"), pending, "out")
                continue
            if tname in ("mcp_client",) or (isinstance(s, ast.Expr) and "mcp_client" in ast.unparse(s)):
                continue
            if isinstance(s, ast.If) and re.fullmatch(r"approval_request\d*", _call_name(s.test) or ""):
                label = "User approval"
                node = self.add("BinaryApproval", label, {"message": approval_message or ""}, parent)
                self.connect(pending, node)
                saved = self.prev
                self.prev = node
                yes = self.block(s.body, [(node, "on_approve")], parent)
                self.prev = node
                no = self.block(s.orelse, [(node, "on_reject")], parent)
                self.prev = saved
                pending = yes + no
                continue
            if isinstance(s, ast.If):
                pending = self.if_else(s, pending, parent)
                continue
            if isinstance(s, ast.While):
                node = self.add("While", "While", {"condition": {"expression": self.cel(s.test, "while condition"),
                                                                 "format": "cel"}}, parent)
                self.connect(pending, node)
                saved = self.prev
                self.prev = node
                self.block(s.body, [(node, "body")], parent=node)
                self.prev = saved
                pending = [(node, "out")]
                continue
            if isinstance(s, ast.Return):
                node = self.add("End", "End", {}, parent)
                if isinstance(s.value, ast.Dict):
                    node_cfg = self.g.node(node).config
                    node_cfg["expr"] = {"expression": self.cel(s.value, "returned value"), "format": "cel"}
                self.connect(pending, node)
                return []
            self.unknown(s)
        return pending

    def step(self, node: str, var: str, pending: list[tuple[str, str]], port: str) -> list[tuple[str, str]]:
        self.connect(pending, node)
        self.results[var] = node
        self.prev = node
        return [(node, port)]

    def agent_step(self, value: ast.expr, var: str, pending: list[tuple[str, str]], parent: str | None) -> str:
        call = value.value if isinstance(value, ast.Await) else value
        agent_var = call.args[0] if call.args else _kw(call, "starting_agent")  # type: ignore[attr-defined]
        name = agent_var.id if isinstance(agent_var, ast.Name) else None
        if name not in self.agents:
            raise NotImportable(f"{self.source}: line {value.lineno}: Runner.run of {ast.unparse(agent_var)!r}, "
                                "which is no Agent(...) defined at module level",
                                hint="the export defines each agent as `name = Agent(...)` before run_workflow")
        config = {k: v for k, v in self.agents[name].items() if k != "label"}  # type: ignore[index]
        config = json.loads(json.dumps(config))
        items = _kw(call, "input")  # type: ignore[arg-type]
        messages, history = [], False
        for item in items.elts if isinstance(items, ast.List) else []:
            if isinstance(item, ast.Starred):
                history = True
                continue
            m = _const(item)
            if isinstance(m, dict):
                messages.append({"role": m.get("role"), "content": m.get("content")})
        config["messages"] = messages
        config["reads_from_history"] = history
        node = self.add("Agent", self.agents[name]["label"], config, parent)  # type: ignore[index]
        self.on_graph.setdefault(name, node)  # type: ignore[arg-type]
        base = re.sub(r"_temp(\d*)$", r"\1", var)
        self.connect(pending, node)
        self.results[var] = node
        self.results[base] = node
        self.prev = node
        return node

    def if_else(self, s: ast.If, pending: list[tuple[str, str]], parent: str | None) -> list[tuple[str, str]]:
        cases, bodies = [], []
        cur: ast.stmt = s
        while True:
            assert isinstance(cur, ast.If)
            k = len(cases)
            cases.append({"label": f"case-{k}", "output_port_id": f"case-{k}",
                          "predicate": {"expression": self.cel(cur.test, "condition"), "format": "cel"}})
            bodies.append(cur.body)
            if len(cur.orelse) == 1 and isinstance(cur.orelse[0], ast.If):
                cur = cur.orelse[0]
                continue
            fallback = cur.orelse
            break
        node = self.add("IfElse", "If / else", {"cases": cases, "fallback": {"output_port_id": "fallback"}}, parent)
        self.connect(pending, node)
        saved = self.prev
        out: list[tuple[str, str]] = []
        for k, body in enumerate(bodies):
            self.prev = saved
            out += self.block(body, [(node, f"case-{k}")], parent)
        self.prev = saved
        out += self.block(fallback, [(node, "fallback")], parent)
        self.prev = saved
        return out


def read_python(text: str, source: str, report: Report) -> AbGraph:
    """The graph of an exported ``run_workflow``; raises :class:`NotImportable` for other code."""
    try:
        tree = ast.parse(_fill_empty_blocks(text), filename=source)
    except SyntaxError as e:
        raise NotImportable(f"{source}:{e.lineno}: not valid Python ({e.msg}); the file may be truncated",
                            hint="expected the complete Python file Agent Builder's Code export produced") from None
    reader = _Reader(tree, source, report)
    return reader.g
