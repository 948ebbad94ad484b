"""``keel serve``: the HTTP server (workflows API, OpenAI-compatible endpoints, UI, ChatKit, MCP)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from keel.errors import UserError

EPILOG = """Examples:

  keel serve                                  # http://127.0.0.1:8000, open to local clients

  keel keys create web --workflow support     # then, on a network address:

  keel serve --host 0.0.0.0 --port 8080

  curl -s localhost:8000/v1/workflows/support/runs -d '{"input": "hello"}' -H 'content-type: application/json'

Settings also come from [serve] in keel.toml and KEEL_SERVE_* variables (docs/serve.md)."""


class ServeError(UserError):
    """The server cannot start as asked."""


def serve(host: str | None = typer.Option(None, "--host", help="Address to listen on (default 127.0.0.1). "
                                          "A non-loopback address needs an API key (keel keys create)."),
          port: int | None = typer.Option(None, "--port", "-p", min=0, max=65535,
                                          help="Port (default 8000; 0 picks a free one)."),
          reload: bool = typer.Option(False, "--reload/--no-reload",
                                      help="Restart on code changes (development only)."),
          workers: int = typer.Option(1, "--workers", min=1,
                                      help="Processes serving the same store, each with its own engine; "
                                           "about one per core (docs/serve.md, Deploying)."),
          cors_origin: list[str] = typer.Option([], "--cors-origin",  # noqa: B008
                                                help="Allow this browser origin (repeatable)."),
          max_body_bytes: int | None = typer.Option(None, "--max-body-bytes", min=1,
                                                    help="Largest request body (default 1000000)."),
          run_timeout: float | None = typer.Option(None, "--run-timeout", min=0.001,
                                                   help="Seconds a synchronous run may take (default 120)."),
          allow_provider_keys: bool | None = typer.Option(None, "--allow-provider-keys/--no-provider-keys",
                                                          help="Accept callers' own provider keys "
                                                               "(X-Keel-Provider-Key)."),
          access_log: Path | None = typer.Option(None, "--access-log",  # noqa: B008
                                                 help="Also append JSON access-log lines to this file."),
          execute: bool | None = typer.Option(None, "--execute/--no-execute",
                                              help="Execute the runs this server starts (default), or queue "
                                                   "them for `keel worker` processes sharing the store."),
          ) -> None:
    """Serve published workflows over HTTP until interrupted.

    With no API key created, the server answers only clients on loopback; once a key
    exists, every request needs one.
    """
    from keel.operate.server.settings import is_loopback, load_serve_settings

    settings = load_serve_settings(host=host, port=port, cors_origins=cors_origin or None,
                                   max_body_bytes=max_body_bytes, run_timeout=run_timeout,
                                   allow_provider_keys=allow_provider_keys, access_log=access_log, execute=execute)
    if not is_loopback(settings.host):
        from keel.operate.server.keys import Keys
        from keel.store import open_store

        if not Keys(open_store()).any_active():
            raise ServeError(f"refusing to listen on {settings.host} without an API key: anyone on the network "
                             "could run your workflows",
                             hint="create one with `keel keys create NAME --workflow '*'`, or use --host 127.0.0.1")
    run_server(settings, reload=reload, workers=workers)


def access_banner() -> str:
    """One line on who may call the server: open mode (no keys) or keys required."""
    from keel.operate.server.keys import Keys
    from keel.store import open_store

    store = open_store()
    try:
        active = len(Keys(store).list())
    finally:
        store.close()
    if active:
        return f"API keys required ({active} active; manage them with `keel keys list`)"
    return ("open mode: no API keys, so only this machine can call it, without a key (loopback clients "
            "addressing localhost or 127.0.0.1; other web pages' cross-site requests are refused). "
            "Create a key with `keel keys create NAME --workflow '*'` to require one")


def check_port(host: str, port: int, *, fix: str = "keel serve --port 0") -> None:
    """Raise :class:`ServeError` if ``port`` on ``host`` cannot be listened on (taken by another
    server, or not ours to use). Port 0 (a free one, picked at bind time) always passes."""
    import errno
    import socket

    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ServeError(f"port {port} on {host} is taken: another server (a keel up or keel serve "
                                 "still running?) listens there",
                                 hint=f"stop that one, or use a free port: {fix}") from None
            raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                             hint=f"pick another address or port: {fix}") from None


def run_server(settings: object, *, reload: bool = False, workers: int = 1) -> None:
    """Run uvicorn with ``settings`` (a ServeSettings); uvloop/httptools when installed. A port
    already taken is a :class:`ServeError` before anything is printed."""
    import importlib.util
    import os
    import time

    import uvicorn

    if not settings.port:  # type: ignore[attr-defined]
        # --port 0 (the hint of a taken port): pick the free port here, so the URL printed
        # below is one a browser can open, not ":0"
        import socket

        with socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET) as s:  # type: ignore[attr-defined]
            s.bind((settings.host, 0))  # type: ignore[attr-defined]
            settings = settings.model_copy(update={"port": s.getsockname()[1]})  # type: ignore[attr-defined]
    if not reload:
        check_port(settings.host, settings.port)  # type: ignore[attr-defined]

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    # The factory re-reads settings in each worker process: pass ours through the environment.
    os.environ["KEEL_SERVE_SETTINGS_JSON"] = settings.model_dump_json()  # type: ignore[attr-defined]
    # When this server started, for every worker (one uvicorn starts again included): a key revoked
    # since then keeps them all key-required (Keys.required), not only those that saw it active.
    os.environ["KEEL_SERVE_STARTED_AT"] = repr(time.time())
    print(f"keel serve: http://{settings.host}:{settings.port}  (UI at /ui, API docs at /docs)",  # type: ignore[attr-defined]
          file=sys.stderr, flush=True)
    print(f"keel serve: {access_banner()}", file=sys.stderr, flush=True)
    uvicorn.run("keel.operate.server.app:app_from_env", factory=True, host=settings.host,  # type: ignore[attr-defined]
                port=settings.port, reload=reload, workers=None if reload else workers,  # type: ignore[attr-defined]
                loop=loop, http=http, access_log=False, log_level="info", lifespan="on",
                timeout_keep_alive=15, timeout_graceful_shutdown=10)
