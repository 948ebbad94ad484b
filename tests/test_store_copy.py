"""`keel store copy --to postgresql://...` (issue 17): a real embedded store (keel.db and a
collection) copied into a real PostgreSQL database by the real CLI, verified, and usable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from keel.context import Collection
from keel.context.embedders import HashingTestEmbedder
from keel.context.smart import load_smart
from keel.store import open_store
from keel.store.copy import table_checksum
from tests.context._data import dataset
from tests.test_store_retention import _seed


def _keel(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KEEL_STORE_URL"}
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True,
                          env={**env, "KEEL_HOME": str(home)}, timeout=300, cwd=home)


def test_copy_moves_tables_and_collections_verified(pg_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = open_store(url=f"sqlite:///{home / 'keel.db'}")
    _seed(src)
    # SQLite keeps whatever type it is given: an integer in a TEXT column must arrive as text
    src.execute("INSERT INTO serve_requests (id, started_at, method, path, status, latency_ms, workflow)"
                " VALUES ('r-int', 1.5, 'GET', '/x', 200, 1.0, 42)")
    counts = {t: src.query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"]
              for t in ("workflow_runs", "workflow_steps", "trace_spans", "model_calls", "serve_requests")}
    src.close()
    adi = load_smart(dataset("adi"))
    emb = HashingTestEmbedder()
    with Collection.open("adi", home=home, embedder=emb, store="") as col:
        col.add_records([(d.id, d.title, d.text, {"n": int(d.id)}) for d in adi.docs])
        want = [[h.citation.source for h in col.search(q.text, k=10)] for q in adi.queries]

    done = _keel("store", "copy", "--to", pg_url, "--json", home=home)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    by_name = {t["name"]: t for t in report["tables"]}
    for table, n in counts.items():
        assert by_name[table]["target_rows"] == n
    assert report["collections"][0]["name"] == "collection adi" and report["collections"][0]["target_rows"] == 82

    dst = open_store(url=pg_url)
    try:
        assert dst.query("SELECT workflow FROM serve_requests WHERE id = 'r-int'")[0]["workflow"] == "42"
        assert {r["id"] for r in dst.query("SELECT id FROM workflow_runs")} >= {"old-running", "new-ok"}
    finally:
        dst.close()
    with Collection.open("adi", store=pg_url, create=False, embedder=emb) as col:
        assert col.stats().documents == 82
        assert [[h.citation.source for h in col.search(q.text, k=10)] for q in adi.queries] == want

    # a second copy finds the target full and refuses, in one clear line
    again = _keel("store", "copy", "--to", pg_url, home=home)
    assert again.returncode != 0 and "Traceback" not in again.stdout + again.stderr
    assert "is not empty" in again.stderr and "--replace" in again.stderr
    # unless told
    replaced = _keel("store", "copy", "--to", pg_url, "--replace", home=home)
    assert replaced.returncode == 0, replaced.stderr
    assert "copy verified" in replaced.stdout


def test_checksum_sees_a_changed_value_and_ignores_order() -> None:
    kinds = ["text", "num"]
    a = table_checksum([["x", 1], ["y", 2.5]], kinds)
    assert a == table_checksum([["y", 2.5], ["x", 1.0]], kinds)
    assert a != table_checksum([["x", 1], ["y", 2.6]], kinds)
    assert a[0] == 2


def test_copy_refuses_a_target_that_is_not_postgresql(tmp_path: Path) -> None:
    bad = _keel("store", "copy", "--to", "mysql://x@y/z", home=tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stdout + bad.stderr
    assert "--to must be a PostgreSQL URL" in bad.stderr
