"""One :class:`AbGraph` -> one Keel spec (plain data), with every decision in the report.

The rules (docs/decisions/0012-agent-builder-import.md):

- node ids come from the labels (``User approval 1`` -> ``user_approval_1``), made unique;
- a port Agent Builder left without an edge ends the run at an added End node, except inside a
  While body, where the body simply ends and the loop goes round again (as the exported code
  does);
- nodes no path from Start reaches are kept as Note nodes holding their configuration;
- CEL names Agent Builder gives node outputs are rewritten to Keel's: ``input.safe_text`` ->
  ``input.output_text``, ``input.<field>`` -> ``input.output_parsed.<field>``, ``undefined`` ->
  ``null``; a condition that is a bare string or number (Agent Builder tests its truth) becomes
  a comparison; ``workflow.input_as_text`` and ``workflow.<field>`` stay as they are (Keel has them);
- what Keel lacks (hosted tools, vector stores) becomes a marked placeholder; an Agent's widget output
  becomes its ``widget`` and ``output_schema`` (:mod:`.widget_outputs`);
- canvas positions go to the spec's top-level ``layout: {nodes: {ID: {x, y}}}`` section.
"""

from __future__ import annotations

import json
import re
from typing import Any

from keel.workflows.importers.errors import NotImportable
from keel.workflows.importers.expressions import cel_literal, cel_string
from keel.workflows.importers.expressions import expr as _expr
from keel.workflows.importers.expressions import model_name as _model
from keel.workflows.importers.expressions import outside_strings as _outside_strings
from keel.workflows.importers.expressions import repair_object as _repair_object
from keel.workflows.importers.expressions import rewrite as _rewrite
from keel.workflows.importers.expressions import slug as _slug
from keel.workflows.importers.ir import MISSING, AbGraph, AbNode
from keel.workflows.importers.report import Report
from keel.workflows.importers.tool_nodes import ToolNodes, without_secrets
from keel.workflows.importers.widget_outputs import widget_output

__all__ = ["cel_string", "to_keel", "yaml_text"]

_PATH_RE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_TYPE_DEFAULT_LABEL = {
    "Start": "start", "Agent": "agent", "IfElse": "if_else", "While": "while", "BinaryApproval": "approval",
    "Guardrails": "guardrails", "FileSearch": "file_search", "MCP": "mcp", "Transform": "transform",
    "SetState": "set_state", "End": "end", "Note": "note",
}


