"""One OAuth refresh across processes (docs/connectors.md, "OAuth 2.1"): two processes whose
connector's access token expired at the same moment (two `keel serve`, or serve and a worker)
must not both spend the refresh token, since authorization servers rotate it (the second
refresh is refused, and many servers then revoke the whole login). The first takes the
connector's refresh lease (a compare-and-swap on its store row) and refreshes; the other waits
for the pair it stores and uses it.

Against the real authorization server of the OAuth tests (authlib, rotating refresh tokens),
which here holds a refresh request at its token endpoint until the test releases it: the first
process's refresh is in flight while the second one starts. The claim itself is also raced by
threads on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from keel.store import open_store
from tests.connectors.test_connector_oauth import _expire, _login, _state, keel, servers  # noqa: F401 (fixture)

pytest.importorskip("mcp")
pytest.importorskip("authlib", reason="the test's authorization server is built from authlib (pip install authlib)")

HERE = Path(__file__).parent
WAITING = "another process is refreshing its OAuth tokens"


class _Client:
    """``oauth_refresh_client.py vault`` in its own process, its stderr collected as it comes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "oauth_refresh_client.py"), "vault"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self._reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def result(self) -> dict:
        out = self.proc.stdout.read()
        assert self.proc.wait(timeout=120) == 0, "".join(self.err)
        self._reader.join(timeout=10)
        return json.loads(out)


def _until(what: str, ready: Callable[[], bool], *clients: _Client) -> None:
    """Wait for an event (a guard against hanging, not a timed assertion)."""
    deadline = time.monotonic() + 120
    while not ready():
        for c in clients:
            assert c.proc.poll() is None, f"a client ended before {what}: {''.join(c.err)}"
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"])  # the claim on PostgreSQL: raced below; the second pass skips this
def test_two_processes_refreshing_at_once_spend_the_refresh_token_once(servers: tuple[str, str],  # noqa: F811
                                                                      keel_home: Path, backend: str) -> None:
    as_url, mcp_url = servers
    assert keel("connectors", "add", "vault", "--server", mcp_url, "--oauth", "--approve", "*=never").returncode == 0
    login = _login("vault")
    assert login.returncode == 0, login.stderr
    first = _state(keel_home)["tokens"]
    _expire(keel_home)  # both processes find an expired access token

    def refreshes() -> dict:
        return httpx.get(f"{as_url}/test/refreshes").json()

    httpx.post(f"{as_url}/test/hold-refresh")
    a = _Client()
    b = None
    try:
        _until("the first process's refresh reaches the token endpoint", lambda: refreshes()["waiting"] == 1, a)
        b = _Client()  # starts while that refresh is in flight
        # It either waits for the first one's refresh (the lease) or sends its own (no lease).
        _until("the second process waits or refreshes",
               lambda: any(WAITING in line for line in b.err) or refreshes()["arrived"] == 2, a, b)
    finally:
        httpx.post(f"{as_url}/test/release")
    ra, rb = a.result(), b.result()

    assert refreshes()["arrived"] == 1, "both processes sent the refresh token"
    assert httpx.get(f"{as_url}/test/grants").json() == {"authorization_code": 1, "refresh_token": 1}
    assert any(WAITING in line for line in b.err)
    stored = _state(keel_home)["tokens"]
    assert stored["refresh_token"] != first["refresh_token"]  # the rotated pair was stored
    digest = hashlib.sha256(stored["access_token"].encode()).hexdigest()[:16]
    assert ra == rb == {"tools": 1, "token": digest, "refused": False}  # both work, with the one new pair
    store = open_store(keel_home)
    try:
        assert store.query("SELECT refresh_owner FROM connectors WHERE name = 'vault'") == [{"refresh_owner": None}]
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("pg_url") if request.param == "postgresql" else None


