"""A FastAPI app serving only the UI, for running it without ``keel serve``:

    uvicorn --factory keel.operate.ui.app:create_app

``keel serve`` includes the same router in the full server (with API keys, the
workflows API and the OpenAI-compatible endpoint); use that in production. This app
keeps the same access log as the server (``serve_requests``) so the dashboard has
requests to show. It has no API keys, so it is open mode: it answers only clients on
loopback, addressed to a loopback ``Host`` (docs/security.md, "Open mode and browsers").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse

from keel.operate.server.auth import check_open_client
from keel.operate.server.errors import ApiError
from keel.operate.server.origin import OriginGuard
from keel.operate.ui.api import router
from keel.store import SQLiteStore, open_store

__all__ = ["create_app"]


class _LoopbackOnly:
    """ASGI middleware: this app has no keys, so, like an open ``keel serve``, it answers only
    clients on loopback (:func:`~keel.operate.server.auth.check_open_client`), on every path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            try:
                check_open_client(client[0] if client else None)
            except ApiError as e:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await e.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _AccessLog:
    """ASGI middleware: one ``serve_requests`` row per HTTP request, with time to first byte."""

    def __init__(self, app: Any, store: Callable[[], SQLiteStore]) -> None:
        self.app, self.store = app, store

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, perf = time.time(), time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "ttfb": None, "streamed": False}

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["streamed"] = any(k == b"content-type" and v.startswith(b"text/event-stream")
                                       for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body" and seen["ttfb"] is None and message.get("body"):
                seen["ttfb"] = (time.perf_counter() - perf) * 1000
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            state = scope.get("state") or {}
            route = scope.get("route")
            self.store().execute(
                "INSERT INTO serve_requests (id, started_at, method, path, route, workflow, version, key_id, status, "
                "latency_ms, ttfb_ms, streamed, run_id, run_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, start, scope["method"], scope["path"], getattr(route, "path", None),
                 state.get("workflow"), state.get("version"), state.get("key_id"), seen["status"],
                 (time.perf_counter() - perf) * 1000, seen["ttfb"], int(seen["streamed"]), state.get("run_id"),
                 state.get("run_status")))


def create_app(store: SQLiteStore | None = None) -> FastAPI:
    """The UI alone, on ``store`` (default: the store under ``KEEL_HOME``)."""
    opened: list[SQLiteStore] = [store] if store is not None else []

    def get_store() -> SQLiteStore:
        if not opened:
            opened.append(open_store())
        return opened[0]

    app = FastAPI(title="Keel UI")
    app.include_router(router(store=get_store))
    # No keys here: always open, so the same Host / same-origin / JSON checks as an open `keel serve`.
    app.add_middleware(OriginGuard, open_mode=lambda: True)
    app.add_middleware(_LoopbackOnly)  # and only from this machine, as an open `keel serve`
    app.add_middleware(_AccessLog, store=get_store)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": {"type": "invalid_request_error", "message": f"{where}: {first.get('msg')}",
                                       "field": where, "param": where, "code": None,
                                       "hint": "fix the request and send it again"}}, status_code=422)

    return app