class _Mapper(ToolNodes):
    def __init__(self, g: AbGraph, report: Report) -> None:
        self.g = g
        self.report = report
        self.ids: dict[str, str] = {}
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, Any]] = []
        self.taken: set[str] = set()
        self.layout: dict[str, dict[str, float]] = {}
        """Keel node id -> its canvas position (Agent Builder's ``positionsByNodeId``)."""

    # -- ids ------------------------------------------------------------------------------

    def new_id(self, base: str) -> str:
        cand, i = base, 2
        while cand in self.taken:
            cand = f"{base}_{i}"
            i += 1
        self.taken.add(cand)
        return cand

    def label(self, n: AbNode) -> str:
        return n.label or _TYPE_DEFAULT_LABEL.get(n.type, n.type.lower())

    # -- the whole graph ------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        g = self.g
        if g.start is None or not any(n.id == g.start for n in g.nodes):
            raise NotImportable(f"{self.report.source}: the workflow has no Start node",
                                hint="an Agent Builder workflow begins at a builtins.Start node")
        self._drop_empty_set_states()
        reach = self._reachable()
        called = _called_agents(g, reach)  # agents graph Agents call or hand off to: off the graph
        for n in g.nodes:
            base = "start" if n.id == g.start else _slug(self.label(n), _TYPE_DEFAULT_LABEL.get(n.type, "node"))
            self.ids[n.id] = self.new_id(base)
        for n in g.nodes:
            if n.id in reach or n.id in called:
                self.node(n)
            else:
                self.unreachable(n)
        for n in g.nodes:
            if n.id in reach:
                self.node_edges(n)
        spec: dict[str, Any] = {"name": _slug(g.name, "imported").replace("_", "-"),
                                "description": self._description(), "nodes": self.nodes, "edges": self.edges}
        if self.layout:
            spec["layout"] = {"nodes": self.layout}
        if any(n.get("handoffs") for n in self.nodes):  # the Agents SDK's Runner bounds turns (max_turns)
            spec["limits"] = {"max_agent_turns": 100}
            self.report.add("mapped", None, "agents hand off to each other: limits.max_agent_turns is set to 100 "
                            "(the Agents SDK bounds a run by Runner.run's max_turns)", "change it in `limits:`")
        return spec

    def _description(self) -> str:
        return f"imported from Agent Builder ({self.report.form.replace('_', ' ')})"

    def _drop_empty_set_states(self) -> None:
        g = self.g
        for n in list(g.nodes):
            if n.type == "SetState" and not [a for a in n.config.get("assignments") or [] if a.get("name")]:
                nxt = g.out(n.id).get("out") or g.out(n.id).get("on_result")
                g.edges = [e for e in g.edges if e.source != n.id]
                g.edges = [type(e)(e.source, e.port, nxt) if e.target == n.id else e
                           for e in g.edges if e.target != n.id or nxt is not None]
                g.nodes.remove(n)
                self.report.add("dropped", None, f"Set state node {self.label(n)!r} assigns nothing: left out "
                                "(the exported code has no statement for it either)")

    def _reachable(self) -> set[str]:
        seen, todo = {self.g.start}, [self.g.start]
        while todo:
            cur = todo.pop()
            for e in self.g.edges:
                if e.source == cur and e.target not in seen and any(n.id == e.target for n in self.g.nodes):
                    seen.add(e.target)
                    todo.append(e.target)
        return seen  # type: ignore[return-value]

    def unreachable(self, n: AbNode) -> None:
        kid = self.ids[n.id]
        config = json.dumps(without_secrets(n.config), ensure_ascii=False, sort_keys=True)  # no tokens in Notes
        text = n.config.get("text") if n.type == "Note" else None
        if not isinstance(text, str):
            text = (f"Not connected in Agent Builder (no path from Start reached it): {n.type} node "
                    f"{self.label(n)!r}, config {config}")
            self.report.add("dropped", kid, f"{n.type} node {self.label(n)!r} is not reachable from Start: kept as "
                            "a Note holding its configuration", "connect it in Agent Builder's sense by hand, as "
                            "a Keel node, if it was meant to run")
        self.nodes.append(self._with_ui(n, {"id": kid, "type": "note", "title": self.label(n), "text": text}))

    def _with_ui(self, n: AbNode, out: dict[str, Any]) -> dict[str, Any]:
        if n.position is not None:  # kept in the spec's top-level `layout:` section
            self.layout[out["id"]] = {"x": n.position[0], "y": n.position[1]}
        return out

    # -- nodes ----------------------------------------------------------------------------

    def node(self, n: AbNode) -> None:
        kid = self.ids[n.id]
        method = getattr(self, f"n_{n.type}", None)
        if n.id == self.g.start:
            fields = self.n_Start(n, kid)
        elif method is None:
            raise NotImportable(f"{self.report.source}: node {self.label(n)!r} ({n.id}) has type {n.type!r}, "
                                "which Agent Builder does not have", hint="expected builtins.* node types")
        else:
            fields = method(n, kid)
        out: dict[str, Any] = {"id": kid, "type": fields.pop("type")}
        if n.id != self.g.start:
            out["title"] = self.label(n)
        self.nodes.append(self._with_ui(n, {**out, **fields}))

    def n_Start(self, n: AbNode, kid: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "start"}
        state = {k: (None if v is MISSING else v) for k, v in self.g.state.items()}
        if state:
            out["state"] = state
        schema = self.g.input_schema
        props = (schema or {}).get("properties") or {}
        if schema and set(props) - {"input_as_text"}:
            out["input_schema"] = schema
            self.report.add("mapped", kid, "the workflow's input schema has fields besides input_as_text: runs take "
                            "JSON input, each field readable as workflow.<field>")
        return out

    def n_End(self, n: AbNode, kid: str) -> dict[str, Any]:
        source = _expr(n.config.get("expr")).strip()
        if source in ("", "input"):
            return {"type": "end"}
        return {"type": "end", "output": self.cel(n, kid, source, "output")}

    def n_Note(self, n: AbNode, kid: str) -> dict[str, Any]:
        return {"type": "note", "text": str(n.config.get("text") or n.config.get("name") or "")}

    def n_Transform(self, n: AbNode, kid: str) -> dict[str, Any]:
        source = _expr(n.config.get("expr"))
        if not self._compiles(_rewrite(source)):
            repaired = _repair_object(source)
            if repaired is not None and self._compiles(_rewrite(repaired)):
                self.report.add("changed", kid, f"Transform expression {source!r} has entries without a value: "
                                f"they are left out, as Agent Builder's export did ({repaired!r})")
                source = repaired
        return {"type": "transform", "expression": self.cel(n, kid, source, "expression")}

    def n_SetState(self, n: AbNode, kid: str) -> dict[str, Any]:
        assign = {}
        for a in n.config.get("assignments") or []:
            if a.get("name"):
                assign[a["name"]] = self.cel(n, kid, _expr(a.get("expression")), f"assignment to {a['name']}")
        return {"type": "set_state", "assign": assign}

    def n_IfElse(self, n: AbNode, kid: str) -> dict[str, Any]:
        branches = []
        names: set[str] = set()
        for i, case in enumerate(n.config.get("cases") or []):
            label = case.get("label") or f"case-{i}"
            name = _slug(label, "case")
            name = name if name not in names and name != "else" else f"case_{i}"
            names.add(name)
            branches.append({"name": name, "condition": self.condition(n, kid, _expr(case.get("predicate")),
                                                                        f"condition of {label}")})
        if not branches:
            raise NotImportable(f"{self.report.source}: If/else node {self.label(n)!r} ({n.id}) has no conditions",
                                hint="give it at least one case in Agent Builder")
        return {"type": "if_else", "branches": branches}

    def n_While(self, n: AbNode, kid: str) -> dict[str, Any]:
        return {"type": "while", "condition": self.condition(n, kid, _expr(n.config.get("condition")), "condition")}

    def n_BinaryApproval(self, n: AbNode, kid: str) -> dict[str, Any]:
        message = n.config.get("message")
        return {"type": "human_approval", **({"message": message} if message else {})}


    def n_Agent(self, n: AbNode, kid: str) -> dict[str, Any]:
        c = n.config
        out: dict[str, Any] = {"type": "agent"}
        model_src = _expr(c.get("model"))
        model = cel_literal(model_src)
        if model is None:
            self.report.add("placeholder", kid, f"model expression {model_src!r} is not a fixed name: model set to "
                            "openai:gpt-4.1-mini", "set `model:` (any Keel model string or alias)")
            model = "gpt-4.1-mini"
        out["model"] = _model(model)
        instructions = _expr(c.get("instructions"))
        text = cel_literal(instructions)
        if text is None and instructions.strip():
            text = "{{ " + _rewrite(instructions) + " }}"
        if text:
            out["instructions"] = text
        messages = [m for m in (_message(m) for m in c.get("messages") or []) if m]
        if messages:
            out["messages"] = messages
        fmt = (c.get("text") or {}).get("format") or {}
        if fmt.get("type") == "json_schema":
            out["output_schema"] = fmt.get("schema") or {}
        elif fmt.get("type") == "widget":
            widget_output(fmt, out, self.report, kid)
        if c.get("reads_from_history") is False:
            out["include_chat_history"] = False
        if c.get("writes_to_history") is False:
            self.report.add("changed", kid, "writes_to_history is off in Agent Builder; Keel always adds an "
                            "Agent's turn to the run's conversation")
        settings = c.get("model_settings") or {}
        for key in ("temperature", "max_tokens"):
            value = c.get(key, settings.get(key))
            if value is not None:
                out[key] = value
        if c.get("max_output_tokens"):
            out["max_tokens"] = c["max_output_tokens"]
        for key in ("top_p", "parallel_tool_calls"):
            value = c.get(key, settings.get(key))
            if value is not None:
                self.report.add("dropped", kid, f"{key} {value!r}: Keel's Agent node has no such setting "
                                "(the provider's default applies)")
        effort = (c.get("reasoning") or {}).get("effort")
        if effort:
            self.report.add("dropped", kid, f"reasoning effort {effort!r}: Keel's Agent node has no such "
                            "setting (the provider's default applies)")
        for tool in c.get("tools") or []:
            self.tool_placeholder(n, kid, tool)
        if c.get("agent_tools"):
            out["agent_tools"] = [{**t, "agent": self.ids[t["agent"]]} for t in c["agent_tools"]]
        if c.get("handoffs"):
            out["handoffs"] = [self.ids[t] for t in c["handoffs"]]
        if c.get("description"):
            out["description"] = c["description"]
        return out

    # -- expressions ----------------------------------------------------------------------

    def _compiles(self, source: str) -> bool:
        from keel.workflows.cel import CelError, compile_expression

        try:
            compile_expression(source)
        except CelError:
            return False
        return True

    def cel(self, n: AbNode, kid: str, source: str, what: str) -> str:
        from keel.workflows.cel import CelError, compile_expression

        keel = _outside_strings(_rewrite(source), lambda code: re.sub(
            r"(?<![\w.])nodes\s*\.\s*([A-Za-z_]\w*)",
            lambda m: "nodes." + self.ids.get(m.group(1), m.group(1)), code))
        try:
            compile_expression(keel)
        except CelError as e:
            col = f" at column {e.column}" if e.column else ""
            raise NotImportable(
                f"{self.report.source}: {n.type} node {self.label(n)!r} ({n.id}): the {what} is not valid CEL{col}: "
                f"{e.message} — in {source!r}",
                hint="fix the expression in Agent Builder (its export refuses it too), or in the imported YAML"
            ) from None
        if keel != source.strip():
            self.report.add("mapped", kid, f"{what}: {source.strip()!r} -> {keel!r} (Keel's names for node outputs)")
        return keel

    def condition(self, n: AbNode, kid: str, source: str, what: str) -> str:
        keel = self.cel(n, kid, source, what)
        test = self._truth_test(keel)
        if test != keel:
            self.report.add("mapped", kid, f"{what}: {keel!r} is tested for truth in Agent Builder; in Keel a "
                            f"condition is a bool: {test!r}")
        return test

    def _truth_test(self, source: str) -> str:
        if not _PATH_RE.match(source):
            return source
        parts = source.split(".")
        if parts[0] == "state" and len(parts) == 2 and parts[1] in self.g.state:
            default = self.g.state[parts[1]]
            if isinstance(default, bool):
                return source
            if isinstance(default, int | float):
                return f"{source} != 0"
            if isinstance(default, str):
                return f'{source} != ""'
            return f"{source} != null"
        if source in ("input.output_text", "input_as_text", "workflow.input_as_text"):
            return f'{source} != ""'
        return source

    # -- edges ----------------------------------------------------------------------------

    def node_edges(self, n: AbNode) -> None:
        kid = self.ids[n.id]
        keel_node = next(x for x in self.nodes if x["id"] == kid)
        out = self.g.out(n.id)
        ports: dict[str, str | None] = {}
        kind = keel_node["type"]
        if kind == "if_else":
            cases = n.config.get("cases") or []
            for i, b in enumerate(keel_node["branches"]):
                port_id = cases[i].get("output_port_id") or f"case-{i}"
                ports[b["name"]] = out.get(port_id)
            fb = (n.config.get("fallback") or {}).get("output_port_id") or "fallback"
            ports["else"] = out.get(fb)
        elif kind == "while":
            ports["body"] = out.get("body")
            ports["next"] = _next(out)
        elif kind == "human_approval":
            ports["approved"] = out.get("on_approve")
            ports["rejected"] = out.get("on_reject")
        elif kind == "guardrails":
            ports["pass"] = out.get("on_pass")
            ports["fail"] = out.get("on_fail")
        elif kind == "end":
            return
        else:
            ports["next"] = _next(out)
        if kind in ("agent", "guardrails", "transform", "set_state", "file_search", "mcp") and (
                n.config.get("continue_on_error") or "on_error" in out):
            ports["error"] = out.get("on_error")
        for port, target in ports.items():
            if target is not None and target in self.ids:
                self.edges.append(_edge(kid, port, self.ids[target]))
                continue
            if kind == "while" and port == "body":
                self.edges.append(_edge(kid, "body", kid))
                self.report.add("changed", kid, "the While body is empty: its body edge leads straight back to it")
            elif n.parent is not None:
                self.edges.append(_edge(kid, port, self.ids[n.parent]))
            else:
                end = self.new_id(f"{kid}_{port}_end")
                self.nodes.append({"id": end, "type": "end", "title": "End (added)"})
                self.report.add("mapped", kid, f"port {port!r} led nowhere in Agent Builder: it ends the run at {end}")
                self.edges.append(_edge(kid, port, end))


