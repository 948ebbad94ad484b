"""The web UI's Connectors page (docs/connectors.md, "In the web UI") in headless Chromium: each
connector with who may use it, the names of its credentials, its tools (reached through a real
MCP server subprocess with the stored key) and its status; a connector whose server cannot be
reached says so with the fix; an HTTP-API connector (``--http``) shows as one, under a subtitle
that names both kinds. The key itself is never on the page."""

from __future__ import annotations

import socket
from typing import Any

from tests.connectors.test_connectors import KEY, STDIO


def test_the_connectors_page_lists_tools_and_status(page: Any, ui_store: Any, server: Any) -> None:
    from playwright.sync_api import expect

    from keel.connectors import Connector, Connectors, Credentials

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    registry = Connectors(ui_store)
    registry.add(Connector(name="vault", server=STDIO, tools=["balance"], approval={"balance": "never"},
                           workflows=["bank"], keys=["teller-*"], credentials=Credentials(env={"VAULT_API_KEY": KEY})))
    registry.add(Connector(name="gone", server=f"http://127.0.0.1:{port}/mcp",
                           credentials=Credentials(headers={"X-Api-Key": KEY})))
    host = server.url.split("://", 1)[1].rstrip("/")  # an HTTP API that answers: this server's /healthz
    registry.add(Connector(name="status-api", kind="http", server=f"{server.url.rstrip('/')}/healthz", hosts=[host],
                           credentials=Credentials(headers={"X-Api-Key": KEY})))
    try:
        page.goto("/ui/#/connectors")
        expect(page.get_by_role("heading", name="Connectors", level=1)).to_be_visible()
        expect(page.locator("nav a[data-page=connectors]")).to_have_attribute("aria-current", "page")
        expect(page.locator(".page-head p")).to_contain_text("MCP servers and HTTP APIs")

        vault = page.locator("section[data-connector=vault]")
        expect(vault.locator(".connector-status")).to_have_text("ok", timeout=60_000)
        expect(vault).to_contain_text("env VAULT_API_KEY")
        expect(vault).to_contain_text("teller-*")
        expect(vault.locator("tr[data-tool=balance]")).to_contain_text("allowed")
        expect(vault.locator("tr[data-tool=balance]")).to_contain_text("runs without approval")
        expect(vault.locator("tr[data-tool=wipe]")).to_contain_text("not allowed")
        expect(vault.locator("tr[data-tool=wipe]")).to_contain_text("needs approval")

        gone = page.locator("section[data-connector=gone]")
        expect(gone.locator(".connector-status")).to_have_text("down", timeout=60_000)
        expect(gone.locator(".connector-error")).to_contain_text("connector 'gone'")
        expect(gone).to_contain_text("header X-Api-Key")
        expect(gone).to_contain_text("MCP server")

        api = page.locator("section[data-connector=status-api]")
        expect(api.locator(".connector-status")).to_have_text("ok", timeout=60_000)
        expect(api).to_contain_text("HTTP API (the http tool)")
        expect(api).to_contain_text("Base URL")
        expect(api.locator(".connector-tools")).to_contain_text("http: {connector: status-api}")
        expect(api.locator(".connector-tools")).to_contain_text(host)
        assert KEY not in page.content()
    finally:
        registry.remove("vault")
        registry.remove("gone")
        registry.remove("status-api")
