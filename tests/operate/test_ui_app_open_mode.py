"""The UI-only app (``uvicorn --factory keel.operate.ui.app:create_app``) has no API keys, so it
is open mode: like an open ``keel serve`` (issue 13, finding 4; the review of it) it answers only
clients on loopback. The peer address is set with the ASGI transport's ``client``, which is what
uvicorn puts in the scope, so the real app decides."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from keel.operate.ui.app import create_app
from keel.store import open_store


async def _get(tmp_path: Path, client: tuple[str, int], path: str) -> httpx.Response:
    app = create_app(open_store(tmp_path))
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        return await http.get(path)


@pytest.mark.parametrize("peer", ["203.0.113.7", "192.168.1.20", "10.0.0.5", "::ffff:198.51.100.1"])
@pytest.mark.parametrize("path", ["/ui/api/runs", "/ui/api/workflows", "/ui"])
async def test_a_client_not_on_loopback_is_refused(tmp_path: Path, peer: str, path: str) -> None:
    r = await _get(tmp_path, (peer, 40000), path)
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "open_mode_loopback_only" and error["type"] == "permission_error"
    assert "keel keys create" in error["hint"]
    assert "runs" not in r.json()


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1"])
async def test_a_client_on_loopback_is_served(tmp_path: Path, peer: str) -> None:
    r = await _get(tmp_path, (peer, 40000), "/ui/api/runs")
    assert r.status_code == 200, r.text
    assert r.json() == {"runs": []}


async def test_the_refusal_is_in_the_access_log(tmp_path: Path) -> None:
    r = await _get(tmp_path, ("203.0.113.7", 40000), "/ui/api/runs")
    assert r.status_code == 403
    rows = open_store(tmp_path).query("SELECT path, status FROM serve_requests")
    assert rows == [{"path": "/ui/api/runs", "status": 403}]