def _next(out: dict[str, str]) -> str | None:
    for port in ("on_result", "out", "next", "on_complete", "exit"):
        if port in out:
            return out[port]
    others = [t for p, t in out.items() if p not in ("body", "on_error")]
    return others[0] if others else None


def _edge(source: str, port: str, target: str) -> dict[str, Any]:
    e = {"from": source, "to": target}
    if port != "next":
        e["port"] = port
    return e


def _message(m: Any) -> dict[str, str] | None:
    if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "developer", "system"):
        return None
    content = m.get("content")
    if isinstance(content, list):
        text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    else:
        text = str(content or "")
    role = "user" if m["role"] in ("developer", "system") else m["role"]
    return {"role": role, "content": text}


def to_keel(g: AbGraph, report: Report) -> dict[str, Any]:
    """The Keel spec for ``g`` as plain data (the order of a readable YAML file)."""
    return _Mapper(g, report).run()


def yaml_text(spec: dict[str, Any], report: Report) -> str:
    """``spec`` as readable YAML: block strings for multi-line text, a header naming the source."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    head = [f"# Imported by `keel workflows import` from {report.source} ({report.form.replace('_', ' ')}).",
            f"# {len(report.placeholders())} placeholder(s) to finish: see the import report."]
    body = yaml.dump(spec, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    return "\n".join(head) + "\n" + body


def _called_agents(g: AbGraph, reach: set[str]) -> set[str]:
    """Agent nodes the reachable Agents call as tools or hand off to, directly or through others."""
    found: set[str] = set()
    todo = [n for n in g.nodes if n.id in reach and n.type == "Agent"]
    while todo:
        n = todo.pop()
        for target in [t["agent"] for t in n.config.get("agent_tools") or []] + list(n.config.get("handoffs") or []):
            if target not in found and target not in reach:
                found.add(target)
                todo.append(g.node(target))
    return found
