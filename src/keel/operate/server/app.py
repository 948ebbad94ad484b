"""The ``keel serve`` application: :func:`create_app` builds the FastAPI app.

What is mounted where::

    /healthz, /readyz          liveness (no auth, no store access) / readiness (store reachable)
    /openapi.json, /docs       the OpenAPI spec and its browser
    /v1/workflows..., /v1/runs..., /v1/approvals...   the workflows API  (routes_workflows.py)
    /v1/chat/completions, /v1/responses, /v1/models   OpenAI-compatible (routes_openai.py)
    /v1/chatkit/sessions       client tokens for browsers (client_tokens.py)
    /ui, /ui/api/...           the web UI: ``keel.operate.ui.router(store=..., dependencies=[auth])``
    /                          redirects to /ui
    /chatkit...                ChatKit, when ``keel.operate.server.chatkit_routes`` exists
    /mcp                       MCP streamable HTTP, when ``keel.operate.server.mcp_server``
                               has ``http_app`` and ``settings.mcp`` is true

Shared objects (the contract other modules code against)
--------------------------------------------------------
``app.state.keel`` is a :class:`Services` with:

- ``settings``: :class:`~keel.operate.server.settings.ServeSettings`;
- ``store``: the :class:`~keel.store.SQLiteStore` (``$KEEL_HOME/keel.db`` unless one was passed);
- ``keys``: :class:`~keel.operate.server.keys.Keys`;
- ``budgets``: :class:`~keel.operate.server.budgets.Budgets` (``check(key, end_user)`` raises 429);
- ``runner``: :class:`~keel.operate.server.runner.Runner` (one shared engine; ``start``, ``wait``,
  ``answer``, ``hub`` for live events, ``versions``, ``runs``);
- ``auth``: the FastAPI dependency :func:`~keel.operate.server.auth.authenticate`: use it as
  ``Depends(services.auth)``; it returns a :class:`~keel.operate.server.auth.Caller`
  (``.key``, ``.end_user``, ``.provider_key``, ``.allow(workflow)`` raises 403,
  ``.may_see(workflow)``) or raises an :class:`~keel.operate.server.errors.ApiError` (401/403);
- ``requests``: the :class:`~keel.operate.server.requestlog.RequestLog` (serve_requests rows);
- ``client_tokens``: :class:`~keel.operate.server.client_tokens.ClientTokens` (browser tokens
  minted at ``POST /v1/chatkit/sessions``; :func:`authenticate` verifies them).

Who may read which run, trace, approval or eval, and decide which approval, is decided in one
place: the :class:`~keel.operate.server.auth.Caller` methods (see auth.py's docstring).

The same objects are also at ``app.state.store``, ``app.state.runner``, ``app.state.settings``
and ``app.state.auth`` for convenience.

Hooks for optional modules (imported inside :func:`create_app`; absent modules are skipped):

- ``keel.operate.server.chatkit_routes.router(services) -> APIRouter`` is included as is:
  its paths carry their own ``/chatkit`` prefix.
- ``keel.operate.server.mcp_server.http_app(services) -> (asgi_app, lifespan)`` where
  ``lifespan`` is an async context manager (or None) entered for the app's lifetime (e.g. the
  session manager's ``run()``). ``asgi_app`` is mounted at ``/mcp`` behind a guard that
  authenticates each HTTP request like the rest of the API and puts the
  :class:`~keel.operate.server.auth.Caller` in ``scope["state"]["keel_caller"]``.

Per-request values the access log records (set them on ``request.state`` in a route, or
``scope["state"]`` in raw ASGI): ``workflow``, ``version``, ``run_id``, ``key_id``,
``end_user``, ``input_tokens``, ``output_tokens``, and ``run_status``: the run's status when
it ended within the request (``succeeded``, ``failed``, ``waiting``, ...; the dashboard counts
a ``failed`` one as an error whatever the HTTP status). Set it from the result the route already
holds, never with an extra query.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse

from keel import __version__
from keel.operate.server.auth import authenticate
from keel.operate.server.budgets import Budgets
from keel.operate.server.client_tokens import ClientTokens
from keel.operate.server.errors import ApiError, install_error_handlers
from keel.operate.server.hygiene import AccessLog, BodyLimit, setup_logging
from keel.operate.server.keys import Keys
from keel.operate.server.origin import OriginGuard
from keel.operate.server.requestlog import RequestLog
from keel.operate.server.runner import Runner
from keel.operate.server.settings import ServeSettings, load_serve_settings
from keel.store import SQLiteStore, open_store

__all__ = ["Services", "create_app"]

log = logging.getLogger("keel.serve")


@dataclass
class Services:
    """What every route shares; ``app.state.keel`` (see the module docstring)."""

    settings: ServeSettings
    store: SQLiteStore
    keys: Keys
    budgets: Budgets
    runner: Runner
    requests: RequestLog
    auth: Any = authenticate
    client_tokens: ClientTokens | None = None

    @functools.cached_property
    def idempotency(self) -> Any:
        """Idempotency keys of run starts (:mod:`keel.operate.server.idempotency`)."""
        from keel.operate.server.idempotency import Idempotency

        return Idempotency(self.store)


class _McpGuard:
    """Authenticate an MCP HTTP request like any API request, then pass it on."""

    def __init__(self, app: Any, *, page: Any = None) -> None:
        self.app, self.page = app, page
        """``page(scope)``: the HTML a browser gets instead of MCP's open stream (None: not a browser)."""

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            html = self.page(scope) if self.page is not None else None
            if html is not None:  # a person opened /mcp/ in a browser: explain, do not hang
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                        (b"content-length", str(len(html)).encode())]})
                await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else html})
                return
            try:
                caller = authenticate(Request(scope, receive))
            except ApiError as e:
                await e.response()(scope, receive, send)
                return
            scope.setdefault("state", {})["keel_caller"] = caller
        await self.app(scope, receive, send)


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if e.name and (e.name == name or name.startswith(e.name + ".")):
            return None
        log.warning("cannot load %s: %s", name, e)
        return None


