"""OAuth 2.1 connectors (docs/connectors.md, decision 0030) against a real authorization server
(tests/connectors/oauth_server.py: authlib's server parts, with dynamic client registration,
PKCE and rotating refresh tokens) and a real streamable-HTTP MCP server that checks each bearer
token by introspection (tests/connectors/oauth_mcp_server.py), both subprocesses on 127.0.0.1,
driven through the real `keel` CLI: add --oauth, login (the test follows the printed URL as a
browser would), runs, a refresh, and a revoked login."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keel.store import open_store
from keel.testing import scripted
from keel.workflows import arun

pytest.importorskip("mcp")
pytest.importorskip("authlib", reason="the test's authorization server is built from authlib (pip install authlib)")

HERE = Path(__file__).parent
RS_SECRET = "resource-server-secret-4e1b"


def keel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("a test server did not start") from None
            time.sleep(0.1)


@pytest.fixture
def servers() -> Iterator[tuple[str, str]]:
    """(authorization server URL, MCP server URL)."""
    auth = subprocess.Popen([sys.executable, str(HERE / "oauth_server.py"), RS_SECRET], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "AUTHLIB_INSECURE_TRANSPORT": "1"})
    mcp = None
    try:
        as_url = f"http://127.0.0.1:{int(auth.stdout.readline())}"
        port = _free_port()
        mcp = subprocess.Popen([sys.executable, str(HERE / "oauth_mcp_server.py"), as_url, str(port), RS_SECRET],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(mcp, port)
        yield as_url, f"http://127.0.0.1:{port}/mcp"
    finally:
        for p in (mcp, auth):
            if p is not None:
                p.terminate()
                p.wait(timeout=10)


def _spec(path: Path) -> Path:
    path.write_text("""
name: bank
nodes:
  - {id: start, type: start}
  - id: teller
    type: agent
    model: scripted:teller
    mcp:
      - {connector: vault}
  - {id: done, type: end}
edges:
  - {from: start, to: teller}
  - {from: teller, to: done}
""")
    return path


def _login(name: str) -> subprocess.CompletedProcess:
    """``keel connectors login NAME --no-browser``, with the test as the person's browser."""
    proc = subprocess.Popen([sys.executable, "-m", "keel", "connectors", "login", name, "--no-browser",
                             "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("http://"):
            # The authorization server consents at once and redirects to Keel's listener.
            answer = httpx.get(line.strip(), follow_redirects=True, timeout=30)
            assert answer.status_code == 200 and "logged in" in answer.text, answer.text
            break
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines) + out, err)


def _run(tmp_path: Path, home: Path, *, fails: bool = False):
    store = open_store(home)
    try:
        with scripted("teller") as teller:
            if not fails:  # a connector that cannot connect fails the node before the model is asked
                teller.reply(tool_calls=[("balance", {"account": "acme"})])
                teller.reply("done")
            result = asyncio.run(arun(_spec(tmp_path / "bank.yaml"), "balance of acme?", store=store))
            return result, [str(c.messages[-1]) for c in teller.calls]
    finally:
        store.close()


def _state(home: Path) -> dict:
    from keel.connectors import Connectors

    store = open_store(home)
    try:
        return Connectors(store).get("vault", secrets=True).credentials.oauth
    finally:
        store.close()


def _expire(home: Path) -> None:
    """The stored access token's expiry, moved into the past (as if an hour went by)."""
    from keel.connectors import Connectors

    store = open_store(home)
    try:
        registry = Connectors(store)
        state = registry.get("vault", secrets=True).credentials.oauth
        registry.save_oauth("vault", {**state, "expires_at": time.time() - 1})
    finally:
        store.close()


def _provider(home: Path):
    from keel.connectors import Connectors
    from keel.connectors.oauth import provider

    store = open_store(home)
    try:
        registry = Connectors(store)
        return provider(registry, registry.get("vault", secrets=True))
    finally:
        store.close()


def _tools_with(home: Path, auth) -> int:
    from keel.connectors import Connectors
    from keel.connectors.oauth import _list

    store = open_store(home)
    try:
        registry = Connectors(store)
        auth.context.storage.registry = registry  # this test's store connection, as a live process has
        return asyncio.run(_list(registry.get("vault", secrets=True), auth))
    finally:
        store.close()


