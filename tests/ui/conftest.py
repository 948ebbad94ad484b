"""Browser tests of the web UI: Playwright driving Debian's headless chromium against a real
server on 127.0.0.1 with a real SQLite store. Skipped (with the reason) without chromium or
the ``playwright`` package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.demo import Server, make_app, publish_demo, run_evals

CHROMIUM = os.environ.get("KEEL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 20_000
"""Playwright's waits: generous, for a loaded 2-core machine."""



def need_browser() -> None:
    """Skip, saying why, when chromium or Playwright is missing."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need chromium at {CHROMIUM} (apt-get install chromium, or set KEEL_CHROMIUM)")
    pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")


@pytest.fixture(scope="package")
def ui_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from keel.store import open_store

    home = tmp_path_factory.mktemp("ui-home")
    store = open_store(home)
    yield store
    store.close()


@pytest.fixture(scope="package")
def evals_made(ui_store: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return run_evals(ui_store, tmp_path_factory.mktemp("ui-evals"))


@pytest.fixture(scope="package")
def server(ui_store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    publish_demo(ui_store, tmp_path_factory.mktemp("ui-specs"))
    srv = Server(make_app(ui_store)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Package scope, not session: while Playwright's sync API lives it keeps an event loop
    running in this thread, and async tests that run after tests/ui need their own."""
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    from playwright.sync_api import expect

    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
