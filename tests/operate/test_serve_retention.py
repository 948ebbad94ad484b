"""`retention =` (issue 17): a real `keel serve` prunes its store periodically, on SQLite and
PostgreSQL; a bad value stops it at start with one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.store import open_store
from tests.operate.conftest import server_env, start_server
from tests.test_store_retention import _seed


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_serve_applies_the_retention_setting(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        (home / "keel.toml").write_text(f'store = "{url}"\nretention = "30d"\n', encoding="utf-8")
    else:
        url = f"sqlite:///{home / 'keel.db'}"
        (home / "keel.toml").write_text('retention = "30d"\n', encoding="utf-8")
    store = open_store(url=url)
    _seed(store)
    store.close()
    server = start_server(home, env={"KEEL_PRUNE_INTERVAL": "0.5"})
    try:
        store = open_store(url=url)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ids = {r["id"] for r in store.query("SELECT id FROM workflow_runs")}
                if "old-ok" not in ids:
                    break
                time.sleep(0.2)
            assert ids == {"old-running", "old-waiting", "new-ok"}
            assert {r["id"] for r in store.query("SELECT id FROM serve_requests WHERE id LIKE 'r-%'")} == {"r-new"}
        finally:
            store.close()
    finally:
        server.stop()


def test_a_bad_retention_value_stops_serve_with_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "keel.toml").write_text('retention = "a month"\n', encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "keel", "serve", "--port", "0"], capture_output=True, text=True,
                       timeout=120, env=server_env(home), cwd=home)
    assert r.returncode != 0 and "Traceback" not in r.stdout + r.stderr
    assert "retention (keel.toml or KEEL_RETENTION): cannot read 'a month' as an age" in r.stderr
