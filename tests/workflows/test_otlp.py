"""Optional OTLP export: a run's spans reach a real OTLP/HTTP receiver on 127.0.0.1 with the ids,
parents and GenAI attributes stored in Keel's own trace."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from keel.testing import scripted
from keel.workflows import Runs, Spans, aapprove, arun

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.workflows import tools_for_tests


@pytest.fixture
def receiver():
    """A minimal OTLP/HTTP collector: it keeps every decoded span and answers 200."""
    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for rs in request.resource_spans:
                service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
                for ss in rs.scope_spans:
                    received.extend((self.path, service, s) for s in ss.spans)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


FLOW = """
name: traced
nodes:
  - {id: start, type: start}
  - id: bot
    type: agent
    model: scripted:bot
    tools: ["tests.workflows.tools_for_tests:lookup_order"]
  - {id: ask, type: human_approval, message: "ok?"}
  - {id: done, type: end}
  - {id: declined, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: ask}
  - {from: ask, port: approved, to: done}
  - {from: ask, port: rejected, to: declined}
"""


async def test_run_spans_are_exported_over_otlp_http(spec_file, store, receiver, monkeypatch) -> None:
    url, received = receiver
    monkeypatch.setenv("KEEL_OTLP_ENDPOINT", url)
    assert tools_for_tests.lookup_order
    with scripted("bot") as bot:
        bot.reply(tool_calls=[("lookup_order", {"order_id": 7})])
        bot.reply("delivered")
        waiting = await arun(spec_file(FLOW), "where is 7", store=store)
    assert waiting.status == "waiting"
    first = [s for _, _, s in received]
    assert {s.name for s in first} >= {"node start", "node bot", "chat scripted:bot", "execute_tool lookup_order"}
    assert "workflow traced" not in {s.name for s in first}  # it ends with the run
    done = await aapprove(waiting.approval.id, store=store)
    assert done.status == "succeeded"

    stored = {s.span_id: s for s in Spans(store).for_trace(Runs(store).get(done.run_id).trace_id)}
    sent = {s.span_id.hex(): s for _, _, s in received}
    assert set(sent) == set(stored)  # every span, with Keel's own ids
    assert all(path == "/v1/traces" and service == "keel" for path, service, _ in received)
    for span_id, s in sent.items():
        mine = stored[span_id]
        assert s.trace_id.hex() == mine.trace_id and s.name == mine.name
        assert (s.parent_span_id.hex() or None) == mine.parent_id
        assert s.start_time_unix_nano == int(mine.started_at * 1e9)
    models = [s for s in sent.values() if s.name == "chat scripted:bot"]
    assert len(models) == 2
    for model in models:
        attrs = {a.key: a.value for a in model.attributes}
        assert attrs["gen_ai.operation.name"].string_value == "chat"
        assert attrs["gen_ai.request.model"].string_value == "bot"
        assert attrs["gen_ai.usage.input_tokens"].int_value >= 0
        assert attrs["gen_ai.response.finish_reasons"].array_value.values[0].string_value
        assert attrs["keel.span.kind"].string_value == "model"
    [tool] = [s for s in sent.values() if s.name == "execute_tool lookup_order"]
    assert {a.key: a.value for a in tool.attributes}["gen_ai.tool.name"].string_value == "lookup_order"


async def test_a_collector_that_is_down_never_fails_a_run(spec_file, store, monkeypatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("KEEL_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KEEL_OTLP_TIMEOUT", "1")
    path = spec_file("""
    name: quiet
    nodes:
      - {id: start, type: start}
      - {id: done, type: end}
    edges:
      - {from: start, to: done}
    """)
    result = await arun(path, "hi", store=store)
    assert result.status == "succeeded" and result.output == "hi"
