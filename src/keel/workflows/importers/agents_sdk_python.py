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

from keel.workflows.importers.errors import NotImportable
from keel.workflows.importers.ir import MISSING, AbEdge, AbGraph, AbNode
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


class _Unrecognised(Exception):
    pass


_PREC = {"?": 0, "||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "in": 3,
         "+": 4, "-": 4, "*": 5, "/": 5, "%": 5}
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.In: "in"}
_BIN = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}
_METHODS = {"lower": "lowerAscii", "upper": "upperAscii", "startswith": "startsWith", "endswith": "endsWith",
            "strip": "trim"}
_FUNCS = {"len": "size", "str": "string", "int": "int", "float": "double", "bool": "bool"}


def python_to_cel(node: ast.expr, names: dict[str, str]) -> str:
    """A Python expression of the export as CEL. ``names`` maps result variables to the CEL that
    reads that node's output (``input`` or ``nodes.<id>``); ``workflow`` and ``state`` map to
    themselves. Raises ``_Unrecognised`` for anything else."""
    return _cel(node, names)[0]


def _wrap(text: str, prec: int, need: int) -> str:
    return f"({text})" if prec < need else text


def _cel(node: ast.expr, names: dict[str, str]) -> tuple[str, int]:
    top = 9
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            return ("true" if v else "false"), top
        if v is None:
            return "null", top
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False), top
        if isinstance(v, int | float):
            return repr(v), top
        raise _Unrecognised(ast.unparse(node))
    if isinstance(node, ast.Name):
        if node.id in ("workflow", "state"):
            return node.id, top
        if node.id in names:
            return names[node.id], top
        raise _Unrecognised(node.id)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        base, _ = _cel(node.value, names)
        key = node.slice.value
        if isinstance(key, str) and re.fullmatch(r"[A-Za-z_]\w*", key):
            return f"{base}.{key}", top
        return f"{base}[{json.dumps(key)}]", top
    if isinstance(node, ast.Attribute):  # the TypeScript export reads fields as attributes
        return f"{_cel(node.value, names)[0]}.{node.attr}", top
    if isinstance(node, ast.BoolOp):
        op = "&&" if isinstance(node.op, ast.And) else "||"
        parts = [_wrap(*_cel(v, names), _PREC[op] + 1 if i else _PREC[op]) for i, v in enumerate(node.values)]
        return f" {op} ".join(parts), _PREC[op]
    if isinstance(node, ast.UnaryOp):
        text, prec = _cel(node.operand, names)
        if isinstance(node.op, ast.Not):
            return "!" + _wrap(text, prec, 8), 8
        if isinstance(node.op, ast.USub):
            return "-" + _wrap(text, prec, 8), 8
        raise _Unrecognised(ast.unparse(node))
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        op = node.ops[0]
        left, right = _cel(node.left, names), _cel(node.comparators[0], names)
        if isinstance(op, ast.NotIn):
            return f"!({_wrap(*left, 4)} in {_wrap(*right, 4)})", 8
        if type(op) not in _CMP:
            raise _Unrecognised(ast.unparse(node))
        sym = _CMP[type(op)]
        return f"{_wrap(*left, 4)} {sym} {_wrap(*right, 4)}", 3
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        sym = _BIN[type(node.op)]
        p = _PREC[sym]
        return f"{_wrap(*_cel(node.left, names), p)} {sym} {_wrap(*_cel(node.right, names), p + 1)}", p
    if isinstance(node, ast.IfExp):
        return (f"{_wrap(*_cel(node.test, names), 1)} ? {_wrap(*_cel(node.body, names), 1)} : "
                f"{_wrap(*_cel(node.orelse, names), 0)}"), 0
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _Unrecognised(ast.unparse(node))
        items = [f"{_cel(k, names)[0]}: {_cel(v, names)[0]}" for k, v in zip(node.keys, node.values, strict=True)]
        return "{" + ", ".join(items) + "}", top
    if isinstance(node, ast.List | ast.Tuple):
        return "[" + ", ".join(_cel(e, names)[0] for e in node.elts) + "]", top
    if isinstance(node, ast.Call) and not node.keywords:
        if isinstance(node.func, ast.Name) and node.func.id in _FUNCS and len(node.args) == 1:
            return f"{_FUNCS[node.func.id]}({_cel(node.args[0], names)[0]})", top
        if isinstance(node.func, ast.Attribute) and node.func.attr in _METHODS:
            target = _wrap(*_cel(node.func.value, names), 9)
            args = ", ".join(_cel(a, names)[0] for a in node.args)
            return f"{target}.{_METHODS[node.func.attr]}({args})", top
    raise _Unrecognised(ast.unparse(node))


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _const(node: ast.expr | None, default: Any = None) -> Any:
    if node is None:
        return default
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return default


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Await):
        node = node.value
    if not isinstance(node, ast.Call):
        return None
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return None


