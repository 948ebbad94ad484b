"""Request hygiene: body size limit, body read timeout, request ids, access records, redaction.

:class:`AccessLog` times every request (latency, time to first body byte, streamed or
not) and hands one record per request to the
:class:`~keel.operate.server.requestlog.RequestLog`, which writes it off the event
loop as a JSON access-log line (stderr, and ``access_log`` when set) and a
``serve_requests`` row. Headers and bodies are never logged; query values whose names
look secret are replaced, and :class:`RedactingFilter` scrubs anything shaped like a
Keel or provider key from every log record the process writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from keel.ids import new_id
from keel.secrets import scrub

__all__ = ["AccessLog", "BodyLimit", "RedactingFilter", "redact", "setup_logging"]

Scope = dict[str, Any]

_SECRET_PARAMS = re.compile(r"(?i)key|token|secret|password|auth")


def redact(text: str) -> str:
    """``text`` with anything shaped like a key, and every known secret (configured provider keys,
    the provider key of the request being served), replaced by ``[redacted]`` (:mod:`keel.secrets`)."""
    return scrub(text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "keel_redacted", False):  # the logger's filter did it; this is a handler's
            return True
        record.keel_redacted = True
        msg = record.getMessage()
        clean = redact(msg)
        if record.exc_info:
            # Tracebacks stay in the server's log (never the client's answer), scrubbed too.
            clean += "\n" + redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, ()
        return True


def setup_logging(access_log: Path | None) -> logging.Logger:
    """The ``keel.access`` logger; every handler of the root and uvicorn loggers is scrubbed."""
    log = logging.getLogger("keel.access")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        if access_log is not None:
            access_log.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(access_log, encoding="utf-8")
            fh.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(fh)
    for name in ("", "uvicorn", "uvicorn.error", "keel.access", "mcp"):
        lg = logging.getLogger(name)
        for h in lg.handlers:
            if not any(isinstance(f, RedactingFilter) for f in h.filters):
                h.addFilter(RedactingFilter())
        if not any(isinstance(f, RedactingFilter) for f in lg.filters):
            lg.addFilter(RedactingFilter())
    return log


def _json_error(status: int, message: str, hint: str, type_: str) -> bytes:
    return json.dumps({"error": {"type": type_, "code": None, "message": message, "field": "body",
                                 "param": "body", "hint": hint}}).encode()


async def _send_error(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Read the whole body first (at most ``max_bytes``, within ``timeout`` seconds), then replay it.

    An oversized body gets 413 and a slow one 408, before any route sees it.
    """

    def __init__(self, app: Any, *, max_bytes: int, timeout: float = 30.0) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout
        self._too_big = _json_error(413, f"the request body is larger than {max_bytes} bytes",
                                    "send a smaller body (the limit is max_body_bytes under [serve] in keel.toml)",
                                    "request_too_large")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        too_big = self._too_big
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_bytes:
                        await _send_error(send, 413, too_big)
                        return
                except ValueError:
                    await _send_error(send, 400, _json_error(400, "Content-Length is not a number",
                                                             "send a valid Content-Length", "invalid_request_error"))
                    return
        chunks, size, outcome = [], 0, "whole"
        try:
            # One deadline for the whole body; no task per receive() (as wait_for would make).
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    size += len(message.get("body", b""))
                    if size > self.max_bytes:
                        outcome = "too big"
                        break
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            await _send_error(send, 408, _json_error(408, f"the request body did not arrive within {self.timeout:g} s",
                                                     "send the body promptly", "request_timeout"))
            return
        if outcome == "too big":
            await _send_error(send, 413, too_big)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _query(raw: bytes) -> str:
    if not raw:
        return ""
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    return urlencode([(k, "[redacted]" if _SECRET_PARAMS.search(k) else v) for k, v in pairs])


class AccessLog:
    """Time each request and hand its record to a :class:`~keel.operate.server.requestlog.RequestLog`.

    Measures latency (until the last body byte), time to first body byte (``ttfb_ms``:
    what a streaming client waits for its first event) and whether the answer was a
    stream; reads what routes left on ``request.state`` (workflow, version, key_id,
    end_user, run_id, run_status, input/output tokens). Writing happens off the event loop.
    """

    def __init__(self, app: Any, *, sink: Any) -> None:
        self.app, self.sink = app, sink

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wall, started = time.time(), time.perf_counter()
        request_id = new_id()
        scope.setdefault("state", {})
        status, sent, ttfb, streamed = 500, 0, None, False

        async def send_wrapper(message: dict) -> None:
            nonlocal status, sent, ttfb, streamed
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                for name, value in message["headers"]:
                    if name.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        streamed = True
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body and ttfb is None:
                    ttfb = (time.perf_counter() - started) * 1000
                sent += len(body)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            ms = round((time.perf_counter() - started) * 1000, 3)
            state = scope.get("state", {})
            route = getattr(scope.get("route"), "path", None)
            if route is None and scope.get("root_path") and scope["path"].startswith("/mcp"):
                route = "/mcp"
            path = redact(scope["path"])
            line = {"ts": round(wall, 3), "event": "http", "request_id": request_id,
                    "method": scope["method"], "path": path, "query": _query(scope.get("query_string", b"")),
                    "route": route, "status": status, "ms": ms, "ttfb_ms": None if ttfb is None else round(ttfb, 3),
                    "bytes": sent, "streamed": streamed or None, "client": (scope.get("client") or ("", 0))[0],
                    "key_id": state.get("key_id"), "user": state.get("end_user"), "workflow": state.get("workflow"),
                    "version": state.get("version"), "run_id": state.get("run_id"),
                    "run_status": state.get("run_status")}
            row = (request_id, wall, scope["method"], path[:500], route, state.get("workflow"), state.get("version"),
                   state.get("key_id"), status, ms, None if ttfb is None else round(ttfb, 3),
                   state.get("input_tokens"), state.get("output_tokens"), int(streamed), state.get("run_id"),
                   state.get("run_status"))
            self.sink.put({k: v for k, v in line.items() if v not in (None, "")}, row)
