"""The tool-family nodes of the mapping: File search, MCP, Guardrails, and an Agent's tools.

A mixin of :class:`~.mapping._Mapper` (which provides ``report``, ``nodes``, ``label``,
``new_id`` and ``cel``). What Keel lacks becomes a marked placeholder with the fix in the report:
an OpenAI vector store becomes a Keel collection to fill with ``keel context add``; a hosted
tool becomes a Note. Secrets are never written into a spec: an MCP server's bearer token is
reported, not copied (:func:`without_secrets` also keeps it out of the Notes that hold the
configuration of unreachable nodes).
"""

from __future__ import annotations

import json
from typing import Any

from keel.workflows.importers.errors import NotImportable
from keel.workflows.importers.expressions import cel_string
from keel.workflows.importers.expressions import expr as _expr
from keel.workflows.importers.expressions import model_name as _model
from keel.workflows.importers.expressions import slug as _slug
from keel.workflows.importers.ir import AbNode
from keel.workflows.importers.report import Report

__all__ = ["ToolNodes", "without_secrets"]

_MODERATION = {"sexual": "sexual", "hate": "hate", "harassment": "harassment", "self-harm": "self_harm",
               "violence": "violence", "illicit": "illicit"}
_PII = {"CREDIT_CARD": "credit_card", "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "IBAN_CODE": "iban",
        "US_SSN": "us_ssn", "IP_ADDRESS": "ip_address"}
_SECRET_KEYS = {"bearertoken", "authorization", "api_key", "apikey", "token", "access_token", "password", "secret"}


