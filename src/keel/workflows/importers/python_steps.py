"""The tool-family steps of an exported ``run_workflow``: File search, Guardrails and MCP.

A mixin of :class:`~.agents_sdk_python._Reader` (which provides ``add``, ``connect``, ``cel``,
``block`` and the reading state). Each method reads one step as the export writes it and adds
its Agent Builder node to the graph:

- File search: ``filesearch_result = {"results": [... for result in
  client.vector_stores.search(vector_store_id=..., query=..., max_num_results=...)]}``;
- Guardrails: ``guardrails_inputtext = ...``, ``guardrails_result = await run_guardrails(...,
  <guardrails config>, ...)``, the ``guardrails_*`` helpers, then ``if guardrails_hastripwire:``
  (fail) ``else:`` (pass);
- MCP: ``mcp_transport = SSEClientTransport(url=..., headers=...)`` (or ``StdioClientTransport``),
  the client's ``initialize``, ``call_tool(name=..., arguments=...)`` and ``close``.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from keel.workflows.importers.ir import AbGraph
from keel.workflows.importers.python_cel import call_name as _call_name
from keel.workflows.importers.python_cel import const as _const
from keel.workflows.importers.python_cel import kw as _kw

__all__ = ["ToolSteps"]

Exits = list[tuple[str, str]]


class ToolSteps:
    g: AbGraph
    prev: str | None
    results: dict[str, str]
    guardrail_configs: dict[str, list[dict[str, Any]]]

    def add(self, type_: str, label: str | None, config: dict[str, Any], parent: str | None = None) -> str:
        raise NotImplementedError

    def connect(self, pending: Exits, target: str) -> None:
        raise NotImplementedError

    def cel(self, node: ast.expr, what: str) -> str:
        raise NotImplementedError

    def block(self, stmts: list[ast.stmt], pending: Exits, parent: str | None) -> Exits:
        raise NotImplementedError

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
        # the TypeScript export may read the checked text from the output variable instead
        self.results[(result_var or "guardrails_result").replace("result", "output")] = node
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
