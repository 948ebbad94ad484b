"""A real HTTP server on 127.0.0.1 that answers like an OpenAI-compatible endpoint.

It stands in for a remote paid model (which cannot run here) *behind* Keel's
real client code: the official ``openai`` client, real sockets, real HTTP.
Queue answers with :meth:`OpenAIStub.answer` / :meth:`OpenAIStub.status`; each
request takes the next one; every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Planned:
    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content: str = ""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    delay: float = 0.0
    gate: threading.Event | None = None
    """When set: a streamed answer pauses after its first chunk until the gate opens (at most 20 s)."""
    paused: bool = False
    """True while the stream waits at its gate."""
    echo_key: bool = False
    """When set: the error body quotes the request's whole Authorization header (as careless
    providers do in a 401)."""


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class OpenAIStub:
    def __init__(self) -> None:
        self.plan: deque[Planned] = deque()
        self.requests: list[Seen] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def answer(self, content: str = "", *, tool_calls: list[tuple[str, str]] | None = None,
               usage: dict[str, Any] | None = None, delay: float = 0.0,
               gate: threading.Event | None = None) -> OpenAIStub:
        self.plan.append(Planned(content=content, tool_calls=tool_calls or [], usage=usage, delay=delay, gate=gate))
        return self

    def status(self, code: int, message: str = "error", headers: dict[str, str] | None = None) -> OpenAIStub:
        self.plan.append(Planned(status=code, body={"error": {"message": message, "type": "stub"}},
                                 headers=headers or {}))
        return self

    def refuse_key(self, code: int = 401) -> OpenAIStub:
        """Answer ``code`` with a body that echoes the key the request carried, in full."""
        self.plan.append(Planned(status=code, echo_key=True))
        return self

    def start(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # /v1/models
                self._json(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
                planned = stub.plan.popleft() if stub.plan else Planned(
                    status=500, body={"error": {"message": "stub has no answer left"}})
                if planned.delay:
                    time.sleep(planned.delay)
                if planned.echo_key:
                    sent = self.headers.get("authorization", "")
                    self._json(planned.status, {"error": {
                        "message": f"Incorrect API key provided: {sent.removeprefix('Bearer ')} "
                                   f"(header was {sent!r})", "type": "invalid_request_error"}})
                elif planned.status != 200:
                    self._json(planned.status, planned.body or {}, planned.headers)
                elif self.path.endswith("/responses"):
                    self._json(200, _response(body, planned))
                elif body.get("stream"):
                    self._stream(body, planned)
                else:
                    self._json(200, _completion(body, planned))

            def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], planned: Planned) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0,
                        "model": body.get("model", "stub")}
                text = planned.content
                for i in range(0, len(text), 5):
                    chunk = {**base, "choices": [{"index": 0, "delta": {"content": text[i:i + 5]},
                                                  "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    if i == 0 and planned.gate is not None:
                        planned.paused = True
                        planned.gate.wait(20)
                        planned.paused = False
                for n, (name, args) in enumerate(planned.tool_calls):
                    chunk = {**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                        {"index": n, "id": f"call_{n}", "type": "function",
                         "function": {"name": name, "arguments": args}}]}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                finish = "tool_calls" if planned.tool_calls else "stop"
                last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
                self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                usage = {**base, "choices": [], "usage": planned.usage or _usage(text)}
                self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout test) leaves a broken pipe: expected, not news.
        pass


def _usage(text: str) -> dict[str, Any]:
    return {"prompt_tokens": 11, "completion_tokens": max(len(text.split()), 1), "total_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 0}}


def _completion(body: dict[str, Any], planned: Planned) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": planned.content or None}
    if planned.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": args}}
            for n, (name, args) in enumerate(planned.tool_calls)
        ]
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0,
        "model": body.get("model", "stub"),
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if planned.tool_calls else "stop"}],
        "usage": planned.usage or _usage(planned.content),
    }


def _response(body: dict[str, Any], planned: Planned) -> dict[str, Any]:
    """A Responses API answer (non-streaming)."""
    output: list[dict[str, Any]] = []
    if planned.content:
        output.append({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": planned.content, "annotations": []}]})
    for n, (name, args) in enumerate(planned.tool_calls):
        output.append({"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": name,
                       "arguments": args, "status": "completed"})
    return {
        "id": "resp_stub", "object": "response", "created_at": 0, "status": "completed",
        "model": body.get("model", "stub"), "output": output,
        "usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13,
                  "input_tokens_details": {"cached_tokens": 1},
                  "output_tokens_details": {"reasoning_tokens": 2}},
    }