def _retention() -> tuple[float, float] | None:
    """``(older_than, interval)`` seconds when ``retention`` is set (keel.toml or KEEL_RETENTION);
    read at start-up, so a bad value stops ``keel serve`` with one line, not a request later."""
    import os

    from keel.config import get_settings

    age = get_settings().retention
    if not age:
        return None
    from keel.store.retention import parse_age

    return (parse_age(age, where="retention (keel.toml or KEEL_RETENTION)"),
            parse_age(os.environ.get("KEEL_PRUNE_INTERVAL", "3600") + "s", where="KEEL_PRUNE_INTERVAL"))


def _start_retention(store: Any, retention: tuple[float, float] | None) -> Any:
    if retention is None:
        return None
    from keel.store.retention import RetentionThread

    thread = RetentionThread(store, older_than=retention[0], interval=retention[1])
    thread.start()
    return thread


async def _forget_revoked(wake: Any, keys: Keys) -> None:
    """Drop the cached API keys whenever a revocation is notified (:data:`keel.operate.server.keys.CHANNEL`)."""
    from keel.operate.server.keys import CHANNEL

    event = wake.arm(CHANNEL)
    try:
        while True:
            await event.wait()
            event.clear()
            keys.forget()
    finally:
        wake.disarm(CHANNEL, "", event)


