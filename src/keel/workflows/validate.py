"""Validation: everything about a spec that can be checked before a run starts.

:func:`compile_workflow` returns a :class:`CompiledWorkflow` (edges indexed,
CEL parsed and type-checked, tools resolved) or raises one :class:`SpecError`
listing every problem, each with file, line, node id and a hint:

- one Start node, at least one End node, unique node ids;
- edges that name unknown nodes or ports (dangling), and nodes missing a
  required edge (every branch of an If/else, ``body`` and ``next`` of a While...);
- nodes no path from Start reaches (unreachable), and While bodies that never
  return to their While node;
- CEL syntax and type errors, undeclared variables, ``state.<name>`` never
  declared and ``nodes.<id>`` naming no node;
- Agent model strings, tools, MCP servers and output schemas; Guardrails checks; File search
  needs the context engine;
- Agent ``agent_tools`` and ``handoffs`` (:mod:`keel.workflows.multi_agent_check`): known Agent
  ids, no agent calling itself, no unbounded handoff cycle, nesting within ``max_agent_depth``;
- ``layout`` entries that name no node.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keel.errors import KeelError
from keel.workflows.cel import (
    WORKFLOW_NAMES,
    CelError,
    Expression,
    compile_expression,
    parsed_fields,
    referenced,
)
from keel.workflows.errors import Problem, SpecError
from keel.workflows.loader import LoadedSpec, SourceMap
from keel.workflows.spec import (
    AgentNode,
    EndNode,
    FileSearchNode,
    GuardrailsNode,
    HumanApprovalNode,
    IfElseNode,
    McpNode,
    NoteNode,
    SetStateNode,
    StartNode,
    TransformNode,
    WhileNode,
    WorkflowSpec,
)
from keel.workflows.tool_policy import name_key
from keel.workflows.tools import FunctionTool, ToolNotFound, resolve_tool

__all__ = ["CompiledWorkflow", "Template", "compile_workflow"]

_TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}", re.S)

#: Ports a node must have an edge for (beyond these, edges are optional).
_REQUIRED_PORTS: dict[type, tuple[str, ...]] = {
    StartNode: ("next",), AgentNode: ("next",), TransformNode: ("next",), SetStateNode: ("next",),
    WhileNode: ("body", "next"), HumanApprovalNode: ("approved", "rejected"),
    GuardrailsNode: ("pass", "fail"), FileSearchNode: ("next",), McpNode: ("next",),
}


@dataclass(frozen=True)
class Template:
    """Text with ``{{ expr }}`` holes, compiled."""

    parts: tuple[str | Expression, ...]

    def render(self, variables: dict[str, Any]) -> str:
        import json

        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                v = p.evaluate(variables)
                out.append(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
        return "".join(out)


@dataclass
class CompiledWorkflow:
    """A validated spec, ready to run: edges by ``(node, port)``, expressions compiled."""

    spec: WorkflowSpec
    edges: dict[tuple[str, str], str]
    expressions: dict[tuple[str, str], Expression] = field(default_factory=dict)
    """``(node_id, field)`` -> compiled CEL; field is e.g. ``condition``, ``fields.total``."""
    templates: dict[tuple[str, str], Template] = field(default_factory=dict)
    tools: dict[str, FunctionTool] = field(default_factory=dict)
    nodes: dict[str, Any] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)
    """What is allowed but probably not meant (a cycle no While node bounds); shown, never fatal."""

    @property
    def start_id(self) -> str:
        return next(n.id for n in self.spec.nodes if isinstance(n, StartNode))

    def target(self, node_id: str, port: str = "next") -> str | None:
        return self.edges.get((node_id, port))


class _Checker:
    def __init__(self, loaded: LoadedSpec, tools: dict[str, Callable[..., Any]] | None,
                 models: dict[str, str] | None = None) -> None:
        self.spec = loaded.spec
        self.models = models or {}
        """Model aliases resolved at publish time (a published version's), looked up first."""
        self.where: SourceMap = loaded.where
        self.extra_tools = tools
        self.problems: list[Problem] = []
        self.index = {n.id: i for i, n in enumerate(self.spec.nodes)}
        self.out = CompiledWorkflow(self.spec, {})
        self.state_names: set[str] = set()
        self.bad_sources: set[str] = set()
        from keel.workflows.multi_agent_check import off_graph

        self.off_graph = off_graph(self.spec)
        """Agent nodes only other agents use (as tools or handoff targets): no edges needed."""
        self._settings: Any = None  # read once per check, not once per model string (a 500-node spec has 250)
        self._succ: dict[str, list[str]] | None = None  # edges by source / by target, built once the edges are
        self._pred: dict[str, list[str]] | None = None  # checked (reachability and `input` are linear, not N x E)

    def _adjacency(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        if self._succ is None or self._pred is None:
            succ: dict[str, list[str]] = {}
            pred: dict[str, list[str]] = {}
            for (src, _), dst in self.out.edges.items():
                succ.setdefault(src, []).append(dst)
                pred.setdefault(dst, []).append(src)
            self._succ, self._pred = succ, pred
        return self._succ, self._pred

    def problem(self, message: str, hint: str, *, node: str | None = None, path: tuple = ()) -> None:
        full: tuple = (("nodes", self.index[node], *path) if node in self.index else path)
        self.problems.append(Problem(
            message, hint, file=self.where.file, line=self.where.line(full), node_id=node,
            path="".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in full).lstrip(".") or None,
        ))

    # -- structure ----------------------------------------------------------------------

    def check_nodes(self) -> None:
        seen: set[str] = set()
        for n in self.spec.nodes:
            if n.id in seen:
                self.problem(f"duplicate node id {n.id!r}", "give every node its own id", node=n.id, path=("id",))
            seen.add(n.id)
            self.out.nodes[n.id] = n
        starts = [n for n in self.spec.nodes if isinstance(n, StartNode)]
        if not starts:
            self.problem("a workflow needs exactly one start node, found none",
                         "add `- {id: start, type: start}`", path=("nodes",))
        elif len(starts) > 1:
            ids = ", ".join(repr(n.id) for n in starts)
            self.problem(f"a workflow needs exactly one start node, found {len(starts)}: {ids}",
                         f"keep one of {ids} and delete the others (or make them another type)",
                         node=starts[1].id, path=("type",))
        if not any(isinstance(n, EndNode) for n in self.spec.nodes):
            self.problem("the workflow has no end node", "add `- {id: end, type: end}` and an edge to it",
                         path=("nodes",))
        for n in starts:
            self.state_names.update(n.state)
        for n in self.spec.nodes:
            if isinstance(n, SetStateNode):
                self.state_names.update(n.assign)

    def check_edges(self) -> None:
        for i, e in enumerate(self.spec.edges):
            where = ("edges", i)
            line = self.where.line(where)
            for end, attr in ((e.source, "from"), (e.target, "to")):
                if end not in self.out.nodes:
                    import difflib

                    close = difflib.get_close_matches(end, list(self.out.nodes), n=1)
                    self.problems.append(Problem(
                        f"edge {attr} unknown node {end!r} (dangling edge)",
                        (f"did you mean {close[0]!r}? " if close else "") + "edges connect node ids",
                        file=self.where.file, line=self.where.line((*where, attr)) or line,
                        path=f"edges[{i}].{attr}"))
            if e.source not in self.out.nodes or e.target not in self.out.nodes:
                self.bad_sources.add(e.source)  # its "missing edge" would only repeat this problem
                continue
            src, dst = self.out.nodes[e.source], self.out.nodes[e.target]
            if isinstance(src, NoteNode) or isinstance(dst, NoteNode):
                self.problems.append(Problem("notes take no edges", "remove this edge", file=self.where.file,
                                             line=line, node_id=e.source, path=f"edges[{i}]"))
                continue
            if isinstance(dst, StartNode):
                self.problems.append(Problem("no edge may enter the start node",
                                             "loop with a while node instead", file=self.where.file, line=line,
                                             node_id=e.target, path=f"edges[{i}].to"))
            allowed = src.allowed_ports()
            if e.port not in allowed:
                self.problems.append(Problem(
                    f"a {src.type} node has no port {e.port!r}",
                    f"ports of {e.source}: {', '.join(allowed) or 'none (it ends the run)'}",
                    file=self.where.file, line=self.where.line((*where, "port")) or line, node_id=e.source,
                    path=f"edges[{i}].port"))
                self.bad_sources.add(e.source)
                continue
            if (e.source, e.port) in self.out.edges:
                self.problems.append(Problem(
                    f"two edges leave {e.source!r} through port {e.port!r}",
                    "a port leads to exactly one node: remove one edge", file=self.where.file, line=line,
                    node_id=e.source, path=f"edges[{i}]"))
            self.out.edges[(e.source, e.port)] = e.target
        for n in self.spec.nodes:
            if n.id in self.bad_sources or n.id in self.off_graph:
                continue
            required = _REQUIRED_PORTS.get(type(n), ())
            if isinstance(n, IfElseNode):
                required = n.allowed_ports()
            for port in required:
                if (n.id, port) not in self.out.edges:
                    self.problem(f"missing edge from {n.id!r} through port {port!r}",
                                 f"add `- {{from: {n.id}, port: {port}, to: ...}}` to edges", node=n.id)

    def check_layout(self) -> None:
        """Every id in ``layout.nodes`` names a node (a position of a node that is gone misleads
        the canvas and hides a rename)."""
        layout = self.spec.layout
        if layout is None:
            return
        import difflib

        for node_id in layout.nodes:
            if node_id not in self.index:
                close = difflib.get_close_matches(node_id, list(self.index), n=1)
                self.problem(f"layout names node {node_id!r}, which the workflow does not have",
                             (f"did you mean {close[0]!r}? " if close else "")
                             + "remove its entry from layout.nodes (or rename it to the node's id)",
                             path=("layout", "nodes", node_id))

    def check_reachability(self) -> None:
        starts = [n.id for n in self.spec.nodes if isinstance(n, StartNode)]
        if not starts:
            return
        seen = self._reach(starts[0])
        for n in self.spec.nodes:
            if n.id not in seen and not isinstance(n, NoteNode) and n.id not in self.off_graph:
                self.problem(f"node {n.id!r} is unreachable from start",
                             "add an edge into it, or delete it", node=n.id)
        for n in self.spec.nodes:
            body = self.out.edges.get((n.id, "body")) if isinstance(n, WhileNode) else None
            if body and n.id not in self._reach(body):
                self.problem(f"the body of while node {n.id!r} never returns to it",
                             f"add an edge from the last node of the body back to {n.id!r}", node=n.id)

    def check_cycles(self) -> None:
        """Warn about each cycle no While node bounds: one that does not pass through a While
        node's ``body`` port (an If/else back-edge, an ``error`` edge that retries). Such a run
        goes round until ``limits.max_steps`` or ``limits.max_seconds`` stops it."""
        from keel.workflows.cycles import unbounded_cycles

        edges = [(src, dst) for (src, port), dst in self.out.edges.items()
                 if not (port == "body" and isinstance(self.out.nodes[src], WhileNode))]
        limits = self.spec.run_limits()
        for cycle in unbounded_cycles(edges, order=list(self.index)):
            ring = " -> ".join([*cycle, cycle[0]])
            before = len(self.problems)
            self.problem(f"the cycle {ring} is not bounded by a while node: a run that goes round it stops "
                         f"only at limits.max_steps ({limits.max_steps}) or limits.max_seconds "
                         f"({limits.max_seconds:g}), as failed",
                         "loop with a while node (its body port and max_iterations), or set `limits:` to "
                         "what this cycle may take", node=cycle[0])
            self.out.warnings.append(self.problems.pop(before))

    def _reach(self, start: str) -> set[str]:
        succ, _ = self._adjacency()
        seen, todo = {start}, deque([start])
        while todo:
            cur = todo.popleft()
            for dst in succ.get(cur, ()):
                if dst not in seen:
                    seen.add(dst)
                    todo.append(dst)
        return seen

    # -- expressions ----------------------------------------------------------------------

    def expr(self, node: Any, key: str, source: str, path: tuple) -> None:
        try:
            compiled = compile_expression(source)
        except CelError as e:
            for message, column in ((e.message, e.column), *e.more):  # every problem, not only the first
                col = f" (column {column})" if column else ""
                hint = "variables: input, input_as_text, state.<name>, nodes.<id>, workflow.input"
                if "Syntax error" not in message and "undeclared" not in message:
                    hint = "CEL is typed: compare like with like, convert with int(), string(), double()"
                self.problem(f"CEL error in {key}{col}: {message} — in {source!r}", hint, node=node.id, path=path)
            return
        self._refs(node, key, source, path)
        self.out.expressions[(node.id, key)] = compiled

    def _refs(self, node: Any, key: str, source: str, path: tuple) -> None:
        for root, name in referenced(source):
            if root == "state" and name not in self.state_names:
                self.problem(f"unknown variable state.{name} in {key}",
                             f"declare it under `state:` on the start node (known: "
                             f"{', '.join(sorted(self.state_names)) or 'none'})", node=node.id, path=path)
            if root == "nodes" and (name not in self.out.nodes or isinstance(self.out.nodes[name], NoteNode)):
                self.problem(f"unknown variable nodes.{name} in {key}: no node has id {name!r}",
                             "refer to an earlier node by its id", node=node.id, path=path)
            if root == "workflow" and name not in self._workflow_names():
                fields = sorted(self._workflow_names() - set(WORKFLOW_NAMES))
                self.problem(f"unknown variable workflow.{name} in {key}",
                             f"workflow.* has {', '.join(WORKFLOW_NAMES)} and the properties of the start node's "
                             f"input_schema ({', '.join(fields) or 'none declared'}): declare {name!r} there",
                             node=node.id, path=path)
        for source_node, name in parsed_fields(source):
            schemas = self._parsed_schemas(source_node, node.id)
            if schemas and all(name not in props for props in schemas):
                where = f"nodes.{source_node}" if source_node else "input"
                known = sorted({p for props in schemas for p in props})
                self.problem(f"unknown variable {where}.output_parsed.{name} in {key}: the output schema has no "
                             f"field {name!r}", f"fields: {', '.join(known) or 'none'}", node=node.id, path=path)

    def _workflow_names(self) -> set[str]:
        """Names ``workflow.<name>`` may use: Keel's own, and Agent Builder's fields of the input schema."""
        names = set(WORKFLOW_NAMES)
        for n in self.spec.nodes:
            if isinstance(n, StartNode) and isinstance(n.input_schema, dict):
                props = n.input_schema.get("properties")
                names.update(props if isinstance(props, dict) else ())
        return names

    def _parsed_schemas(self, source_node: str | None, at: str) -> list[set[str]]:
        """Field names of the strict output schemas ``output_parsed`` can come from; [] when unknown.

        ``nodes.<id>`` is that node; ``input`` is every node with an edge into ``at``, looking
        through nodes that pass their input on (If/else, While, Set state).
        """
        if source_node is not None:
            props = self._schema_fields(self.out.nodes.get(source_node))
            return [props] if props is not None else []
        found: list[set[str]] = []
        seen: set[str] = set()
        todo = [at]
        _, pred = self._adjacency()
        while todo:
            cur = todo.pop()
            for src in pred.get(cur, ()):
                if src in seen:
                    continue
                seen.add(src)
                n = self.out.nodes[src]
                if isinstance(n, IfElseNode | WhileNode | SetStateNode):
                    todo.append(src)
                    continue
                props = self._schema_fields(n)
                if props is None:
                    return []  # some way in gives an output we know nothing about
                found.append(props)
        return found

    @staticmethod
    def _schema_fields(n: Any) -> set[str] | None:
        schema = n.output_schema if isinstance(n, AgentNode) else None
        if not isinstance(schema, dict) or schema.get("additionalProperties") is not False \
                or not isinstance(schema.get("properties"), dict):
            return None
        return set(schema["properties"])

    def template(self, node: Any, key: str, text: str, path: tuple) -> None:
        parts: list[str | Expression] = []
        pos = 0
        ok = True
        for m in _TEMPLATE_RE.finditer(text):
            parts.append(text[pos:m.start()])
            pos = m.end()
            before = len(self.problems)
            self.expr(node, f"{key} template {{{{{m.group(1).strip()}}}}}", m.group(1).strip(), path)
            if len(self.problems) > before:
                ok = False
                continue
            parts.append(self.out.expressions.pop((node.id, f"{key} template {{{{{m.group(1).strip()}}}}}")))
        parts.append(text[pos:])
        if ok:
            self.out.templates[(node.id, key)] = Template(tuple(p for p in parts if p != ""))

    def check_node_fields(self) -> None:
        for n in self.spec.nodes:
            if isinstance(n, IfElseNode):
                names = [b.name for b in n.branches]
                if len(set(names)) != len(names) or "else" in names:
                    self.problem("branch names must be unique and not 'else'", "rename the branches", node=n.id,
                                 path=("branches",))
                for i, b in enumerate(n.branches):
                    self.expr(n, f"branches.{b.name}", b.condition, ("branches", i, "condition"))
            elif isinstance(n, WhileNode):
                self.expr(n, "condition", n.condition, ("condition",))
            elif isinstance(n, TransformNode):
                if (n.expression is None) == (not n.fields):
                    self.problem("a transform node needs `expression` or `fields` (one of them)",
                                 "e.g. fields: {total: 'input.output_parsed.price * 2'}", node=n.id)
                if n.expression is not None:
                    self.expr(n, "expression", n.expression, ("expression",))
                for k, v in n.fields.items():
                    self.expr(n, f"fields.{k}", v, ("fields", k))
            elif isinstance(n, SetStateNode):
                for k, v in n.assign.items():
                    self.expr(n, f"assign.{k}", v, ("assign", k))
            elif isinstance(n, EndNode) and n.output is not None:
                self.expr(n, "output", n.output, ("output",))
            elif isinstance(n, HumanApprovalNode):
                self.template(n, "message", n.message, ("message",))
            elif isinstance(n, AgentNode):
                self.check_agent(n)
            elif isinstance(n, McpNode):
                if n.connector is not None:  # the registry is checked at publish (keel.connectors.use)
                    if n.server is not None or n.env:
                        self.problem(f"the node names connector {n.connector!r} and also `server`/`env`",
                                     "drop `server` and `env`: the connector holds the server and its credentials",
                                     node=n.id, path=("connector",))
                elif n.server is None:
                    self.problem("an mcp node needs `server` or `connector`",
                                 "write `connector: NAME` (keel connectors list) or `server: stdio:COMMAND` / a URL",
                                 node=n.id, path=("type",))
                else:
                    self.check_mcp_server(n, n.server, ("server",))
                for k, v in n.arguments.items():
                    self.expr(n, f"arguments.{k}", v, ("arguments", k))
            elif isinstance(n, GuardrailsNode):
                self.check_guardrails(n)
            elif isinstance(n, FileSearchNode):
                self.check_file_search(n)

    def check_model(self, n: Any, model: str, path: tuple) -> None:
        from keel.models import parse_model_string

        try:
            if self._settings is None:
                from keel.config import get_settings

                self._settings = get_settings()
            spec = parse_model_string(self._settings.resolve_alias(self.models.get(model, model)))
        except KeelError as e:
            self.problem(e.message, e.hint or "", node=n.id, path=path)
            return
        plain_agent = isinstance(n, AgentNode) and n.output_schema is None and not n.tools and not n.mcp \
            and not n.agent_tools and not n.handoffs
        if spec.prefix == "extractive" and not plain_agent:  # it only quotes sources (docs/models.md)
            from keel.models.extractive import SWITCH

            self.problem(f"model {model!r} is the extractive answerer, which only quotes its sources: it cannot "
                         "write structured output, call tools or judge",
                         f"give this node a model (point the alias at one in keel.toml: {SWITCH})",
                         node=n.id, path=path)

    def check_mcp_server(self, n: Any, server: str, path: tuple) -> None:
        from keel.workflows.mcp_tools import check_server

        problem = check_server(server)
        if problem:
            missing = "not found on PATH" in problem or "not an executable" in problem
            hint = ("install it, or give its full path: `stdio:/path/to/server --flag`" if missing
                    else "e.g. `stdio:python my_server.py` or `http://127.0.0.1:8000/mcp`")
            self.problem(problem, hint, node=n.id, path=path)
        try:
            import mcp  # noqa: F401
        except ImportError:
            self.problem("MCP needs the `mcp` package, which is not installed", "pip install mcp", node=n.id,
                         path=path)

    def check_guardrails(self, n: GuardrailsNode) -> None:
        self.expr(n, "text", n.text, ("text",))
        names: set[str] = set()
        for i, c in enumerate(n.resolved_checks()):
            name = getattr(c, "name", c.type)
            if name in names:
                self.problem(f"two checks are named {name!r}", "give each custom check its own name, and list "
                             "each built-in check once", node=n.id, path=("checks", i))
            names.add(name)
            if getattr(c, "model", None):
                self.check_model(n, c.model, ("checks", i, "model"))
            if c.type == "hallucination":
                self.expr(n, f"checks.{i}.sources", c.sources, ("checks", i, "sources"))

    def check_file_search(self, n: FileSearchNode) -> None:
        from keel.workflows.file_search import unavailable_reason

        self.expr(n, "query", n.query, ("query",))
        reason = unavailable_reason()
        if reason:
            self.problem(f"file_search nodes need Keel's context engine: {reason}",
                         "pip install 'keel[context]'", node=n.id, path=("type",))

    def check_agent(self, n: AgentNode) -> None:
        from keel.models.structured import check_schema

        self.expr(n, "input", n.input, ("input",))
        self.template(n, "instructions", n.instructions, ("instructions",))
        if n.memory is not None:
            self.template(n, "memory.scope", n.memory.scope, ("memory", "scope"))
        self.check_model(n, n.model, ("model",))
        if n.http is not None and n.http.connector is not None:  # the registry is checked at publish
            if n.http.headers:
                self.problem(f"the http tool names connector {n.http.connector!r} and also `headers`",
                             "drop `headers`: the connector holds the credentials", node=n.id,
                             path=("http", "headers"))
        elif n.http is not None and not n.http.allow_hosts:
            self.problem("the http tool allows no host", "list them: allow_hosts: [api.example.com], or name an "
                         "--http connector: http: {connector: NAME}", node=n.id, path=("http", "allow_hosts"))
        for i, server in enumerate(n.mcp):
            if server.connector is not None:  # the registry is checked at publish (keel.connectors.check)
                if server.server is not None or server.env:
                    self.problem(f"MCP entry {i} names connector {server.connector!r} and also `server`/`env`",
                                 "drop `server` and `env`: the connector holds the server and its credentials",
                                 node=n.id, path=("mcp", i, "connector"))
            elif server.server is None:
                self.problem(f"MCP entry {i} names neither `server` nor `connector`",
                             "write `connector: NAME` (keel connectors list) or `server: stdio:COMMAND` / a URL",
                             node=n.id, path=("mcp", i))
            else:
                self.check_mcp_server(n, server.server, ("mcp", i, "server"))
            for tool in server.approval:
                if tool != "*" and server.tools is not None and name_key(tool) not in {
                        name_key(t) for t in server.tools}:
                    self.problem(f"approval names tool {tool!r}, which is not in this server's `tools`",
                                 f"tools: {', '.join(server.tools)}; use `*` for every other tool", node=n.id,
                                 path=("mcp", i, "approval", tool))
        if n.output_schema is not None:
            try:
                check_schema(n.output_schema, where=f"output_schema of {n.id}")
            except KeelError as e:
                self.problem(e.message, e.hint or "", node=n.id, path=("output_schema",))
        if n.widget is not None:  # the template against the output schema (docs/widgets.md)
            from keel.workflows.widgets import check as check_widget

            for message, hint, sub in check_widget(n.widget, n.output_schema):
                self.problem(message, hint, node=n.id, path=("widget", *sub))
        for i, ref in enumerate(n.tools):
            try:
                self.out.tools[ref] = resolve_tool(ref, self.extra_tools)
            except ToolNotFound as e:
                self.problem(f"tool {ref!r}: {e}",
                             "name an importable function as `package.module:function`, or register it with "
                             "keel.workflows.function_tool", node=n.id, path=("tools", i))
            except Exception as e:  # a tool whose signature cannot become a schema
                self.problem(f"tool {ref!r} cannot be described to a model: {e}",
                             "annotate every parameter with a JSON-compatible type", node=n.id, path=("tools", i))
        known = {name_key(ref) for ref in n.tools} | {name_key(self.out.tools[ref].name) for ref in n.tools
                                                      if ref in self.out.tools}
        known |= {name_key(t.name or t.agent) for t in n.agent_tools}  # calling an agent may need approval too
        if n.http is not None:  # the built-in HTTP request tool takes its policy from here too
            known.add(name_key(n.http.name))
        for tool in n.approval:
            if tool != "*" and name_key(tool) not in known:
                self.problem(f"approval names tool {tool!r}, which is not one of this node's Python `tools`",
                             f"tools: {', '.join(n.tools) or 'none'}; use `*` for every tool the policy does not "
                             "name (MCP tools take their policy from their server's `approval`)", node=n.id,
                             path=("approval", tool))


def compile_workflow(loaded: LoadedSpec, *, tools: dict[str, Callable[..., Any]] | None = None,
                     models: dict[str, str] | None = None) -> CompiledWorkflow:
    """Validate ``loaded`` completely; return it compiled or raise :class:`SpecError`.

    ``models``: the aliases a published version was published with (they win over the
    settings of the process compiling it)."""
    c = _Checker(loaded, tools, models)
    c.check_nodes()
    c.check_edges()
    if not c.problems:
        c.check_reachability()
        c.check_cycles()
    c.check_node_fields()
    from keel.workflows.multi_agent_check import check_multi_agent

    check_multi_agent(c.spec, lambda n: [c.out.tools[r].name for r in n.tools if r in c.out.tools]
                      + ([n.http.name] if getattr(n, "http", None) is not None else []), c.problem)
    c.check_layout()
    if c.problems:
        c.problems.sort(key=lambda p: (p.line or 0))
        raise SpecError(c.problems)
    return c.out