class _Reader:
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
                elif re.fullmatch(r"guardrails\d*_config", name) and isinstance(value, ast.Dict):
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
            if isinstance(t, ast.Name) and t.id in self.tools:
                config["tools"].append(self.tools[t.id])
            elif isinstance(t, ast.Call) and _call_name(t) in _HOSTED_TOOLS:
                config["tools"].append(self.hosted_tool(_call_name(t), t))  # type: ignore[arg-type]
            else:
                self.report.add("not_recognised", None, f"tool {ast.unparse(t)[:60]!r} of agent {config['label']!r}")
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
        except _Unrecognised:
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
        base = re.sub(r"_temp(\d*)$", r"\1", var)
        self.connect(pending, node)
        self.results[var] = node
        self.results[base] = node
        self.prev = node
        return node

    def file_search(self, value: ast.expr, parent: str | None) -> str:
        search = next((n for n in ast.walk(value) if isinstance(n, ast.Call) and _call_name(n) == "search"), None)
        config: dict[str, Any] = {"vector_store_id": "", "query": {"expression": "", "format": "cel"}}
        if search is not None:
            config["vector_store_id"] = _const(_kw(search, "vector_store_id"), "")
            query = _kw(search, "query")
            q = _const(query)
            if isinstance(q, str):
                config["query"] = {"expression": q, "format": "cel"}
            elif query is not None:
                config["query"] = {"expression": "{{ " + self.cel(query, "file search query") + " }}"}
            config["max_results"] = _const(_kw(search, "max_num_results"), 10)
        return self.add("FileSearch", "File search", config, parent)

    def guardrails(self, stmts: list[ast.stmt], i: int, pending: list[tuple[str, str]], parent: str | None
                   ) -> tuple[str, list[tuple[str, str]], int]:
        text = self.cel(stmts[i].value, "guardrails input")  # type: ignore[attr-defined]
        config: dict[str, Any] = {"expr": {"expression": text, "format": "cel"}, "guardrails": [],
                                  "continue_on_error": False}
        node = self.add("Guardrails", "Guardrails", config, parent)
        self.connect(pending, node)
        saved = self.prev
        i += 1
        result_var = None
        while i < len(stmts) and isinstance(stmts[i], ast.Assign):
            st = stmts[i]
            name = ast.unparse(st.targets[0])  # type: ignore[attr-defined]
            if not name.startswith("guardrails_"):
                break
            if re.fullmatch(r"guardrails_result\d*", name):
                result_var = name
                cfg = next((n.id for n in ast.walk(st.value) if isinstance(n, ast.Name)  # type: ignore[attr-defined]
                            and n.id in self.guardrail_configs), None)
                config["guardrails"] = self.guardrail_configs.get(cfg or "", [])
            i += 1
        self.results[result_var or "guardrails_result"] = node
        self.prev = node
        out: list[tuple[str, str]] = []
        if i < len(stmts) and isinstance(stmts[i], ast.If) and re.fullmatch(
                r"guardrails_hastripwire\d*", ast.unparse(stmts[i].test)):  # type: ignore[attr-defined]
            branch = stmts[i]
            i += 1
            for body, port in ((branch.body, "on_fail"), (branch.orelse, "on_pass")):  # type: ignore[attr-defined]
                self.prev = node
                if len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Name) \
                        and re.fullmatch(r"guardrails_output\d*", body[0].value.id):
                    continue  # the export's way of writing a port with no edge
                out += self.block(body, [(node, port)], parent)
        else:
            out = [(node, "on_pass")]
        self.prev = saved if out == [] else node
        return node, out, i

    def mcp(self, stmts: list[ast.stmt], i: int, parent: str | None) -> tuple[str, int]:
        transport = stmts[i].value  # type: ignore[attr-defined]
        config: dict[str, Any] = {"transportType": "http"}
        if isinstance(transport, ast.Call):
            config["url"] = _const(_kw(transport, "url"))
            headers = _const(_kw(transport, "headers"), {}) or {}
            auth = headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                config.update(authType="bearer", bearerToken=auth.removeprefix("Bearer "))
            if _call_name(transport) == "StdioClientTransport":
                cmd = [_const(_kw(transport, "command"), ""), *list(_const(_kw(transport, "args"), []) or [])]
                config["url"] = "stdio:" + " ".join(str(c) for c in cmd)
        i += 1
        while i < len(stmts) and "mcp_" in ast.unparse(stmts[i]):
            call = next((n for n in ast.walk(stmts[i]) if isinstance(n, ast.Call) and _call_name(n) == "call_tool"),
                        None)
            if call is not None:
                config["toolName"] = _const(_kw(call, "name"))
                config["parameters"] = _const(_kw(call, "arguments"), {})
            i += 1
        return self.add("MCP", "MCP", config, parent), i

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
