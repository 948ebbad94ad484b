"""``--http`` connectors (docs/connectors.md, "HTTP API connectors"): the built-in HTTP request
tool takes its hosts, methods and credential headers from the registry, against a real HTTP API
on 127.0.0.1 that wants a bearer token. The token reaches the API, never the spec, the model,
a trace, a run event or a file under KEEL_HOME in clear; publishing refuses widening the hosts
or using an MCP connector as the http tool; ``keel connectors test`` checks the token."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from keel.store import open_store
from keel.testing import scripted
from keel.workflows import SpecError, arun, publish

TOKEN = "weather-token-9d27c41e5b"


class _Api(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            body, status = b'{"error": "bad token"}', 401
        else:
            body, status = json.dumps({"city": self.path.rsplit("/", 1)[-1], "temp_c": 21}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def keel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _spec(path: Path, http: str = "{connector: weather}") -> Path:
    path.write_text(f"""
name: forecast
nodes:
  - {{id: start, type: start}}
  - id: clerk
    type: agent
    model: scripted:clerk
    http: {http}
    approval: {{http_request: never}}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: clerk}}
  - {{from: clerk, to: done}}
""")
    return path


def test_the_http_tool_uses_a_connectors_hosts_and_token(api: int, keel_home: Path, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{api}"
    add = keel("connectors", "add", "weather", "--http", base, "--header", "Authorization=Bearer ${WEATHER_TOKEN}",
               env={"WEATHER_TOKEN": TOKEN})
    assert add.returncode == 0, add.stderr
    test = keel("connectors", "test", "weather")
    assert test.returncode == 0 and "answered HTTP" in test.stdout, test.stderr
    show = keel("connectors", "show", "weather")
    doc = json.loads(show.stdout)
    assert doc["kind"] == "http" and doc["hosts"] == [f"127.0.0.1:{api}"] and doc["headers"] == ["Authorization"]

    store = open_store(keel_home)
    try:
        with scripted("clerk") as clerk:
            clerk.reply(tool_calls=[("http_request", {"url": f"{base}/weather/oslo", "method": "GET"})])
            clerk.reply("21 degrees")
            result = asyncio.run(arun(_spec(tmp_path / "f.yaml"), "weather in oslo?", store=store))
            assert result.status == "succeeded", result.error
            answer = json.loads(clerk.calls[1].messages[-1].content)
            assert answer["status"] == 200 and json.loads(answer["body"]) == {"city": "oslo", "temp_c": 21}
            assert all(TOKEN not in repr(c) for c in clerk.calls)  # the model never sees it
        rows = json.dumps([store.query(f"SELECT * FROM {t}") for t in ("trace_spans", "run_events")], default=str)
    finally:
        store.close()
    assert TOKEN not in rows
    assert TOKEN.encode() not in b"".join(p.read_bytes() for p in keel_home.rglob("*") if p.is_file())
    assert all(TOKEN not in o for o in (add.stdout, add.stderr, test.stdout, show.stdout))

    # Publishing: the spec may narrow the hosts, not widen them; an MCP connector is not an http tool.
    with pytest.raises(SpecError) as e:
        publish(_spec(tmp_path / "wide.yaml", "{connector: weather, allow_hosts: [evil.example.com]}"))
    assert "not among the hosts of connector 'weather'" in e.value.problems[0].message
    assert e.value.problems[0].path == "nodes[1].http.allow_hosts"
    with pytest.raises(SpecError, match="drop `headers`"):
        publish(_spec(tmp_path / "h.yaml", "{connector: weather, headers: {X: y}}"))
    assert keel("connectors", "add", "vault", "--server", f"{base}/mcp").returncode == 0
    with pytest.raises(SpecError, match="is an MCP server, not an HTTP API"):
        publish(_spec(tmp_path / "m.yaml", "{connector: vault}"))

    # A wrong token: `test` says the API refused it, and how to fix it.
    assert keel("connectors", "add", "weather", "--http", base, "--header", "Authorization=Bearer nope",
                "--replace").returncode == 0
    wrong = keel("connectors", "test", "weather")
    assert wrong.returncode != 0 and "refused the credentials (HTTP 401" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_http_connector_bad_input(keel_home: Path) -> None:
    for args, said in [(("--http", "ftp://x"), "is not an http(s):// URL"),
                       (("--http", "http://127.0.0.1:9", "--method", "FETCH"), "--method FETCH"),
                       (("--http", "http://127.0.0.1:9", "--env", "A=b"), "are for MCP servers"),
                       (("--server", "http://127.0.0.1:9/mcp", "--host", "x"), "are for an --http connector"),
                       ((), "give --server")]:
        r = keel("connectors", "add", "weather", *args)
        assert r.returncode != 0 and said in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
