"""The built-in HTTP request tool: an Agent node's ``http:`` field offers its model one tool
(``http_request`` by default) that calls URLs on allow-listed hosts only.

What the spec decides (:class:`keel.workflows.spec.HttpTool`), and the model cannot change:
the hosts (``api.example.com``, ``*.example.com``, ``127.0.0.1:8080`` with a port), the
methods, a timeout for the whole call, the most bytes of a response it reads, and fixed
headers (``${ENV_VAR}`` in a value is filled in from the environment at call time, so a key
never appears in the spec or to the model). Redirects are followed by hand, each hop checked
against the allow-list. A request with a body carries ``Idempotency-Key`` (the call's stable
key, :class:`~keel.workflows.tools.ToolContext`), so an API that honours it applies a call
repeated after a crash once.

Every refusal comes back to the model as a tool result starting ``error:`` that says what and
how to fix it (a host not allowed, a method not allowed, a timeout, a response too large), so it
can correct itself; none fails the node. The approval policy of the node (``approval:``, keyed by
the tool's name) applies as to a Python tool: ``approval: {http_request: always}`` makes every
call wait for a person.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from keel.models import Tool
from keel.workflows.tools import ToolContext

if TYPE_CHECKING:
    from keel.workflows.spec import HttpTool

__all__ = ["HttpRequestTool", "host_allowed"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_REDIRECTS = 5


def host_allowed(url: str, allow: list[str]) -> bool:
    """Whether ``url``'s host (and port) is on ``allow``: ``host`` (any port), ``host:port``,
    or ``*.domain`` (any subdomain of ``domain``, not ``domain`` itself)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for entry in allow:
        entry = entry.lower().strip()
        name, _, want_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if want_port and str(port) != want_port:
            continue
        if (name.startswith("*.") and host.endswith(name[1:])) or host == name:
            return True
    return False


@dataclass(frozen=True)
class HttpRequestTool:
    """The tool an Agent node's ``http:`` offers (same interface as a Python function tool)."""

    config: HttpTool

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def tool(self) -> Tool:
        c = self.config
        about = c.description or (
            f"Make an HTTP request and get the response status and body. Allowed hosts: "
            f"{', '.join(c.allow_hosts)}. Allowed methods: {', '.join(c.methods)}.")
        params = {
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "Absolute http(s) URL, query string included."},
                "method": {"type": "string", "enum": list(c.methods)},
                "body": {"type": "string", "description": "Request body (JSON as text), for POST, PUT, PATCH."},
            },
            "required": ["url", "method"],
            "additionalProperties": False,
        }
        return Tool(name=c.name, description=about, parameters=params)

    async def call(self, arguments: dict[str, Any], ctx: ToolContext) -> Any:
        c = self.config
        url, method = str(arguments.get("url", "")), str(arguments.get("method", "GET")).upper()
        body = arguments.get("body")
        if method not in c.methods:
            return f"error: method {method} is not allowed for {c.name}; use one of {', '.join(c.methods)}"
        try:
            headers = {k: _ENV.sub(lambda m: os.environ[m.group(1)], v) for k, v in c.headers.items()}
        except KeyError as e:
            return f"error: the tool is not configured: environment variable {e.args[0]} is not set"
        if body is not None:
            headers.setdefault("Idempotency-Key", ctx.idempotency_key)
            headers.setdefault("Content-Type", "application/json")
        try:
            return await asyncio.wait_for(self._request(method, url, headers, body), timeout=c.timeout)
        except TimeoutError:
            return (f"error: {method} {url} took longer than the {c.timeout:g} s timeout; "
                    "try a smaller request or another endpoint")

    async def _request(self, method: str, url: str, headers: dict[str, str], body: Any) -> Any:
        import httpx

        c = self.config
        async with httpx.AsyncClient(timeout=c.timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(_MAX_REDIRECTS + 1):
                problem = self._refuse(url)
                if problem:
                    return problem
                try:
                    async with client.stream(method, url, headers=headers,
                                             content=body.encode() if isinstance(body, str) else None) as r:
                        if r.is_redirect and "location" in r.headers:
                            url = urljoin(url, r.headers["location"])
                            if r.status_code in (301, 302, 303):
                                method, body = ("GET" if method != "HEAD" else "HEAD"), None
                            continue
                        return await self._read(r, method, url)
                except httpx.HTTPError as e:
                    return f"error: {method} {url} failed: {type(e).__name__}: {e}"
            return f"error: {method} {url}: more than {_MAX_REDIRECTS} redirects"

    def _refuse(self, url: str) -> str | None:
        c = self.config
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"error: {url!r} is not an absolute http(s) URL"
        if not host_allowed(url, c.allow_hosts):
            return (f"error: host {parts.netloc} is not allowed for {c.name}; allowed hosts: "
                    f"{', '.join(c.allow_hosts)}")
        return None

    async def _read(self, r: Any, method: str, url: str) -> Any:
        limit = self.config.max_response_bytes
        too_big = (f"error: the response of {method} {url} is larger than max_response_bytes={limit:,}; "
                   "ask for less (a narrower query, a smaller page)")
        declared = r.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return too_big
        data = bytearray()
        async for chunk in r.aiter_bytes():
            data += chunk
            if len(data) > limit:  # stop reading: the rest is never downloaded
                return too_big
        return {"status": r.status_code, "content_type": r.headers.get("content-type", ""),
                "body": bytes(data).decode(r.encoding or "utf-8", errors="replace")}
