"""The built-in HTTP request tool (issue 19): an Agent node's ``http:`` against a real HTTP server on
127.0.0.1 — an allowed host answers, another host and a redirect to it are refused, a slow answer
times out, a large one is cut off unread, methods are limited, approvals apply, and spec mistakes
point at their line."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from keel.testing import scripted
from keel.workflows import SpecError, aapprove, arun, validate
from keel.workflows.http_tool import host_allowed


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict] = []  # noqa: RUF012  (the server's record of what reached it)
    release = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Transfer-Encoding" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
        port = self.server.server_address[1]
        if self.path.startswith("/order/7"):
            self._send(200, json.dumps({"order": 7, "status": "shipped"}).encode(),
                       {"Content-Type": "application/json"})
        elif self.path == "/slow":
            self.release.wait(10)  # held until the test ends: the tool must give up first
            self._send(200, b"late")
        elif self.path == "/big":  # 2 MB with no Content-Length: the tool must stop reading
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(32):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/away":
            self._send(302, b"", {"Location": f"http://localhost:{port}/order/7"})
        else:
            self._send(404, b"no such page")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body.decode()})
        self._send(201, b'{"created": true}', {"Content-Type": "application/json"})


@pytest.fixture
def server() -> Iterator[int]:
    _Handler.seen = []
    _Handler.release = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    _Handler.release.set()
    httpd.shutdown()
    httpd.server_close()


def _spec(port: int, http_extra: str = "", node_extra: str = "") -> str:
    return f"""
    name: fetcher
    nodes:
      - {{id: start, type: start}}
      - id: clerk
        type: agent
        model: scripted:clerk
        instructions: Look orders up with the HTTP tool.
        http:
          allow_hosts: ["127.0.0.1:{port}"]
          timeout: 1
          max_response_bytes: 100000
          headers: {{X-Api-Key: "${{SHOP_KEY}}"}}
          {http_extra}
        {node_extra}
      - {{id: done, type: end}}
    edges:
      - {{from: start, to: clerk}}
      - {{from: clerk, to: done}}
    """


async def _tool_result(path, store, url: str, method: str = "GET", **args: str) -> str:
    """Run the workflow once with the model calling the tool on ``url``; the tool message the model
    got back next."""
    with scripted("clerk") as clerk:
        clerk.reply(tool_calls=[("http_request", {"url": url, "method": method, **args})])
        clerk.reply("done")
        result = await arun(path, "order 7?", store=store)
    assert result.status == "succeeded", result.error
    tool_message = clerk.calls[1].messages[-1]
    assert tool_message.role == "tool"
    return tool_message.content


async def test_an_allowed_host_answers_with_status_and_body(server, spec_file, store, monkeypatch) -> None:
    monkeypatch.setenv("SHOP_KEY", "k-123")
    path = spec_file(_spec(server))
    text = await _tool_result(path, store, f"http://127.0.0.1:{server}/order/7?full=1")
    got = json.loads(text)
    assert got["status"] == 200 and json.loads(got["body"]) == {"order": 7, "status": "shipped"}
    assert _Handler.seen[-1]["path"] == "/order/7?full=1"
    assert _Handler.seen[-1]["headers"]["X-Api-Key"] == "k-123"  # from the environment, not the spec
    # the model saw the tool with the hosts and methods in its description
    with scripted("clerk") as clerk:
        clerk.reply("no need")
        await arun(path, "hi", store=store)
    [offered] = clerk.calls[0].tools
    assert offered.name == "http_request" and f"127.0.0.1:{server}" in offered.description
    assert offered.parameters["properties"]["method"]["enum"] == ["GET"]


async def test_another_host_and_a_redirect_to_it_are_refused(server, spec_file, store, monkeypatch) -> None:
    monkeypatch.setenv("SHOP_KEY", "k")
    path = spec_file(_spec(server))
    text = await _tool_result(path, store, f"http://localhost:{server}/order/7")
    assert text.startswith(f"error: host localhost:{server} is not allowed") and f"127.0.0.1:{server}" in text
    assert _Handler.seen == []  # never sent
    text = await _tool_result(path, store, f"http://127.0.0.1:{server}/away")
    assert text.startswith(f"error: host localhost:{server} is not allowed")
    assert [s["path"] for s in _Handler.seen] == ["/away"]  # the redirect was not followed
    text = await _tool_result(path, store, "file:///etc/passwd")
    assert "is not an absolute http(s) URL" in text


async def test_a_slow_server_times_out(server, spec_file, store, monkeypatch) -> None:
    monkeypatch.setenv("SHOP_KEY", "k")
    path = spec_file(_spec(server))
    text = await _tool_result(path, store, f"http://127.0.0.1:{server}/slow")
    assert text.startswith(f"error: GET http://127.0.0.1:{server}/slow took longer than the 1 s timeout")


async def test_a_response_over_the_size_limit_is_not_read(server, spec_file, store, monkeypatch) -> None:
    monkeypatch.setenv("SHOP_KEY", "k")
    path = spec_file(_spec(server))
    text = await _tool_result(path, store, f"http://127.0.0.1:{server}/big")
    assert "is larger than max_response_bytes=100,000" in text and "x" * 100 not in text


async def test_methods_are_limited_and_approval_applies(server, spec_file, store, monkeypatch) -> None:
    monkeypatch.setenv("SHOP_KEY", "k")
    # a method the spec does not list is not in the tool's schema: the model layer sends the call back
    with scripted("clerk") as clerk:
        clerk.reply(tool_calls=[("http_request", {"url": f"http://127.0.0.1:{server}/orders", "method": "POST"})])
        clerk.reply("sorry")
        result = await arun(spec_file(_spec(server)), "order a kettle", store=store)
    assert result.output == "sorry" and "'POST' is not one of ['GET']" in clerk.calls[1].messages[-1].content
    assert _Handler.seen == []
    path = spec_file(_spec(server, "methods: [GET, POST]", "approval: {http_request: always}"), "post.yaml")
    with scripted("clerk") as clerk:
        clerk.reply(tool_calls=[("http_request", {"url": f"http://127.0.0.1:{server}/orders", "method": "POST",
                                                  "body": '{"item": "kettle"}'})])
        waiting = await arun(path, "order a kettle", store=store)
        assert waiting.status == "waiting", waiting.error
        assert "http_request" in waiting.approval.message and _Handler.seen == []  # nothing sent yet
        clerk.reply("ordered")
        done = await aapprove(waiting.approval.id, by="lin", store=store)
    assert done.status == "succeeded", done.error
    [post] = _Handler.seen
    assert post["body"] == '{"item": "kettle"}'
    assert post["headers"]["Idempotency-Key"].startswith(done.run_id)  # a retried call is the same call
    assert json.loads(clerk.calls[1].messages[-1].content)["status"] == 201


def test_spec_mistakes_point_at_their_line(spec_file) -> None:
    bad = spec_file(_spec(1234).replace('allow_hosts: ["127.0.0.1:1234"]', "allow_hosts: []"))
    with pytest.raises(SpecError) as e:
        validate(bad)
    [problem] = e.value.problems
    assert problem.path == "nodes[1].http.allow_hosts" and problem.line == 9  # the allow_hosts line
    bad = spec_file(_spec(1234, "methods: [FETCH]"), "m.yaml")
    with pytest.raises(SpecError, match="methods"):
        validate(bad)
    # an approval key naming the HTTP tool is known; a misspelt one is not
    ok = spec_file(_spec(1234, node_extra="approval: {http_request: always}"), "ok.yaml")
    validate(ok)
    with pytest.raises(SpecError, match="approval names tool 'http_requests'"):
        validate(spec_file(ok.read_text().replace("{http_request: always}", "{http_requests: always}"), "typo.yaml"))


def test_host_patterns() -> None:
    assert host_allowed("https://api.example.com/x", ["api.example.com"])
    assert host_allowed("https://eu.api.example.com/x", ["*.example.com"])
    assert not host_allowed("https://example.com/x", ["*.example.com"])
    assert not host_allowed("https://evilexample.com/x", ["*.example.com", "example.com"])
    assert host_allowed("http://127.0.0.1:8080/x", ["127.0.0.1:8080"])
    assert not host_allowed("http://127.0.0.1:8081/x", ["127.0.0.1:8080"])
    assert not host_allowed("https://api.example.com.evil.net/", ["api.example.com"])
    assert host_allowed("https://API.Example.com/", ["api.example.com"])
