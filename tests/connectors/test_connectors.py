"""Connectors (docs/connectors.md) against a real MCP server subprocess that wants an API key
(tests/connectors/keyed_mcp_server.py): over stdio (the key in an environment variable) and
over streamable HTTP on 127.0.0.1 (the key in a header), through the real `keel` CLI."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.store import open_store
from keel.testing import scripted
from keel.workflows import Runs, Spans, SpecError, arun, publish

pytest.importorskip("mcp")

SERVER = Path(__file__).with_name("keyed_mcp_server.py")
KEY = "vault-key-5f3a9c2e71d84b06"
WRONG = "vault-key-00000000wrong000"
SHA = hashlib.sha256(KEY.encode()).hexdigest()
STDIO = f"stdio:{shlex.quote(sys.executable)} {shlex.quote(str(SERVER))} {SHA}"


def keel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _spec(path: Path, name: str = "bank", entry: str = "{connector: vault}") -> Path:
    path.write_text(f"""
name: {name}
nodes:
  - {{id: start, type: start}}
  - id: teller
    type: agent
    model: scripted:teller
    mcp:
      - {entry}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: teller}}
  - {{from: teller, to: done}}
""")
    return path


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(SERVER), SHA, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the MCP server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _files_text(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_stdio_connector_with_an_env_key_runs_and_the_key_is_nowhere(keel_home: Path, tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    outputs = []
    add = keel("connectors", "add", "vault", "--server", STDIO, "--env", "VAULT_API_KEY", "--tool", "balance",
               "--approve", "balance=never", "--workflow", "bank", env={"VAULT_API_KEY": KEY})
    outputs.append(add)
    assert add.returncode == 0, add.stderr
    assert "VAULT_API_KEY" in add.stdout
    test = keel("connectors", "test", "vault")
    outputs.append(test)
    assert test.returncode == 0, test.stderr
    assert "balance\tallowed" in test.stdout
    assert "wipe\tnot allowed, needs approval" in test.stdout
    outputs += [keel("connectors", "list"), keel("connectors", "list", "--json"), keel("connectors", "show", "vault")]
    assert json.loads(outputs[-1].stdout)["env"] == ["VAULT_API_KEY"]

    spec = _spec(tmp_path / "bank.yaml")
    caplog.set_level(logging.DEBUG)
    store = open_store(keel_home)
    try:
        with scripted("teller") as teller:
            teller.reply(tool_calls=[("balance", {"account": "acme"})])
            teller.reply("Acme has 1234.5.")
            result = await_run(spec, store)
            # The model was offered only the allow-listed tool.
            assert [t.name for t in teller.calls[0].tools] == ["balance"]
        assert result.status == "succeeded", result.error
        assert result.output == "Acme has 1234.5."
        run = Runs(store).get(result.run_id)
        spans = Spans(store).for_trace(run.trace_id)
        [tool] = [s for s in spans if s.kind == "tool"]
        assert "1234.5" in tool.attributes["keel.tool.result"]
        traced = json.dumps([s.attributes for s in spans], default=str) + json.dumps(
            [store.query(f"SELECT * FROM {t}") for t in ("run_events", "workflow_memos", "connectors")], default=str)
        sealed = store.query("SELECT credentials, config FROM connectors")[0]
    finally:
        store.close()
    assert KEY not in traced
    assert KEY not in json.dumps(sealed)
    assert KEY.encode() not in _files_text(keel_home), "the API key is in a file under KEEL_HOME"
    assert all(KEY not in o.stdout + o.stderr for o in outputs)
    assert KEY not in caplog.text


def await_run(spec: Path, store) -> object:
    import asyncio

    return asyncio.run(arun(spec, "balance of acme?", store=store))


def test_stdio_connector_with_a_wrong_key_fails_clearly(keel_home: Path, tmp_path: Path) -> None:
    add = keel("connectors", "add", "vault", "--server", STDIO, "--env", f"VAULT_API_KEY={WRONG}")
    assert add.returncode == 0, add.stderr
    test = keel("connectors", "test", "vault")
    assert test.returncode == 2
    assert "error: connector 'vault'" in test.stderr
    assert "VAULT_API_KEY is missing or wrong (got '[redacted]')" in test.stderr  # its words, scrubbed
    assert "fix: check its credentials" in test.stderr
    assert "Traceback" not in test.stderr
    assert WRONG not in test.stdout + test.stderr

    store = open_store(keel_home)  # a run fails its node with the server's words, scrubbed
    try:
        with scripted("teller"):
            result = await_run(_spec(tmp_path / "bank.yaml"), store)
        stored = json.dumps([store.query(f"SELECT * FROM {t}") for t in ("run_events", "workflow_runs")],
                            default=str)
    finally:
        store.close()
    assert result.status == "failed"
    assert "connector 'vault'" in result.error and "got '[redacted]'" in result.error
    assert WRONG not in result.error + stored
    assert WRONG.encode() not in _files_text(keel_home)


def test_http_connector_sends_its_key_in_a_header(http_server: str, tmp_path: Path) -> None:
    add = keel("connectors", "add", "vault", "--server", http_server, "--header", "X-Api-Key=${VAULT_KEY}",
               env={"VAULT_KEY": KEY})
    assert add.returncode == 0, add.stderr
    test = keel("connectors", "test", "vault")
    assert test.returncode == 0, test.stderr
    assert "balance\tallowed, needs approval" in test.stdout
    assert KEY not in test.stdout + test.stderr + keel("connectors", "show", "vault").stdout

    wrong = keel("connectors", "add", "vault", "--server", http_server, "--header", f"X-Api-Key={WRONG}",
                 "--replace")
    assert wrong.returncode == 0, wrong.stderr
    refused = keel("connectors", "test", "vault")
    assert refused.returncode == 2
    assert "error: connector 'vault'" in refused.stderr and "401" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_run_through_an_http_connector(http_server: str, keel_home: Path, tmp_path: Path) -> None:
    assert keel("connectors", "add", "vault", "--server", http_server, "--header", f"X-Api-Key={KEY}",
                "--approve", "*=never").returncode == 0
    store = open_store(keel_home)
    try:
        with scripted("teller") as teller:
            teller.reply(tool_calls=[("balance", {"account": "acme"})])
            teller.reply("done")
            result = await_run(_spec(tmp_path / "bank.yaml"), store)
            assert sorted(t.name for t in teller.calls[0].tools) == ["balance", "wipe"]
        assert result.status == "succeeded", result.error
        assert "1234.5" in str(teller.calls[1].messages[-1])
    finally:
        store.close()
    assert KEY.encode() not in _files_text(keel_home)


def test_publish_refuses_unknown_and_forbidden_connectors(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        publish(_spec(tmp_path / "a.yaml"))
    [p] = e.value.problems
    # line 9 of the file (it starts with a blank line): `- {connector: vault}`
    assert p.node_id == "teller" and p.line == 9 and p.path == "nodes[1].mcp[0].connector"
    assert "connector 'vault' is not in the registry" in p.message
    assert "keel connectors add vault" in p.hint

    assert keel("connectors", "add", "vault", "--server", STDIO, "--env", f"VAULT_API_KEY={KEY}",
                "--workflow", "bank", "--workflow", "support-*", "--tool", "balance",
                "--approve", "balance=always").returncode == 0
    with pytest.raises(SpecError) as e:
        publish(_spec(tmp_path / "b.yaml", name="payroll"))
    [p] = e.value.problems
    assert "connector 'vault' may not be used by workflow 'payroll' (it allows: bank, support-*)" in p.message
    assert "--workflow payroll" in p.hint

    with pytest.raises(SpecError) as e:  # a spec may narrow the allow-list, not widen it
        publish(_spec(tmp_path / "c.yaml", entry="{connector: vault, tools: [wipe]}"))
    assert "tools wipe are not in the allow-list of connector 'vault'" in e.value.problems[0].message
    with pytest.raises(SpecError) as e:  # nor loosen an approval policy
        publish(_spec(tmp_path / "c.yaml", entry="{connector: vault, approval: {balance: never}}"))
    assert "makes balance `never`, but connector 'vault' requires approval" in e.value.problems[0].message
    with pytest.raises(SpecError) as e:  # the credentials live in the connector
        publish(_spec(tmp_path / "c.yaml", entry="{connector: vault, env: {VAULT_API_KEY: x}}"))
    assert "names connector 'vault' and also `server`/`env`" in e.value.problems[0].message

    assert publish(_spec(tmp_path / "d.yaml", name="support-eu")).version == 1  # a pattern allows it

    from keel.workflows.drafts import Drafts

    store = open_store()
    try:  # a canvas preview is refused the same way
        with pytest.raises(SpecError, match="may not be used by workflow 'payroll'"):
            Drafts(store).preview("payroll", _spec(tmp_path / "p.yaml", name="payroll").read_text(), revision=0)
    finally:
        store.close()

    cli = keel("workflows", "publish", str(_spec(tmp_path / "e.yaml", name="payroll")))
    assert cli.returncode != 0 and "may not be used by workflow 'payroll'" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_a_connector_removed_after_publish_fails_its_node(keel_home: Path, tmp_path: Path) -> None:
    assert keel("connectors", "add", "vault", "--server", STDIO, "--env", f"VAULT_API_KEY={KEY}").returncode == 0
    version = publish(_spec(tmp_path / "bank.yaml"))
    assert keel("connectors", "remove", "vault").returncode == 0
    store = open_store(keel_home)
    try:
        with scripted("teller"):
            result = await_run(version.spec.name, store)  # type: ignore[arg-type]
    finally:
        store.close()
    assert result.status == "failed"
    assert "no connector named 'vault'" in result.error


def test_a_connector_that_is_down_fails_its_node_naming_it(keel_home: Path, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert keel("connectors", "add", "vault", "--server", f"http://127.0.0.1:{port}/mcp",
                "--header", f"X-Api-Key={KEY}").returncode == 0
    store = open_store(keel_home)
    try:
        with scripted("teller"):
            result = await_run(_spec(tmp_path / "bank.yaml"), store)
    finally:
        store.close()
    assert result.status == "failed"
    assert "connector 'vault' is down: cannot connect to MCP server" in result.error
    assert "keel connectors test vault" in result.error
    assert KEY not in result.error


def test_bad_input_is_an_error_not_a_traceback() -> None:
    for args, words in [
        (["connectors", "add", "v", "--server", "ftp://x"], "neither `stdio:COMMAND ARGS` nor an http(s):// URL"),
        (["connectors", "add", "v", "--server", "stdio:no-such-server-xyz"], "not found on PATH"),
        (["connectors", "add", "V!", "--server", "http://127.0.0.1:1/mcp"], "connector name 'V!' is not allowed"),
        (["connectors", "add", "v", "--server", "http://127.0.0.1:1/mcp", "--header", "A=${NOPE_NOT_SET}"],
         "${NOPE_NOT_SET}, which is not set"),
        (["connectors", "add", "v", "--server", "http://127.0.0.1:1/mcp", "--approve", "x=maybe"],
         "neither always nor never"),
        (["connectors", "show", "nope"], "no connector named 'nope'"),
        (["connectors", "remove", "nope"], "no connector named 'nope'"),
    ]:
        r = keel(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert words in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr


def _node_spec(path: Path, tool: str = "balance", extra: str = "") -> Path:
    path.write_text(f"""
