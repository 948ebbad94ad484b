"""The real MiniLM embedder on ADI, an OpenAI-compatible embeddings endpoint over real
HTTP, the LLM reranker through a scripted model, context assembly, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.context import Collection
from keel.context.assemble import assemble
from keel.context.embedders import HashingTestEmbedder, OpenAIEmbedder, get_embedder
from keel.context.rerank import LLMReranker
from keel.context.types import Citation, Hit
from keel.errors import ProviderAuthError
from keel.models.scripted import scripted
from tests.context._data import dataset, needs_minilm


@needs_minilm
def test_minilm_bench_on_adi_hybrid_beats_each_signal() -> None:
    from keel.context.bench import run_bench

    result = run_bench(dataset("adi")).to_json()
    assert result["docs"] == 82 and result["queries"] == 35
    modes = result["modes"]
    assert set(modes) == {"dense", "bm25", "bm25+rm3", "hybrid", "hybrid-rrf"}  # every mode run is reported
    assert result["fusion"] == "convex dense 0.5"
    assert modes["dense"]["ndcg@10"] > 0.4
    assert modes["hybrid"]["ndcg@10"] >= max(modes["dense"]["ndcg@10"], modes["bm25"]["ndcg@10"])
    assert modes["hybrid"]["recall@100"] > 0.95
    # the second run reuses the collection: nothing is embedded again
    with Collection.open("bench-adi") as col:
        assert col.add_records([("1", "x", "y", {})]).chunks_embedded == 1
        assert col.embedder.name == "minilm:all-MiniLM-L6-v2"


@needs_minilm
def test_minilm_vectors_are_normalised_and_semantic() -> None:
    emb = get_embedder("minilm")
    v = emb.embed(["How do I reset my password?", "Steps to recover a forgotten password", "Bananas are yellow"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


class _Embeddings(BaseHTTPRequestHandler):
    calls: ClassVar[list[dict]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).calls.append({"path": self.path, "auth": self.headers.get("authorization"), **body})
        if self.headers.get("authorization") == "Bearer bad":
            self._send(401, {"error": {"message": "invalid key"}})
            return
        vecs = HashingTestEmbedder().embed(body["input"]) * 3.0  # not normalised: Keel normalises
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)]
        self._send(200, {"object": "list", "data": data[::-1], "model": body["model"],
                         "usage": {"prompt_tokens": 1, "total_tokens": 1}})

    def _send(self, status: int, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    _Embeddings.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


def test_openai_compatible_embedder_batches_and_caches(embeddings_server: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_OPENAI_COMPATIBLE_API_KEY", "good")
    spec = f"openai-compatible:{embeddings_server}#embed-small"
    emb = get_embedder(spec)
    assert isinstance(emb, OpenAIEmbedder)
    emb.batch_size = 4
    v = emb.embed([f"text {i}" for i in range(10)])
    assert v.shape == (10, 256) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.allclose(v[3], HashingTestEmbedder().embed(["text 3"])[0], atol=1e-5)  # order restored
    assert [len(c["input"]) for c in _Embeddings.calls] == [4, 4, 2]
    assert _Embeddings.calls[0]["auth"] == "Bearer good" and _Embeddings.calls[0]["path"] == "/v1/embeddings"

    (tmp_path / "a.md").write_text("# A\n\nAlpha section.\n\n## B\n\nBeta section.\n")
    with Collection.open("remote", embedder=spec) as col:
        first = col.add([tmp_path])
        assert first.chunks_embedded == 2
        before = len(_Embeddings.calls)
        # a new collection with the same embedder reuses the cache keyed by (content hash, model)
        with Collection.open("remote2", embedder=spec) as col2:
            assert col2.add([tmp_path]).chunks_embedded == 0
        assert len(_Embeddings.calls) == before
        assert col.search("beta", mode="dense", k=1)[0].citation.anchor == "b"

    bad = OpenAIEmbedder("m", base_url=embeddings_server, api_key="bad", provider="openai-compatible")
    with pytest.raises(ProviderAuthError, match="refused the API key"):
        bad.embed(["x"])


def _hit(i: int, text: str, source: str = "doc.md") -> Hit:
    return Hit(chunk_id=i, text=text, score=1.0 / (i + 1),
               citation=Citation(source=source, anchor=f"s{i}", start_line=i * 10 + 1, end_line=i * 10 + 9))


def test_llm_reranker_through_a_scripted_model() -> None:
    hits = [_hit(i, f"passage number {i} about topic {i}") for i in range(12)]
    with scripted("judge") as judge:
        # two batches of at most 10: the model grades passage 3 highest, then 11
        judge.reply(parsed={"scores": [{"id": i, "score": 9 if i == 4 else 1} for i in range(1, 11)]})
        judge.reply(parsed={"scores": [{"id": 1, "score": 0}, {"id": 2, "score": 7}]})
        out = LLMReranker("scripted:judge", depth=30).rerank("topic 3", hits)
        assert [h.chunk_id for h in out[:2]] == [3, 11]
        assert out[0].scores["rerank"] == 9
        assert [h.chunk_id for h in out[2:5]] == [0, 1, 2]  # ties keep first-stage order
        prompt = judge.calls[0].messages[-1].content
        assert "passage number 0" in prompt and "untrusted data" in judge.calls[0].messages[0].content
        assert judge.calls[0].output_schema["properties"]["scores"]["maxItems"] == 10


def test_rerank_in_search(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Alpha\n\nalpha one\n\n# Beta\n\nalpha two\n")
    with Collection.open("rr", embedder="test-hashing") as col, scripted("judge2") as judge:
        col.add([tmp_path])
        judge.reply(parsed={"scores": [{"id": 1, "score": 1}, {"id": 2, "score": 8}]})
        hits = col.search("alpha", rerank="scripted:judge2", k=2)
        assert hits[0].score == 8 and hits[0].scores["rerank"] == 8


def test_assembly_dedups_diversifies_and_caps_tokens() -> None:
    long = ("The retry policy waits with exponential backoff between attempts, starting at half a second and "
            "doubling each time up to a cap of thirty seconds. Only transient failures are retried: timeouts, "
            "connection resets, HTTP 429 and 5xx answers. A request that already streamed text to the caller is "
            "never retried, because the caller would see the same text twice. The number of attempts is set "
            "with KEEL_MAX_RETRIES and defaults to three.")
    hits = [
        _hit(0, long, "a.md"),
        _hit(1, long.replace("The retry", "the  retry"), "b.md"),         # exact duplicate after folding
        _hit(2, long + " See also the rate limits.", "c.md"),          # near duplicate
        _hit(3, "Keys rotate every ninety days. " * 5, "a.md"),
        _hit(4, "Traces follow the OpenTelemetry GenAI conventions. " * 5, "a.md"),
        _hit(5, "Budgets are enforced per key. " * 5, "a.md"),             # over the per-source cap
        _hit(6, "Forks share chunk content. " * 5, "d.md"),
    ]
    ctx = assemble(hits, instructions="Answer from the sources only.", max_tokens=10_000, per_source=3)
    assert ctx.text.startswith("Answer from the sources only.")
    assert ctx.merged_duplicates == 2 and ctx.dropped_for_source_cap == 1
    first = ctx.pieces[0]
    assert [c.source for c in first.also_cited] == ["b.md", "c.md"]
    assert 'cite="a.md#s0 (lines 1-9); b.md#s1' in ctx.text
    assert [p.citation.source for p in ctx.pieces] == ["a.md", "a.md", "a.md", "d.md"]

    small = assemble(hits, instructions="Answer.", max_tokens=200)
    assert small.tokens <= 200 and small.dropped_for_tokens > 0 and small.pieces
    assert small.tokenizer == "wordpiece:all-MiniLM-L6-v2" or small.tokenizer == "approx-words"
    from keel.context.tokens import default_counter

    assert default_counter()[0](small.text) == small.tokens

    from keel.errors import UserError

    with pytest.raises(UserError, match="instructions alone"):
        assemble(hits, instructions="word " * 500, max_tokens=50)


runner = CliRunner()


def test_cli_add_search_stats_fork(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Install\n\nRun pip install keel.\n\n## Use\n\n"
                                                 "Call keel context search.\n")
    (tmp_path / "docs" / "bad.md").write_bytes(b"\x00\x01")
    r = runner.invoke(app, ["context", "add", "kb", str(tmp_path / "docs"), "--embedder", "test-hashing",
                            "--meta", "team=docs", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["files_indexed"] == 1 and rep["skipped"][0]["reason"].startswith("binary")
    r = runner.invoke(app, ["context", "search", "kb", "install keel", "--json", "--k", "1", "--where", "team = docs"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["hits"][0]["anchor"] == "install" and out["hits"][0]["start_line"] == 5
    r = runner.invoke(app, ["context", "search", "kb", "install", "--mode", "bm25"])
    assert "guide.md#install (lines 5-5)" in r.output
    r = runner.invoke(app, ["context", "fork", "kb", "kb-branch"])
    assert r.exit_code == 0 and "forked kb -> kb-branch" in r.output
    r = runner.invoke(app, ["context", "stats", "--json"])
    stats = json.loads(r.output)
    assert [s["name"] for s in stats] == ["kb", "kb-branch"] and stats[1]["parent"] == "kb"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "kb", "x", "--where", "colour = red"], "unknown filter field 'colour'"),
        (["search", "kb", "x", "--regex", "(unclosed"], "invalid regex '(unclosed'"),
        (["search", "kb", "x", "--where", "team ="], "--where ends too early"),
        (["search", "nope", "x"], "no collection named 'nope'"),
        (["search", "kb", "x", "--mode", "sparse"], "unknown search mode 'sparse'"),
        (["bench", "--dataset", "/no/such/dir"], "does not exist"),
        (["add", "kb", "/no/such/file.md"], "no such file or directory"),
        (["add", "kb", ".", "--meta", "novalue"], "--meta 'novalue' is not KEY=VALUE"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, keel_home: Path, args: list[str], message: str) -> None:
    (tmp_path / "a.md").write_text("# A\n\ntext\n")
    with Collection.open("kb", embedder="test-hashing") as col:
        col.add([tmp_path])
    proc = subprocess.run([sys.executable, "-m", "keel", "context", *args], capture_output=True, text=True,
                          env={"KEEL_HOME": str(keel_home), "PATH": "/usr/bin:/bin",
                               **{k: v for k, v in os.environ.items() if k == "KEEL_STORE_URL"}}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {message}") or message in proc.stderr.splitlines()[0], proc.stderr
    assert "Traceback" not in proc.stderr


@needs_minilm
def test_cli_bench_json_shape() -> None:
    r = runner.invoke(app, ["context", "bench", "--dataset", str(dataset("adi")), "--format", "smart", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["dataset"] == "adi" and out["docs"] == 82 and out["queries"] == 35
    assert set(out["modes"]) == {"dense", "bm25", "bm25+rm3", "hybrid", "hybrid-rrf"}
    assert set(out["latency_ms"]) == set(out["modes"])
    for scores in out["modes"].values():
        assert set(scores) == {"ndcg@10", "recall@100", "mrr@10"}
