"""Optional export of run traces over OTLP/HTTP (protobuf), next to Keel's own store.

Set ``KEEL_OTLP_ENDPOINT`` to a collector's base URL (``http://127.0.0.1:4318``; ``/v1/traces``
is appended unless the URL already ends with it) and install
``opentelemetry-exporter-otlp-proto-http``. Headers (an API key for a hosted backend) come from
the exporter's standard ``OTEL_EXPORTER_OTLP_HEADERS``; ``KEEL_OTLP_TIMEOUT`` caps each export
(seconds, default 5).

What is sent: when an engine finishes driving a run (it ended, or parked on an approval), the
spans of that trace which ended during the drive, with the same trace and span ids and
attributes as ``trace_spans`` (so a backend's tree matches ``keel runs show``). A run's
``workflow`` span ends with the run, so it goes with the last drive. A step re-executed after a
crash sends its span again under the same id.

Export never slows or fails a run: spans go to a queue that one background thread drains;
a backend that is down costs a logged warning. :meth:`OtlpExporter.flush` (called by
``Engine.aclose``) waits for the queue, at most the timeout.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
from typing import Any

from keel.errors import UserError
from keel.workflows.tracing import Span

__all__ = ["ENDPOINT_ENV", "OtlpExporter", "exporter_from_env"]

ENDPOINT_ENV = "KEEL_OTLP_ENDPOINT"
TIMEOUT_ENV = "KEEL_OTLP_TIMEOUT"

log = logging.getLogger("keel.otlp")

_exporters: dict[str, OtlpExporter] = {}
_lock = threading.Lock()


def exporter_from_env() -> OtlpExporter | None:
    """The process's exporter for ``KEEL_OTLP_ENDPOINT``, or None when it is unset."""
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    if not endpoint:
        return None
    with _lock:
        if endpoint not in _exporters:
            timeout = float(os.environ.get(TIMEOUT_ENV, "5") or 5)
            _exporters[endpoint] = OtlpExporter(endpoint, timeout=timeout)
        return _exporters[endpoint]


def _attribute(value: Any) -> Any:
    """An OpenTelemetry attribute value: a primitive or a list of one primitive type (else JSON)."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list | tuple) and value and all(isinstance(v, bool) for v in value):
        return list(value)
    if isinstance(value, list | tuple) and value and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return list(value)
    return json.dumps(value, ensure_ascii=False, default=str)


class OtlpExporter:
    """Sends Keel spans to one OTLP/HTTP endpoint from a background thread."""

    def __init__(self, endpoint: str, *, timeout: float = 5.0, service_name: str = "keel") -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
        except ImportError:
            raise UserError(f"{ENDPOINT_ENV} is set, but the OTLP exporter is not installed",
                            hint="pip install opentelemetry-exporter-otlp-proto-http, or unset "
                                 f"{ENDPOINT_ENV}") from None
        from keel import __version__

        url = endpoint.rstrip("/")
        self.url = url if url.endswith("/v1/traces") else url + "/v1/traces"
        self.timeout = timeout
        self._exporter = OTLPSpanExporter(endpoint=self.url, timeout=timeout)
        self._resource = Resource.create({"service.name": service_name, "service.version": __version__})
        self._queue: queue.Queue[list[Span]] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._warned = False
        self._thread = threading.Thread(target=self._drain, name="keel-otlp", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def submit(self, spans: list[Span]) -> None:
        """Queue ``spans`` (ended ones; others are skipped) for export."""
        spans = [s for s in spans if s.ended_at is not None]
        if not spans:
            return
        with self._idle:
            self._pending += 1
        self._queue.put(spans)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was sent (or failed); False if ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0,
                                       timeout=self.timeout * 2 if timeout is None else timeout)

    def _drain(self) -> None:
        while True:
            spans = self._queue.get()
            try:
                result = self._exporter.export([self._readable(s) for s in spans])
                if getattr(result, "name", "SUCCESS") != "SUCCESS":
                    self._warn(f"the collector at {self.url} did not accept {len(spans)} spans")
            except Exception as e:  # a backend that is down must never affect runs
                self._warn(f"cannot export spans to {self.url}: {type(e).__name__}: {e}")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _warn(self, message: str) -> None:
        log.warning(message) if not self._warned else log.debug(message)
        self._warned = True

    def _readable(self, span: Span) -> Any:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        from keel import __version__

        trace_id = int(span.trace_id, 16)
        flags = TraceFlags(TraceFlags.SAMPLED)
        context = SpanContext(trace_id, int(span.span_id, 16), is_remote=False, trace_flags=flags)
        parent = SpanContext(trace_id, int(span.parent_id, 16), is_remote=False, trace_flags=flags) \
            if span.parent_id else None
        attributes = {k: _attribute(v) for k, v in span.attributes.items() if v is not None}
        attributes["keel.span.kind"] = span.kind
        if span.run_id:
            attributes.setdefault("keel.run.id", span.run_id)
        status = Status(StatusCode.ERROR, span.error or "") if span.status == "error" else \
            Status(StatusCode.OK) if span.status == "ok" else Status(StatusCode.UNSET)
        return ReadableSpan(
            name=span.name, context=context, parent=parent, resource=self._resource, attributes=attributes,
            kind=SpanKind.CLIENT if span.kind in ("model", "tool") else SpanKind.INTERNAL, status=status,
            start_time=int(span.started_at * 1e9), end_time=int((span.ended_at or span.started_at) * 1e9),
            instrumentation_scope=InstrumentationScope("keel.workflows", __version__))
