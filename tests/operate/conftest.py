"""A real ``keel serve`` for the operate tests (reuse it: ``def test_x(serve): ...``).

``serve`` (session-scoped) is a :class:`Server`: a ``keel serve`` subprocess on
127.0.0.1 with a free port and its own KEEL_HOME, with these workflows published
before it starts:

- ``echo3``: start -> agent (``scripted:echo``, answers with the last user message) -> end;
- ``approve``: start -> human approval -> end ("approved by <by>" / "rejected");
- ``other``: like ``echo3`` (for scope tests: the ``scoped`` key may not call it);
- ``confirm``: like ``approve``, with ``allow_requester: true`` (whoever started it may decide).

and three API keys: ``serve.admin_key`` (scope ``*``, roles admin and approver),
``serve.approver_key`` (scope ``*``, role approver) and ``serve.scoped_key`` (only ``echo3``,
no role). A key may not decide an approval of a run it started (unless the node allows
requesters): approve ``approve`` runs with ``approver_key``. Because keys exist, every
request needs one: ``serve.headers()`` gives
``{"Authorization": "Bearer <admin key>"}``. ``serve.log_text()`` is what the server
wrote to stdout/stderr so far; ``serve.home`` its KEEL_HOME.

``start_server(home, ...)`` starts another one (e.g. with other settings, or no keys);
stop it with ``.stop()``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.pg import use_postgres_for


def agent_workflow(name: str, model: str, instructions: str, description: str) -> str:
    """The spec of start -> agent (``model``) -> end."""
    return f"""
name: {name}
description: {description}
nodes:
  - {{id: start, type: start}}
  - {{id: bot, type: agent, model: "{model}", instructions: {instructions}}}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: bot}}
  - {{from: bot, to: done}}
"""


def echo3(name: str = "echo3") -> str:
    """start -> agent (``scripted:echo``, answers with the last user message) -> end."""
    return agent_workflow(name, "scripted:echo", "Repeat after me.", "Repeats the last user message.")

APPROVE = """
name: approve
description: Asks a human before answering.
nodes:
  - {id: start, type: start}
  - {id: ask, type: human_approval, message: "Refund {{ input_as_text }}?", timeout: 1209600}
  - {id: ok, type: end, output: "'approved by ' + input.output_parsed.by"}
  - {id: nope, type: end, output: "'rejected'"}
  - {id: late, type: end, output: "'timed out'"}
edges:
  - {from: start, to: ask}
  - {from: ask, port: approved, to: ok}
  - {from: ask, port: rejected, to: nope}
  - {from: ask, port: timeout, to: late}
"""

CONFIRM = APPROVE.replace("name: approve", "name: confirm").replace("timeout: 1209600}",
                                                                 "timeout: 1209600, allow_requester: true}")
"""``approve`` whose requester may decide its approval itself (``allow_requester: true``)."""

_CLEAN_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY", "OLLAMA_HOST", "KEEL_MODEL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    use_postgres_for(home)  # KEEL_TEST_STORE=postgresql: the home's own database, named in its keel.toml
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_") and k not in _CLEAN_ENV}
    return {**env, "KEEL_HOME": str(home), **(extra or {})}


def keel(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``keel`` CLI against ``home``; fails the test on a non-zero exit."""
    r = subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=120,
                       env=server_env(home, env), cwd=home)
    assert r.returncode == 0, f"keel {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def publish(home: Path, spec: str, name: str) -> None:
    """Publish ``spec`` into ``home``'s store (in-process: the public Python API)."""
    from keel.store import open_store
    from keel.workflows import publish as publish_spec

    path = home / f"{name}.yaml"
    path.write_text(spec, encoding="utf-8")
    use_postgres_for(home)
    store = open_store(home)
    try:
        publish_spec(path, store=store)
    finally:
        store.close()


def create_key(home: Path, name: str, *args: str) -> str:
    """``keel keys create NAME *args`` against ``home``; the key's secret."""
    return json.loads(keel(home, "keys", "create", name, *args, "--json").stdout)["secret"]


@dataclass
class Server:
    home: Path
    port: int
    proc: subprocess.Popen
    log: Path
    admin_key: str | None = None
    scoped_key: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    approver_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, key: str | None = None) -> dict[str, str]:
        key = key or self.admin_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(key), timeout=60)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(home: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start ``keel serve --port <free> *args`` on 127.0.0.1 and wait until /healthz answers."""
    port = free_port()
    log = home / f"serve-{port}.log"
    out = log.open("w", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "keel", "serve", "--host", "127.0.0.1", "--port", str(port),
                             *args], stdout=out, stderr=subprocess.STDOUT, env=server_env(home, env), cwd=home)
    server = Server(home, port, proc, log)
    deadline = time.monotonic() + 180  # generous: a loaded CI machine imports slowly
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"keel serve exited with {proc.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"keel serve did not answer /healthz within 180 s:\n{server.log_text()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared ``keel serve`` (see the module docstring)."""
    home = tmp_path_factory.mktemp("serve-home")
    publish(home, echo3("echo3"), "echo3")
    publish(home, echo3("other"), "other")
    publish(home, APPROVE, "approve")
    publish(home, CONFIRM, "confirm")
    admin = create_key(home, "admin", "--workflow", "*", "--admin", "--approver")
    approver = create_key(home, "approver", "--workflow", "*", "--approver")
    scoped = create_key(home, "scoped", "--workflow", "echo3")
    server = start_server(home)
    server.admin_key, server.scoped_key, server.approver_key = admin, scoped, approver
    try:
        yield server
    finally:
        server.stop()
