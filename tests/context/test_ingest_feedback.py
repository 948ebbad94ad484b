"""`keel context` for a newcomer (issue 14, item 6): common text files are ingested, progress
shows on stderr, Ctrl-C says what was kept and the next run resumes from it, and a search
answers without loading torch. CLI runs are real subprocesses; the interrupted ingest embeds
through a real HTTP embeddings endpoint that holds its second request, so the SIGINT lands
mid-ingest without any timing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from keel.context.embedders import HashingTestEmbedder
from tests.context._data import needs_minilm


def _keel(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keel", "context", *args], capture_output=True, text=True,
                          timeout=300, **kw)  # type: ignore[call-overload]


def test_code_and_config_files_are_ingested_and_found(tmp_path: Path) -> None:
    src = tmp_path / "repo"
    (src / "web").mkdir(parents=True)
    (src / "web" / "vault.ts").write_text("export function rotateSigningKeys(vault: Vault): void {\n"
                                          "  vault.rotate('signing');\n}\n")
    (src / "web" / "menu.js").write_text("const quokkaMenu = ['soup', 'bread'];\n")
    (src / "deploy.yaml").write_text("server:\n  port: 8080\n  retention_days: 42\n")
    (src / "flags.json").write_text('{"feature": "quarantine_mode", "ttl_seconds": 900}\n')
    (src / "pyproject.toml").write_text('[tool.zebrafish]\nlevel = "strict"\n')
    (src / "team.csv").write_text("name,role\nalice,approver\nbob,requester\n")
    (src / "notes.rst").write_text("Runbook\n=======\n\nRestart the gizmotron nightly.\n")
    added = _keel("add", "repo", str(src), "--embedder", "test-hashing", "--json")
    assert added.returncode == 0, added.stderr
    report = json.loads(added.stdout)
    assert report["files_indexed"] == 7 and report["skipped"] == [], report
    for query, source in [("rotateSigningKeys", "vault.ts"), ("quokkaMenu", "menu.js"),
                          ("retention_days", "deploy.yaml"), ("quarantine_mode", "flags.json"),
                          ("zebrafish", "pyproject.toml"), ("approver", "team.csv"), ("gizmotron", "notes.rst")]:
        found = _keel("search", "repo", query, "--mode", "bm25", "--json", "-k", "1")
        assert found.returncode == 0, found.stderr
        hits = json.loads(found.stdout)["hits"]
        assert hits and hits[0]["source"].endswith(source), (query, hits)
    ts = json.loads(_keel("search", "repo", "vault", "--where", "lang = typescript", "--json").stdout)["hits"]
    assert [h["source"].rsplit("/", 1)[-1] for h in ts] == ["vault.ts"]
    assert ts[0]["meta"]["kind"] == "code"


def test_progress_shows_on_stderr_when_asked_and_not_in_a_pipe_otherwise(tmp_path: Path) -> None:
    src = tmp_path / "docs"
    src.mkdir()
    for i in range(3):
        (src / f"d{i}.md").write_text(f"# Doc {i}\n\nParagraph about topic {i}.\n")
    forced = _keel("add", "a", str(src), "--embedder", "test-hashing", "--progress")
    assert forced.returncode == 0, forced.stderr
    assert "indexing into a: 3/3 files, 3 chunks, 3 embedded" in forced.stderr.splitlines()
    quiet_pipe = _keel("add", "b", str(src), "--embedder", "test-hashing")
    assert quiet_pipe.returncode == 0 and "indexing into" not in quiet_pipe.stderr
    both = _keel("add", "c", str(src), "--embedder", "test-hashing", "--progress", "--quiet")
    assert both.returncode == 0 and "indexing into" not in both.stderr


class _HeldEmbeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings endpoint; request number ``hold_at`` waits for ``release``."""

    hold_at = 0
    requests: list[int] = []  # noqa: RUF012 - reset per test
    held = threading.Event()
    release = threading.Event()

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        cls = type(self)
        cls.requests.append(len(body["input"]))
        if len(cls.requests) == cls.hold_at:
            cls.held.set()
            cls.release.wait(60)
        vecs = HashingTestEmbedder().embed(body["input"])
        raw = json.dumps({"object": "list", "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1},
                          "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                                   for i, v in enumerate(vecs)]}).encode()
        try:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except OSError:
            pass  # the interrupted client has gone


@pytest.fixture
def held_embeddings(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    _HeldEmbeddings.requests = []
    _HeldEmbeddings.held = threading.Event()
    _HeldEmbeddings.release = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HeldEmbeddings)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("KEEL_OPENAI_COMPATIBLE_API_KEY", "test")
    try:
        yield f"openai-compatible:http://127.0.0.1:{server.server_address[1]}/v1#held"
    finally:
        _HeldEmbeddings.release.set()
        server.shutdown()


def test_ctrl_c_during_ingest_says_what_was_kept_and_the_rerun_resumes(tmp_path: Path, held_embeddings: str) -> None:
    src = tmp_path / "handbook"
    src.mkdir()
    rng = np.random.default_rng(7)
    words = ["policy", "refund", "travel", "expense", "approval", "manager", "receipt", "hotel", "flight", "limit", "budget", "claim"]
    for i in range(40):  # 40 files x 4 chunks: several embedding requests
        paras = [" ".join(rng.choice(words, 150)) + f" (file {i}, part {j})" for j in range(4)]
        (src / f"doc{i:02d}.txt").write_text("\n\n".join(paras) + "\n")
    _HeldEmbeddings.hold_at = 2
    proc = subprocess.Popen([sys.executable, "-m", "keel", "context", "add", "hb", str(src), "--embedder",
                             held_embeddings, "--progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    try:
        while not _HeldEmbeddings.held.wait(0.5):
            assert proc.poll() is None, f"the ingest ended before its second embedding request: {proc.communicate()}"
        proc.send_signal(signal.SIGINT)  # while the second request is in flight
        out, err = proc.communicate(timeout=120)
    finally:
        _HeldEmbeddings.release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    kept = re.search(r"error: interrupted: kept (\d+) newly indexed files \((\d+) chunks\) in collection 'hb' "
                     r"and (\d+) chunk vectors in the embedding cache", err)
    assert kept, err
    files_kept, vectors_kept = int(kept[1]), int(kept[3])
    assert 0 < files_kept < 40 and vectors_kept == _HeldEmbeddings.requests[0], (err, _HeldEmbeddings.requests)
    assert "fix: run the same `keel context add` again to resume" in err

    _HeldEmbeddings.hold_at = 0
    before = len(_HeldEmbeddings.requests)
    again = _keel("add", "hb", str(src), "--embedder", held_embeddings, "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["files_unchanged"] == files_kept and report["files_indexed"] == 40 - files_kept
    # only what the interrupted run had not embedded is embedded now
    assert report["chunks_embedded"] == 160 - vectors_kept
    assert sum(_HeldEmbeddings.requests[before:]) == 160 - vectors_kept
    stats = json.loads(_keel("stats", "hb", "--json").stdout)
    assert stats["documents"] == 40 and stats["chunks"] == 160


@needs_minilm
def test_search_with_the_default_embedder_loads_neither_torch_nor_scipy(tmp_path: Path) -> None:
    src = tmp_path / "docs"
    src.mkdir()
    (src / "keys.md").write_text("# Rotating keys\n\nRotate the signing keys every 90 days with `keel keys`.\n")
    (src / "food.md").write_text("# Lunch\n\nThe canteen serves soup on Fridays.\n")
    assert _keel("add", "docs", str(src), "-q").returncode == 0
    script = ("import json, sys\nfrom keel.cli import main\n"
              "sys.argv = ['keel', 'context', 'search', 'docs', 'how often do I change credentials', '--json']\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print(json.dumps(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'scipy')"
              " if m in sys.modules)))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result, loaded = run.stdout.strip().splitlines()
    assert json.loads(loaded) == []
    hits = json.loads(result)["hits"]
    assert hits[0]["source"].endswith("keys.md") and "dense" in hits[0]["scores"]


@needs_minilm
def test_numpy_minilm_gives_sentence_transformers_vectors() -> None:
    """Collections indexed with sentence-transformers stay valid: the same vectors within 1e-5."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    from keel.context.embedders import MiniLMEmbedder

    texts = ["How do I rotate keys?", "a", "Ünïcödé — ‘quotes’ 中文 emoji 🎉", "word " * 400,  # truncated at 256
             "def f(x):\n    return x * 2\n", "   spaces   and\ttabs\n\n\nnewlines   "]
    ours = MiniLMEmbedder(runtime="numpy").embed(texts)  # the default (auto) runs batches on ONNX
    theirs = SentenceTransformer(MiniLMEmbedder.model_path(), device="cpu").encode(
        texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
    cos = (ours * theirs).sum(axis=1)
    assert ours.shape == (6, 384) and ours.dtype == np.float32
    assert float(cos.min()) > 1 - 1e-5, cos
