"""API keys cached by ``keel serve`` on PostgreSQL (decision 0041): a verified key is answered from
memory, and a revocation reaches every server through a notification, not the cache's expiry."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from keel.operate.server.keys import Keys
from keel.store import open_store
from tests.operate.conftest import echo3, keel, start_server
from tests.operate.workers import env, publish_to


def test_a_cached_key_is_read_once_and_a_revocation_drops_it(tmp_path: Path, pg_url: str) -> None:
    store = open_store(tmp_path, url=pg_url)
    try:
        served = Keys(store, cache_seconds=3600)
        key, secret = Keys(store).create("k", scopes=["*"])
        reads: list[str] = []
        query = store.query
        store.query = lambda sql, params=(): reads.append(sql) or query(sql, params)  # type: ignore[method-assign]
        assert served.verify(secret) == served.verify(secret) == served.verify(secret)
        assert len(reads) == 1  # the first request read the key; the others did not
        assert served.verify(secret + "x") is None  # another secret is no cache hit
        served.revoke(key.id)
        assert served.verify(secret) is None
    finally:
        store.close()


def test_a_key_revoked_on_the_command_line_is_refused_by_both_servers(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    publish_to(home, echo3("echo3"), "echo3", url=pg_url)
    created = json.loads(keel(home, "keys", "create", "k", "--workflow", "*", "--json",
                              env={"KEEL_STORE_URL": pg_url}).stdout)
    # An hour's cache: only the revocation's notification can make the servers read the key again.
    environ = env(home, tmp_path, {"KEEL_SERVE_KEY_CACHE_SECONDS": "3600"}, url=pg_url)
    servers = [start_server(home, env=environ), start_server(home, env=environ)]
    try:
        auth = {"Authorization": f"Bearer {created['secret']}"}

        def status(server) -> int:
            return httpx.post(f"{server.url}/v1/workflows/echo3/runs", json={"input": "hi"}, headers=auth,
                              timeout=60).status_code

        assert [status(s) for s in servers * 2] == [200] * 4  # cached by both
        keel(home, "keys", "revoke", created["id"], env={"KEEL_STORE_URL": pg_url})
        for server in servers:
            deadline = time.monotonic() + 30  # a notification, not the hour
            while (code := status(server)) == 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert code == 401
    finally:
        for s in servers:
            s.stop()
