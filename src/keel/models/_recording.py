"""Where model-call records go: the store under ``KEEL_HOME`` unless told otherwise.

Recording never breaks a model call: if the store cannot be written, Keel warns
once on stderr and the call's result is returned as usual.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol

from keel.store.model_calls import ModelCallRecord

__all__ = ["CallContext", "Recorder", "call_context", "record_call", "use_recorder"]


class Recorder(Protocol):
    def record(self, rec: ModelCallRecord) -> None: ...


class CallContext:
    """Trace identifiers and tags attached to every call made inside :func:`call_context`."""

    def __init__(self, trace_id: str | None = None, span_id: str | None = None,
                 tags: dict[str, str] | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.tags = tags or {}


_recorder: ContextVar[Recorder | None] = ContextVar("keel_recorder", default=None)
_context: ContextVar[CallContext | None] = ContextVar("keel_call_context", default=None)
_default_lock = threading.Lock()
_default_recorders: dict[tuple[str | None, str, str | None], Recorder] = {}
_warned = False


@contextmanager
def use_recorder(recorder: Recorder | None) -> Iterator[None]:
    """Send records made inside the block to ``recorder`` instead of the default store."""
    token = _recorder.set(recorder)
    try:
        yield
    finally:
        _recorder.reset(token)


@contextmanager
def call_context(*, trace_id: str | None = None, span_id: str | None = None,
                 tags: dict[str, str] | None = None) -> Iterator[CallContext]:
    """Attach trace ids and tags to the model calls made inside the block."""
    ctx = CallContext(trace_id, span_id, tags)
    token = _context.set(ctx)
    try:
        yield ctx
    finally:
        _context.reset(token)


def current_context() -> CallContext | None:
    return _context.get()


def _default_recorder() -> Recorder:
    # Reading settings costs milliseconds; a call costs far less on a local model. The home
    # depends only on KEEL_HOME and the cwd (where keel.toml and .env are read), and the store on
    # KEEL_STORE_URL besides (or keel.toml), so key on those.
    key = (os.environ.get("KEEL_HOME"), os.getcwd(), os.environ.get("KEEL_STORE_URL"))
    with _default_lock:
        rec = _default_recorders.get(key)
        if rec is None:
            from keel.config import get_settings
            from keel.store import ModelCalls, open_store

            rec = _default_recorders[key] = ModelCalls(open_store(get_settings().home))
        return rec


def record_call(rec: ModelCallRecord) -> None:
    global _warned
    try:
        recorder = _recorder.get()
        (recorder if recorder is not None else _default_recorder()).record(rec)
    except Exception as e:  # recording must never fail the call it records
        if not _warned:
            _warned = True
            print(f"keel: warning: could not record a model call: {e}", file=sys.stderr)