def _files_text(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


@pytest.mark.slow
def test_oauth_connector_login_run_refresh_and_revoked_login(servers: tuple[str, str], keel_home: Path,
                                                             tmp_path: Path) -> None:
    as_url, mcp_url = servers
    outputs: list[str] = []
    add = keel("connectors", "add", "vault", "--server", mcp_url, "--oauth", "--approve", "*=never")
    assert add.returncode == 0, add.stderr
    assert "log in: keel connectors login vault" in add.stdout

    # Before anyone logs in: a clear error naming the fix, at test time and at run time.
    early = keel("connectors", "test", "vault")
    assert early.returncode != 0 and "Traceback" not in early.stderr
    assert "nobody has logged in" in early.stderr and "keel connectors login vault" in early.stderr
    result, _ = _run(tmp_path, keel_home, fails=True)
    assert result.status == "failed" and "keel connectors login vault" in str(result.error)

    # Login: discovery (RFC 9728, RFC 8414), registration (RFC 7591), code + PKCE.
    login = _login("vault")
    assert login.returncode == 0, login.stderr
    assert "logged in connector vault (1 tools)" in login.stdout
    assert "code_challenge_method=S256" in login.stdout and "resource=" in login.stdout
    assert httpx.get(f"{as_url}/test/grants").json() == {"authorization_code": 1}
    first = _state(keel_home)["tokens"]
    assert first["access_token"] and first["refresh_token"]

    result, seen = _run(tmp_path, keel_home)
    assert result.status == "succeeded", result.error
    assert "1234.5" in seen[1]

    # A login nobody completes (it registers a new client, then times out) leaves the stored,
    # working tokens as they were.
    abandoned = keel("connectors", "login", "vault", "--no-browser", "--timeout", "3")
    assert abandoned.returncode != 0 and "Traceback" not in abandoned.stderr
    assert "nobody completed the login" in abandoned.stderr
    assert _state(keel_home)["tokens"] == first
    result, _ = _run(tmp_path, keel_home)
    assert result.status == "succeeded", result.error

    # The access token expires: the next use refreshes it (the server rotates the refresh token),
    # stores the new pair sealed, and the old access token no longer opens the MCP server.
    _expire(keel_home)
    stale = _provider(keel_home)  # another process, holding the expired pair
    test = keel("connectors", "test", "vault")
    assert test.returncode == 0, test.stderr
    assert "balance\tallowed" in test.stdout
    assert httpx.get(f"{as_url}/test/grants").json() == {"authorization_code": 1, "refresh_token": 1}
    second = _state(keel_home)["tokens"]
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    old = httpx.post(mcp_url, headers={"Authorization": f"Bearer {first['access_token']}",
                                       "Accept": "application/json, text/event-stream"},
                     json={"jsonrpc": "2.0", "id": 0, "method": "ping"})
    assert old.status_code == 401
    # The other process's refresh token was spent by this refresh (they rotate): it takes the pair
    # the first one stored instead of asking for a login.
    assert _tools_with(keel_home, stale) == 1 and not stale.refused_refresh
    assert httpx.get(f"{as_url}/test/grants").json() == {"authorization_code": 1, "refresh_token": 1}
    show = keel("connectors", "show", "vault")
    assert json.loads(show.stdout)["oauth"]["logged_in"] is True
    outputs += [add.stdout + add.stderr, early.stderr, login.stdout + login.stderr, test.stdout + test.stderr,
                show.stdout, keel("connectors", "list", "--json").stdout]

    # The person withdraws consent at the authorization server: the refresh is refused, and
    # both the run and `test` say which connector and how to fix it.
    httpx.post(f"{as_url}/test/revoke-all")
    _expire(keel_home)
    result, _ = _run(tmp_path, keel_home, fails=True)
    assert result.status == "failed"
    assert "connector 'vault'" in str(result.error) and "refresh token is expired or was revoked" in str(result.error)
    assert "keel connectors login vault" in str(result.error)
    revoked = keel("connectors", "test", "vault")
    assert revoked.returncode != 0 and "Traceback" not in revoked.stderr
    assert "refresh token is expired or was revoked" in revoked.stderr
    assert "keel connectors login vault" in revoked.stderr
    outputs += [revoked.stderr, str(result.error)]

    # No token anywhere: not in what the CLI printed, not in KEEL_HOME's files (the store keeps
    # them sealed), not in traces or run events.
    secrets = [first["access_token"], first["refresh_token"], second["access_token"], second["refresh_token"]]
    home_text = _files_text(keel_home)
    store = open_store(keel_home)
    try:
        rows = json.dumps([store.query(f"SELECT * FROM {t}") for t in ("trace_spans", "run_events")], default=str)
    finally:
        store.close()
    for s in secrets:
        assert all(s not in o for o in outputs), "a token was printed"
        assert s.encode() not in home_text, "a token is in a file under KEEL_HOME"
        assert s not in rows, "a token is in a trace or run event"

    # Logging in again fixes it.
    again = _login("vault")
    assert again.returncode == 0, again.stderr
    assert keel("connectors", "test", "vault").returncode == 0


def test_login_bad_input_is_an_error_not_a_traceback(keel_home: Path) -> None:
    assert keel("connectors", "add", "plain", "--server", "stdio:python -V", "--oauth").returncode != 0
    assert keel("connectors", "add", "plain", "--server", "http://127.0.0.1:9/mcp").returncode == 0
    r = keel("connectors", "login", "plain", "--no-browser")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "does not use OAuth" in r.stderr and "--oauth --replace" in r.stderr
    r = keel("connectors", "login", "nosuch", "--no-browser")
    assert r.returncode != 0 and "no connector named 'nosuch'" in r.stderr and "Traceback" not in r.stderr
    assert keel("connectors", "add", "down", "--server", "http://127.0.0.1:9/mcp", "--oauth").returncode == 0
    r = keel("connectors", "login", "down", "--no-browser", "--timeout", "20")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "connector 'down': the OAuth login failed" in r.stderr