name: bank
nodes:
  - {{id: start, type: start}}
  - {{id: look, type: mcp, connector: vault, tool: {tool}, arguments: {{account: "input_as_text"}}{extra}}}
  - {{id: done, type: end, output: "string(input.output_parsed.balance)"}}
edges:
  - {{from: start, to: look}}
  - {{from: look, to: done}}
""")
    return path


def test_an_mcp_node_calls_a_connector_tool_and_follows_its_approval(keel_home: Path, tmp_path: Path) -> None:
    import asyncio

    from keel.workflows import aapprove

    assert keel("connectors", "add", "vault", "--server", STDIO, "--env", f"VAULT_API_KEY={KEY}",
                "--tool", "balance", "--approve", "balance=always").returncode == 0
    with pytest.raises(SpecError) as e:
        publish(_node_spec(tmp_path / "wipe.yaml", tool="wipe"))
    assert e.value.problems[0].path == "nodes[1].tool"
    assert "tools wipe are not in the allow-list of connector 'vault'" in e.value.problems[0].message
    with pytest.raises(SpecError) as e:
        publish(_node_spec(tmp_path / "never.yaml", extra=", approval: never"))
    assert "makes balance `never`" in e.value.problems[0].message

    store = open_store(keel_home)
    try:
        waiting = asyncio.run(arun(_node_spec(tmp_path / "bank.yaml"), "acme", store=store))
        assert waiting.status == "waiting"  # the connector requires approval for balance
        done = asyncio.run(aapprove(waiting.approval.id, store=store))
        assert done.status == "succeeded", done.error
        assert done.output == "1234.5"
    finally:
        store.close()
    assert KEY.encode() not in _files_text(keel_home)


def test_the_key_file_is_private_and_another_key_cannot_open_the_credentials(keel_home: Path) -> None:
    assert keel("connectors", "add", "vault", "--server", STDIO, "--env", f"VAULT_API_KEY={KEY}").returncode == 0
    key_file = keel_home / "connectors.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert keel("connectors", "test", "vault").returncode == 0

    other = keel("connectors", "test", "vault", env={"KEEL_SECRET_KEY": "another deployment's secret"})
    assert other.returncode == 2
    assert "cannot decrypt the credentials of connector 'vault'" in other.stderr
    assert "KEEL_SECRET_KEY" in other.stderr and "Traceback" not in other.stderr
    assert keel("connectors", "show", "vault").returncode == 0  # reading the configuration needs no key

    # With KEEL_SECRET_KEY set, no key file is needed or made.
    key_file.unlink()
    env = {"KEEL_SECRET_KEY": "deployment secret 1"}
    assert keel("connectors", "add", "vault", "--server", STDIO, "--env", f"VAULT_API_KEY={KEY}", "--replace",
                env=env).returncode == 0
    assert keel("connectors", "test", "vault", env=env).returncode == 0
    assert not key_file.exists()