def test_the_refresh_lease_has_one_holder_at_a_time(tmp_path: Path, url: str | None) -> None:
    from keel.connectors import Connector, Connectors, Credentials

    home = tmp_path / "home"
    home.mkdir()
    store = open_store(home, url=url or "")
    try:
        registry = Connectors(store)
        registry.add(Connector(name="vault", server="http://127.0.0.1:9/mcp", credentials=Credentials()))
        barrier = threading.Barrier(8)

        def claim(i: int) -> bool:
            own = open_store(home, url=url or "")  # a connection of its own, as another process has
            try:
                barrier.wait()
                return Connectors(own).claim_refresh("vault", f"p{i}", ttl=60)
            finally:
                own.close()

        with ThreadPoolExecutor(8) as pool:
            won = list(pool.map(claim, range(8)))
        assert won.count(True) == 1
        holder = f"p{won.index(True)}"
        assert not registry.claim_refresh("vault", "late", ttl=60)
        registry.release_refresh("vault", "late")  # not the holder's: changes nothing
        assert not registry.claim_refresh("vault", "late", ttl=60)
        registry.release_refresh("vault", holder)
        assert registry.claim_refresh("vault", "next", ttl=-1)  # taken, and at once expired
        assert registry.claim_refresh("vault", "after-a-crash", ttl=60)  # an expired lease is taken over
        assert store.query("SELECT refresh_owner FROM connectors") == [{"refresh_owner": "after-a-crash"}]
    finally:
        store.close()


def test_waiting_for_another_process_refresh_keeps_store_calls_off_the_event_loop(tmp_path: Path) -> None:
    """While another process holds the refresh lease, the waiter polls the store (the lease, the
    stored pair) for up to a minute: each of those calls (a round trip on PostgreSQL) runs off the
    event loop, which goes on serving the process's other requests (CONTRIBUTING rule 36). The
    other process stores its new pair meanwhile, and the waiter takes it."""
    import asyncio

    from keel.connectors import Connector, Connectors, Credentials
    from keel.connectors.oauth import SealedTokens, provider
    from keel.connectors.registry import OAuthSettings

    home = tmp_path / "home"
    home.mkdir()
    store = open_store(home)
    try:
        registry = Connectors(store)
        client = {"client_id": "keel", "redirect_uris": ["http://127.0.0.1/callback"]}
        expired = {"tokens": {"access_token": "old", "token_type": "Bearer", "refresh_token": "r1"},
                   "expires_at": time.time() - 1, "client": client}
        registry.add(Connector(name="vault", server="http://127.0.0.1:9/mcp", oauth=OAuthSettings(),
                               credentials=Credentials(oauth=expired)))
        assert registry.claim_refresh("vault", "another-process", ttl=60)  # it is refreshing
        auth = provider(registry, registry.get("vault", secrets=True))
        storage: SealedTokens = auth.context.storage
        threads: list[str] = []
        claims: list[str] = []
        claim, reload = storage.registry.claim_refresh, storage.reload

        def watched_claim(*args, **kwargs) -> bool:
            threads.append(threading.current_thread().name)
            claims.append(args[1])
            if len(claims) == 2:  # the other process's refresh answers: it stores the new pair
                registry.save_oauth("vault", {**expired, "expires_at": time.time() + 3600, "tokens": {
                    "access_token": "new", "token_type": "Bearer", "refresh_token": "r2"}})
            return claim(*args, **kwargs)

        def watched_reload() -> dict:
            threads.append(threading.current_thread().name)
            return reload()

        storage.registry.claim_refresh = watched_claim
        storage.reload = watched_reload
        assert asyncio.run(auth._refresh_turn()) is None  # it waited, and did not refresh itself
        assert auth.context.current_tokens.access_token == "new"
        assert len(claims) == 2 and len(threads) == 5  # reload, claim, reload, claim, reload (took the new pair)
        assert "MainThread" not in threads, threads  # the loop's thread made no store call
        assert store.query("SELECT refresh_owner FROM connectors") == [{"refresh_owner": "another-process"}]
    finally:
        store.close()
