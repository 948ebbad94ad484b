"""The tool-family parts of a TypeScript export, rewritten in the Python export's shape.

Module level: guardrail configs (``const guardrailsConfig = { guardrails: [...] }``) and the
hosted tools an Agent lists (``fileSearchTool([...])``, ``hostedMcpTool({...})``,
``webSearchTool()``, ``codeInterpreterTool()``, ``imageGenerationTool()``). In ``runWorkflow``:
a File search step (``(await client.vectorStores.search(STORE, {query, max_num_results}))
.data.map(...)``) and an MCP step (an ``@modelcontextprotocol/sdk`` client: ``new
SSEClientTransport(new URL(url), {requestInit: {headers}})``, ``StreamableHTTPClientTransport``
or ``StdioClientTransport({command, args})``, then ``callTool({name, arguments})``).
Guardrails steps need no rewrite beyond :func:`~.typescript_syntax.js_to_py`: their names
(``guardrailsInputtext``, ``runGuardrails``, ``guardrailsHastripwire``) become the Python
export's. Secrets in headers are carried as the Python export carries them, and the mapping
reports them instead of writing them into the spec.
"""

from __future__ import annotations

import json
import re

from keel.workflows.importers.typescript_syntax import balanced, fields, js_to_py, snake, split_top

__all__ = ["definitions", "step"]

_HOSTED = {"fileSearchTool": "FileSearchTool", "hostedMcpTool": "HostedMCPTool", "webSearchTool": "WebSearchTool",
           "codeInterpreterTool": "CodeInterpreterTool", "imageGenerationTool": "ImageGenerationTool",
           "computerTool": "ComputerTool"}
_CONST_RE = re.compile(r"^(?:export\s+)?const (\w+)\s*(?::\s*[\w<>\[\]]+\s*)?=\s*", re.M)
_FILE_SEARCH_RE = re.compile(r"^(filesearch\w*)\s*=\s*\(\s*await\s+\w+\.vectorStores\.search\(", re.I)
_TRANSPORT_RE = re.compile(r"^(mcp\w*Transport\d*)\s*=\s*new\s+(SSEClientTransport|StreamableHTTPClientTransport|"
                           r"StdioClientTransport)\(")
_CALL_TOOL_RE = re.compile(r"^(mcp\w*)\s*=\s*await\s+(\w+)\.callTool\(")


def _args(text: str, open_at: int) -> list[str] | None:
    """The top-level arguments of the call whose ``(`` is at ``open_at``."""
    end = balanced(text, open_at)
    return None if end < 0 else split_top(text[open_at + 1:end - 1])


def _object(literal: str) -> dict[str, str]:
    literal = literal.strip()
    return dict(fields(literal[1:-1])) if literal.startswith("{") and literal.endswith("}") else {}


def definitions(head: str) -> list[str]:
    """Python lines for the guardrail configs and hosted tools defined before ``runWorkflow``."""
    out: list[str] = []
    for m in _CONST_RE.finditer(head):
        name, at = m.group(1), m.end()
        if re.fullmatch(r"guardrails\w*Config\d*", name) and head[at:at + 1] == "{":
            end = balanced(head, at)
            if end > 0:
                out.append(f"{snake(name)} = {js_to_py(head[at:end])}")
            continue
        call = re.match(r"(\w+)\(", head[at:])
        if call is None or call.group(1) not in _HOSTED:
            continue
        args = _args(head, at + call.end() - 1) or []
        kind = call.group(1)
        if kind == "fileSearchTool":
            stores = js_to_py(args[0]) if args else "[]"
            out.append(f"{snake(name)} = FileSearchTool(vector_store_ids={stores})")
        elif kind == "hostedMcpTool":
            options = _object(args[0]) if args else {}
            config = {"type": "mcp"}
            for ts_key, py_key in (("serverLabel", "server_label"), ("serverUrl", "server_url")):
                if ts_key in options:
                    config[py_key] = js_to_py(options[ts_key])
            items = ", ".join(f"{json.dumps(k)}: {v if k != 'type' else json.dumps(v)}" for k, v in config.items())
            out.append(f"{snake(name)} = HostedMCPTool(tool_config={{{items}}})")
        else:
            out.append(f"{snake(name)} = {_HOSTED[kind]}()")
    return out


def step(stmt: str) -> str | None:
    """The Python export's line for a File search or MCP statement of ``runWorkflow``; None for
    any other statement."""
    m = _FILE_SEARCH_RE.match(stmt)
    if m:
        args = _args(stmt, m.end() - 1)
        if not args:
            return None
        options = _object(args[1]) if len(args) > 1 else {}
        query = options.get("query", '""')
        limit = options.get("max_num_results", options.get("maxNumResults", "10"))
        return (f"{snake(m.group(1))} = client.vector_stores.search(vector_store_id={js_to_py(args[0])}, "
                f"query={js_to_py(query)}, max_num_results={js_to_py(limit)})")
    m = _TRANSPORT_RE.match(stmt)
    if m:
        args = _args(stmt, m.end() - 1) or []
        var, kind = snake(m.group(1)), m.group(2)
        if kind == "StdioClientTransport":
            options = _object(args[0]) if args else {}
            command, argv = js_to_py(options.get("command", '""')), js_to_py(options.get("args", "[]"))
            return f"{var} = StdioClientTransport(command={command}, args={argv})"
        url = args[0] if args else '""'
        inner = re.fullmatch(r"new\s+URL\((.*)\)", url, re.S)
        url = inner.group(1) if inner else url
        options = _object(args[1]) if len(args) > 1 else {}
        headers = options.get("headers") or _object(options.get("requestInit", "{}")).get("headers") or "{}"
        return f"{var} = SSEClientTransport(url={js_to_py(url)}, headers={js_to_py(headers)})"
    m = _CALL_TOOL_RE.match(stmt)
    if m:
        args = _args(stmt, m.end() - 1) or []
        options = _object(args[0]) if args else {}
        return (f"{snake(m.group(1))} = await {snake(m.group(2))}.call_tool(name={js_to_py(options.get('name', 'None'))}, "
                f"arguments={js_to_py(options.get('arguments', '{}'))})")
    return None
