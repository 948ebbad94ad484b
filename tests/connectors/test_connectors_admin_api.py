"""Writing the registry over HTTP on a real ``keel serve`` (docs/connectors.md, "Over HTTP"):
an admin key of every workflow adds, tests and removes an HTTP connector (a real MCP server
subprocess that wants an API key in a header); other keys get 403; a stdio: server is refused;
runs of an API key the connector does not allow fail naming the key and the fix (started on
``/v1/workflows/.../runs``, on the OpenAI-compatible endpoint and in a ChatKit thread); the
connector's key is never in an answer or the server's log."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.connectors.test_connectors import KEY, WRONG, http_server  # noqa: F401 (a fixture)
from tests.operate.conftest import create_key, keel, start_server

SPEC = """
name: bank
nodes:
  - {id: start, type: start}
  - {id: look, type: mcp, connector: vault, tool: balance, arguments: {account: "input_as_text"}}
  - {id: done, type: end, output: "string(input.output_parsed.balance)"}
edges:
  - {from: start, to: look}
  - {from: look, to: done}
"""


@pytest.mark.slow
def test_admins_add_test_and_remove_connectors_over_http(http_server: str, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    admin = create_key(home, "admin", "--workflow", "*", "--admin")
    bank_admin = create_key(home, "bank-admin", "--workflow", "bank", "--admin")
    teller = create_key(home, "teller-1", "--workflow", "bank")
    intern = create_key(home, "intern", "--workflow", "bank")
    server = start_server(home)
    answers: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {admin}"}) as http:
            body = {"name": "vault", "server": http_server, "headers": {"X-Api-Key": KEY}, "tools": ["balance"],
                    "approval": {"balance": "never"}, "workflows": ["bank"], "keys": ["teller-*"]}
            added = http.post("/v1/connectors", json=body)
            assert added.status_code == 201, added.text
            assert added.json()["headers"] == ["X-Api-Key"] and added.json()["tools"] == ["balance"]
            again = http.post("/v1/connectors", json=body)
            assert again.status_code == 409 and "replace" in again.json()["error"]["hint"]

            tested = http.post("/v1/connectors/vault/test")
            assert tested.status_code == 200, tested.text
            tools = {t["name"]: t for t in tested.json()["tools"]}
            assert tools["balance"]["allowed"] and tools["balance"]["policy"] == "never"
            assert not tools["wipe"]["allowed"] and tools["wipe"]["policy"] == "always"

            # Who may use it: runs of a teller key reach the server, runs of another key fail their node.
            (home / "bank.yaml").write_text(SPEC)
            keel(home, "workflows", "publish", "bank.yaml")
            ok = http.post("/v1/workflows/bank/runs", json={"input": "acme"},
                           headers={"Authorization": f"Bearer {teller}"})
            assert ok.status_code == 200 and ok.json()["status"] == "succeeded", ok.text
            assert ok.json()["output"] == "1234.5"
            no = http.post("/v1/workflows/bank/runs", json={"input": "acme"},
                           headers={"Authorization": f"Bearer {intern}"})
            assert no.json()["status"] == "failed", no.text
            assert "connector 'vault' may not be used by runs of API key" in no.json()["error"]
            assert "(intern)" in no.json()["error"] and "--key intern --replace" in no.json()["error"]
            # The same on the OpenAI-compatible endpoint (every entry point records the run's key).
            chat = {"model": "bank", "messages": [{"role": "user", "content": "acme"}]}
            ok_chat = http.post("/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {teller}"})
            assert ok_chat.status_code == 200, ok_chat.text
            assert ok_chat.json()["choices"][0]["message"]["content"] == "1234.5"
            no_chat = http.post("/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {intern}"})
            assert no_chat.status_code == 502 and no_chat.json()["error"]["code"] == "run_failed", no_chat.text
            assert "connector 'vault' may not be used by runs of API key" in no_chat.json()["error"]["message"]
            assert "(intern)" in no_chat.json()["error"]["message"]
            thread = {"type": "threads.create", "metadata": {"workflow": "bank"},
                      "params": {"input": {"content": [{"type": "input_text", "text": "acme"}], "attachments": [],
                                           "inference_options": {}}}}
            said = {}
            for name, who in (("teller", teller), ("intern", intern)):  # and in a ChatKit thread
                r = http.post("/chatkit", json=thread, headers={"Authorization": f"Bearer {who}"})
                assert r.status_code == 200, r.text
                events = [json.loads(x[6:]) for x in r.text.splitlines() if x.startswith("data: ")]
                said[name] = " ".join(c["text"] for e in events if e["type"] == "thread.item.done"
                                      and e["item"]["type"] == "assistant_message" for c in e["item"]["content"])
            assert "1234.5" in said["teller"], said
            assert "connector 'vault' may not be used by runs of API key" in said["intern"], said
            assert "(intern)" in said["intern"] and "1234.5" not in said["intern"]

            wrong = http.post("/v1/connectors", json={**body, "headers": {"X-Api-Key": WRONG}, "replace": True})
            assert wrong.status_code == 201, wrong.text
            refused = http.post("/v1/connectors/vault/test")
            assert refused.status_code == 502 and "refused the credentials" in refused.json()["error"]["message"]

            stdio = http.post("/v1/connectors", json={"name": "shell", "server": "stdio:sh -c 'id'"})
            assert stdio.status_code == 422 and "server" in stdio.text
            assert http.get("/v1/connectors/shell").status_code == 404

            ui = http.get("/ui/api/connectors")  # the web UI's Connectors page reads the same, as admins only
            assert ui.status_code == 200 and [c["name"] for c in ui.json()["connectors"]] == ["vault"]
            other = {"Authorization": f"Bearer {bank_admin}"}
            assert http.get("/ui/api/connectors", headers=other).status_code == 403
            assert http.get("/ui/api/connectors/vault/tools", headers=other).status_code == 403
            assert http.post("/v1/connectors", json=body, headers=other).status_code == 403
            assert http.delete("/v1/connectors/vault", headers=other).status_code == 403
            assert http.post("/v1/connectors/vault/test", headers=other).status_code == 403

            # An HTTP API for the http tool: its hosts default to the URL's; `test` sends its headers.
            api = http.post("/v1/connectors", json={"name": "vault-api", "kind": "http", "server": http_server,
                                                     "headers": {"X-Api-Key": KEY}})
            assert api.status_code == 201 and api.json()["hosts"] == [http_server.split("/")[2]], api.text
            assert http.post("/v1/connectors/vault-api/test").status_code == 200
            assert http.post("/v1/connectors", json={"name": "x", "kind": "http", "server": http_server,
                                                     "oauth": True}).status_code == 422
            assert http.delete("/v1/connectors/vault-api").status_code == 200

            removed = http.delete("/v1/connectors/vault")
            assert removed.status_code == 200 and removed.json() == {"name": "vault", "deleted": True}
            assert http.delete("/v1/connectors/vault").status_code == 404
            assert http.get("/v1/connectors").json()["data"] == []
            answers = [r.text for r in (added, again, tested, ok, no, ok_chat, no_chat, wrong, refused, stdio, ui, api,
                                        removed)] + list(said.values())
    finally:
        server.stop()
    for secret in (KEY, WRONG):
        assert all(secret not in a for a in answers)
        assert secret not in server.log_text()
