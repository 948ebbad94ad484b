"""``/v1/connectors`` on a real ``keel serve``: admin keys of every workflow read the registry,
credentials by name only; other keys get 403, an unknown name 404."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.connectors.test_connectors import KEY, STDIO
from tests.operate.conftest import create_key, keel, start_server


def test_admins_read_connectors_without_their_secrets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    keel(home, "connectors", "add", "vault", "--server", STDIO, "--env", f"VAULT_API_KEY={KEY}",
         "--tool", "balance", "--workflow", "bank")
    admin = create_key(home, "admin", "--workflow", "*", "--admin")
    bank_admin = create_key(home, "bank-admin", "--workflow", "bank", "--admin")
    server = start_server(home)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            auth = {"Authorization": f"Bearer {admin}"}
            listed = http.get("/v1/connectors", headers=auth)
            assert listed.status_code == 200, listed.text
            [doc] = listed.json()["data"]
            assert doc["name"] == "vault" and doc["env"] == ["VAULT_API_KEY"] and doc["tools"] == ["balance"]
            one = http.get("/v1/connectors/vault", headers=auth)
            assert one.status_code == 200 and one.json()["workflows"] == ["bank"]
            missing = http.get("/v1/connectors/nope", headers=auth)
            assert missing.status_code == 404 and "no connector named 'nope'" in missing.text
            refused = http.get("/v1/connectors", headers={"Authorization": f"Bearer {bank_admin}"})
            assert refused.status_code == 403
            assert "--workflow '*' --admin" in refused.json()["error"]["hint"]
            assert http.get("/v1/connectors").status_code == 401
            answers = listed.text + one.text + missing.text + refused.text
    finally:
        server.stop()
    assert KEY not in answers
    assert KEY not in server.log_text()