def without_secrets(value: Any) -> Any:
    """``value`` with every secret-looking entry (bearer tokens, Authorization headers, API keys)
    replaced by ``"<removed>"``."""
    if isinstance(value, dict):
        return {k: ("<removed>" if str(k).lower().replace("-", "_") in _SECRET_KEYS and v else without_secrets(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


class ToolNodes:
    report: Report
    nodes: list[dict[str, Any]]

    def label(self, n: AbNode) -> str:
        raise NotImplementedError

    def new_id(self, base: str) -> str:
        raise NotImplementedError

    def cel(self, n: AbNode, kid: str, source: str, what: str) -> str:
        raise NotImplementedError

    def n_FileSearch(self, n: AbNode, kid: str) -> dict[str, Any]:
        store = str(n.config.get("vector_store_id") or "")
        collection = _slug(f"vs_{store}", "files") if store else "files"
        self.report.add("placeholder", kid, f"File search over OpenAI vector store {store or '(none chosen)'!r}: "
                        f"searches Keel collection {collection!r} instead",
                        f"keel context add {collection} PATH/TO/THE/FILES  (the documents the vector store held)")
        out: dict[str, Any] = {"type": "file_search", "collection": collection}
        query = _expr(n.config.get("query"))
        if query.strip():
            out["query"] = cel_string(query)
        else:
            self.report.add("mapped", kid, "File search query was empty: Keel searches for the run's input "
                            "(input_as_text)")
        if n.config.get("max_results"):
            out["max_results"] = int(n.config["max_results"])
        return out

    def n_MCP(self, n: AbNode, kid: str) -> dict[str, Any]:
        c = n.config
        url = c.get("url") or c.get("server_url")
        tool = c.get("toolName") or c.get("tool")
        if not url or not tool:
            self.report.add("placeholder", kid, "MCP node without a server URL and tool name: written with a "
                            "placeholder server", "set `server:` to your server (stdio:COMMAND or an http(s) URL) "
                            "and `tool:` to the tool to call")
            return {"type": "mcp", "server": "http://127.0.0.1:9/mcp", "tool": str(tool or "TODO_tool")}
        params = c.get("parameters") or {}
        if isinstance(params, str):
            try:
                params = json.loads(params) if params.strip() else {}
            except ValueError:
                raise NotImportable(f"{self.report.source}: MCP node {self.label(n)!r} ({n.id}): its parameters are "
                                    f"not JSON: {params[:80]!r}", hint="fix the parameters in Agent Builder") from None
        out: dict[str, Any] = {"type": "mcp", "server": str(url), "tool": str(tool)}
        if params:
            out["arguments"] = {k: json.dumps(v, ensure_ascii=False) for k, v in params.items()}
        if c.get("timeout"):
            out["timeout"] = float(c["timeout"])
        if c.get("bearerToken") or c.get("authType") not in (None, "none"):
            self.report.add("dropped", kid, "the MCP server's bearer token was not copied into the spec "
                            "(Keel's MCP node sends no headers, and specs are not the place for secrets)",
                            "serve the tool without a token on a trusted network, or run it as a stdio: server "
                            "whose env holds the token")
        return out

    def n_Guardrails(self, n: AbNode, kid: str) -> dict[str, Any]:
        source = _expr(n.config.get("expr")).strip() or "input"
        text = "input.output_text" if source == "input" else self.cel(n, kid, source, "text")
        checks: list[Any] = []
        for gr in n.config.get("guardrails") or []:
            checks.extend(self.guardrail(kid, gr))
        if not checks:
            checks = [{"type": "pii", "entities": []}]
            self.report.add("placeholder", kid, "Guardrails node has no checks (it passes everything): written "
                            "with a PII check of no entities, which also passes everything",
                            "list the checks you want under `checks:` (pii, jailbreak, moderation, ...)")
        out: dict[str, Any] = {"type": "guardrails", "checks": checks}
        if text != "input.output_text":
            out["text"] = text
        return out

    def guardrail(self, kid: str, gr: dict) -> list[Any]:
        kind = str(gr.get("type") or gr.get("name") or "").lower().replace(" ", "_")
        config = gr.get("config") or {}
        if kind == "moderation":
            cats = sorted({_MODERATION[c.split("/")[0]] for c in config.get("categories") or []
                           if c.split("/")[0] in _MODERATION})
            check: dict[str, Any] = {"type": "moderation"}
            if cats:
                check["categories"] = cats
            if config.get("categories"):
                self.report.add("mapped", kid, f"moderation categories {config['categories']} -> {cats} "
                                "(Keel's categories have no subcategories)")
            return [check]
        if kind == "jailbreak":
            check = {"type": "jailbreak"}
            if config.get("model"):
                check["model"] = _model(str(config["model"]))
            if "confidence_threshold" in config:
                self.report.add("changed", kid, f"jailbreak confidence_threshold {config['confidence_threshold']} "
                                "not carried over: Keel's threshold is a heuristic score (default 1)")
            return [check]
        if kind in ("pii", "contains_pii"):
            ents = [_PII[e] for e in config.get("entities") or [] if e in _PII]
            return [{"type": "pii", **({"entities": ents} if ents else {})}]
        self.report.add("placeholder", kid, f"guardrail {gr.get('name') or kind!r} has no Keel equivalent: not "
                        "checked", "add a `{type: custom, name: ..., model: ..., instructions: ...}` check that "
                        "describes it")
        return []
    def tool_placeholder(self, n: AbNode, kid: str, tool: dict) -> None:
        kind = tool.get("type", "tool")
        name = tool.get("name") or kind
        if kind == "function":
            params = ", ".join(f"{p}: {(s or {}).get('type', 'any')}"
                               for p, s in ((tool.get("parameters") or {}).get("properties") or {}).items())
            what = f"function tool {name}({params})"
            fix = (f"write {name} in Python and list it under the agent's `tools:` as `module:{name}` "
                   "(docs/workflows.md, Tools)")
        elif kind == "file_search":
            stores = tool.get("vector_store_ids") or []
            what = f"hosted file_search tool over vector stores {stores}"
            fix = "keel context add COLLECTION PATH, then put a file_search node before the agent"
        elif kind == "mcp":
            what = f"hosted MCP tool {tool.get('server_label') or tool.get('server_url') or ''}".strip()
            fix = "add the server under the agent's `mcp:` (stdio:COMMAND or its http(s) URL)"
        else:
            what = f"hosted {kind} tool"
            fix = "Keel has no hosted equivalent: write a Python function tool that does it, or remove it"
        note_id = self.new_id(f"{kid}_tool_{_slug(name, 'tool')}")
        self.nodes.append({"id": note_id, "type": "note", "title": f"PLACEHOLDER tool of {kid}",
                           "text": f"PLACEHOLDER: agent {kid} used the {what}; it is not in the spec. {fix}."})
        self.report.add("placeholder", kid, f"{what}: left out of the agent, noted in Note {note_id}", fix)