def create_app(settings: ServeSettings | None = None, *, store: SQLiteStore | None = None,
               started_at: float | None = None) -> FastAPI:
    """The ASGI app of ``keel serve``. ``settings`` default to :func:`load_serve_settings`
    (``[serve]`` in keel.toml, ``KEEL_SERVE_*``); ``store`` to the one under ``KEEL_HOME``;
    ``started_at`` (default: now) is when the server started: a key revoked since then keeps
    it key-required (:meth:`~keel.operate.server.keys.Keys.required`)."""
    settings = settings or load_serve_settings()
    store = store or open_store()
    if store.dialect != "sqlite":  # group commits on a thread: the loop serves requests meanwhile (decision 0037)
        store.commit_off_loop = True
    retention_setting = _retention()
    budgets = Budgets(store, user_daily_tokens=settings.user_daily_tokens,
                      user_daily_cost_usd=settings.user_daily_cost_usd)
    from keel.operate.server.rates import RateLimits

    rates = RateLimits(store, per_key=settings.key_requests_per_minute, per_user=settings.user_requests_per_minute)
    budgets.rates = rates if rates.enabled else None
    runner = Runner(store, budgets, provider_key_providers=settings.provider_key_providers,
                    execute=settings.execute, share_events=settings.share_events)
    access = setup_logging(settings.access_log)
    keys = Keys(store, since=started_at,
                cache_seconds=settings.key_cache_seconds if runner.wake.listening else 0.0)
    services = Services(settings, store, keys, budgets, runner, RequestLog(store, access),
                        client_tokens=ClientTokens(store))
    services.keys.required()  # keys at start-up: this process stays key-required until it restarts

    mcp_mod = _optional("keel.operate.server.mcp_server") if settings.mcp else None
    mcp_app, mcp_lifespan = (None, None)
    if mcp_mod is not None and hasattr(mcp_mod, "http_app"):
        mcp_app, mcp_lifespan = mcp_mod.http_app(services)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        # What exists at start-up (imported modules, compiled workflows) lives as long as the process:
        # frozen, the collector stops walking it. Full collections over it were the server's latency
        # tail (p99 361 -> 194 ms at 64 concurrent requests, docs/benchmarks.md).
        gc.collect()
        gc.freeze()
        services.requests.start()
        store.checkpoint_in_background()  # no WAL checkpoint (and fsync) inside a request's commit
        retention = _start_retention(store, retention_setting)
        worker = asyncio.create_task(runner.worker(stop))
        forget = asyncio.create_task(_forget_revoked(runner.wake, keys)) if keys.cache_seconds else None
        async with contextlib.AsyncExitStack() as stack:
            if mcp_lifespan is not None:
                await stack.enter_async_context(mcp_lifespan)
            try:
                yield
            finally:
                stop.set()
                # Never wait on a run: the worker may be driving one (a resumed loop); cancelled, it
                # leaves the run at its last checkpoint for the next process (docs/serve.md).
                worker.cancel()
                await asyncio.wait({worker}, timeout=2)
                if forget is not None:
                    forget.cancel()
                await runner.aclose()
                store.commit_group().flush()  # usage rows queued in this last turn of the loop
                services.requests.stop()
                store.stop_background_checkpoints()
                if retention is not None:
                    retention.stop()

    app = FastAPI(title="Keel", version=__version__, lifespan=lifespan,
                  description="Keel workflows over HTTP: the workflows API, OpenAI-compatible endpoints, "
                              "ChatKit and MCP. Errors are `{\"error\": {type, code, message, field, hint}}`. "
                              "See docs/serve.md.")
    app.state.keel = services
    app.state.store, app.state.runner, app.state.settings = store, runner, settings
    app.state.auth = authenticate
    install_error_handlers(app)

    from keel.operate.server import (
        client_tokens,
        routes_connectors,
        routes_openai,
        routes_workflows,
    )

    # The OpenAI endpoints first: FastAPI tries routes in order, and a chat completion walked ~18 of
    # them first (12 % of a served request's CPU on the loop, decision 0041); no path overlaps.
    app.include_router(routes_openai.router)
    app.include_router(routes_workflows.router)
    app.include_router(routes_connectors.router)
    app.include_router(client_tokens.router(services))

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"], summary="Readiness: the store answers",
             responses={503: {"description": "The store is unreachable"}})
    def readyz() -> Any:
        try:
            store.query("SELECT 1")
        except Exception as e:
            return JSONResponse({"status": "unavailable", "error": str(e)}, status_code=503)
        from keel.models.local_queue import local_generations

        # the local model's line: generations running now, waiting for a slot, and the limits
        return {"status": "ok", "local_generations": local_generations()}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui")

    ui = _optional("keel.operate.ui")
    if ui is not None:
        app.include_router(ui.router(store=lambda: store, dependencies=[Depends(authenticate)]))
    chatkit = _optional("keel.operate.server.chatkit_routes")
    if chatkit is not None:
        app.include_router(chatkit.router(services))
    if mcp_app is not None:
        page = getattr(mcp_mod, "browser_page", None)
        app.mount("/mcp", _McpGuard(mcp_app, page=None if page is None else
                                    lambda scope: page(scope, keys_required=services.keys.required())))

    # Outermost first: access log sees everything (413s included), then the body limit, then CORS,
    # then the Host / same-origin / JSON checks (inside CORS, so an allowed origin can read their errors),
    # then bodies with lone surrogates (400 naming the field, for every route: textguard.py).
    from keel.operate.server.textguard import SurrogateGuard

    app.add_middleware(SurrogateGuard)
    app.add_middleware(OriginGuard, open_mode=lambda: not services.keys.required(),
                       cors_origins=settings.cors_origins)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Keel-User",
                                          "X-Keel-Provider-Key"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog, sink=services.requests)
    return app


def app_from_env() -> FastAPI:
    """The app for uvicorn's ``factory=True`` (what ``keel serve`` runs, one per worker):
    settings from ``KEEL_SERVE_SETTINGS_JSON`` when ``keel serve`` set it, else as usual; the
    server's start from ``KEEL_SERVE_STARTED_AT``."""
    import os

    raw = os.environ.get("KEEL_SERVE_SETTINGS_JSON")
    started = os.environ.get("KEEL_SERVE_STARTED_AT")  # set by keel serve, shared by its workers
    return create_app(ServeSettings.model_validate_json(raw) if raw else None,
                      started_at=float(started) if started else None)
