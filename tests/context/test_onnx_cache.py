"""Issue 18, the ONNX embedder's shared graph cache: one graph per user and weights, written
atomically (two processes exporting at once both end with a whole file), a damaged file
exported again, and plain ``minilm`` using ONNX Runtime for batches (same vectors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keel.context.embedders import MiniLMEmbedder, get_embedder
from tests.context._data import needs_minilm

_RACE = """
import json, sys, time
from pathlib import Path
from keel.context.onnx_minilm import cached_model
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
print(json.dumps(str(cached_model(Path(sys.argv[1]), cache=Path(sys.argv[3])))))
"""


def _safetensors(path: Path, data: bytes) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [len(data) // 4], "data_offsets": [0, len(data)]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)
    return path


def test_cache_key_is_the_weights_not_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tokenizers")
    from keel.context import onnx_minilm
    from keel.context.onnx_minilm import cache_dir, weights_key

    rng = np.random.default_rng(0)
    data = rng.standard_normal(600_000).astype(np.float32).tobytes()  # 2.4 MB: sampled, not read whole
    a = _safetensors(tmp_path / "a" / "model.safetensors", data).parent
    b = _safetensors(tmp_path / "b" / "model.safetensors", data).parent  # a copy elsewhere: the same graph
    changed = bytearray(data)
    changed[::4096] = bytes(x ^ 0xFF for x in changed[::4096])  # other weights: every 64 KiB block differs
    c = _safetensors(tmp_path / "c" / "model.safetensors", bytes(changed)).parent
    key = weights_key(a)
    assert key == weights_key(b)
    assert key != weights_key(c)
    monkeypatch.setattr(onnx_minilm, "GRAPH_VERSION", onnx_minilm.GRAPH_VERSION + 1)
    assert weights_key(a) != key  # a new graph builder exports again

    # the cache is the user's, not KEEL_HOME's: KEEL_ONNX_CACHE, else XDG_CACHE_HOME, else ~/.cache
    monkeypatch.setenv("KEEL_ONNX_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("KEEL_ONNX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "keel" / "onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "keel" / "onnx"


@needs_minilm
def test_a_home_that_cannot_be_written_puts_the_graph_under_keel_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keel_home: Path) -> None:
    """A service whose HOME is read-only (systemd ProtectHome, a read-only container with a data
    volume): the graph goes to $KEEL_HOME/models/onnx instead of failing or falling back to NumPy."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from keel.context.onnx_minilm import OnnxMiniLM, cache_dir

    texts = ["rotate the signing keys", "boundary layer transition on a flat plate"]
    want = MiniLMEmbedder(runtime="numpy").embed(texts)
    (tmp_path / "home-file").write_text("x")  # a cache under a file cannot be made, even by root
    homes = [tmp_path / "home-file"]
    if os.geteuid() != 0:  # root writes into a read-only folder anyway: only a plain user sees its mode
        (tmp_path / "readonly").mkdir(mode=0o555)
        homes.append(tmp_path / "readonly")
    for home in homes:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        monkeypatch.setenv("HOME", str(home))
        assert cache_dir() == keel_home / "models" / "onnx"
        monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
        assert cache_dir() == keel_home / "models" / "onnx"
    model = OnnxMiniLM(MiniLMEmbedder.model_path())
    assert model.path.parent == keel_home / "models" / "onnx" and model.path.stat().st_size > 50_000_000
    assert float((model.encode(texts) * want).sum(axis=1).min()) > 1 - 1e-5
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # writable again: the shared cache
    assert cache_dir() == tmp_path / "xdg" / "keel" / "onnx"
    monkeypatch.setenv("KEEL_ONNX_CACHE", str(tmp_path / "home-file" / "onnx"))  # set by hand: used as given
    assert cache_dir() == tmp_path / "home-file" / "onnx"


@pytest.mark.slow  # two exports at once and one more: ~10 s on a quiet machine
@needs_minilm
def test_two_processes_exporting_at_once_both_get_a_whole_graph(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from keel.context.onnx_minilm import OnnxMiniLM

    model_dir = Path(MiniLMEmbedder.model_path())
    cache, go = tmp_path / "cache", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(model_dir), str(go), str(cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()  # both processes are waiting: release them together
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    paths = {json.loads(o[0].strip().splitlines()[-1]) for o in outs}
    assert len(paths) == 1
    graph = Path(paths.pop())
    # one graph and its note, no temporary file left behind by either writer
    assert sorted(p.name for p in cache.iterdir()) == sorted([graph.name, graph.with_suffix(".json").name])

    texts = ["How do I rotate keys?", "boundary layer transition on a flat plate at high speed"] * 5
    want = MiniLMEmbedder(runtime="numpy").embed(texts)
    got = OnnxMiniLM(model_dir, cache=cache).encode(texts)
    assert float((got * want).sum(axis=1).min()) > 1 - 1e-5

    # a damaged file (a disk error, a copy cut short) is exported again instead of failing every load
    graph.write_bytes(b"not an onnx graph")
    again = OnnxMiniLM(model_dir, cache=cache)
    assert again.path == graph and graph.stat().st_size > 50_000_000
    assert float((again.encode(texts) * want).sum(axis=1).min()) > 1 - 1e-5


@needs_minilm
def test_minilm_runs_batches_through_onnx_and_keeps_its_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from keel.context.onnx_minilm import OnnxMiniLM, cache_dir

    monkeypatch.setattr(MiniLMEmbedder, "_models", {})
    emb = get_embedder("minilm")
    assert emb.runtime == "auto" and emb.name == "minilm:all-MiniLM-L6-v2"  # type: ignore[attr-defined]
    one = emb.embed(["rotate the signing keys"])  # a one-shot query: NumPy, no ONNX session to wait for
    assert set(MiniLMEmbedder._models) == {"numpy"}
    texts = [f"document {i} about boundary layers and heat transfer at Mach {i}" for i in range(12)]
    batch = emb.embed(texts)  # ingest: ONNX Runtime, from the user's shared cache
    assert isinstance(MiniLMEmbedder._models["onnx"], OnnxMiniLM)
    assert MiniLMEmbedder._models["onnx"].path.parent == cache_dir()  # type: ignore[attr-defined]
    numpy_batch = MiniLMEmbedder._models["numpy"].encode(texts)  # type: ignore[attr-defined]
    assert float((batch * numpy_batch).sum(axis=1).min()) > 1 - 1e-5
    again = emb.embed(["rotate the signing keys"])  # once loaded, ONNX answers queries too: same vector
    assert float((again * one).sum()) > 1 - 1e-5


@pytest.mark.slow  # the fused export and its quantisation, ADI ingested twice: ~20 s on a quiet machine
@needs_minilm
def test_int8v2_keeps_adi_ndcg_within_0005_of_float(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from keel.context import Collection
    from keel.context.metrics import evaluate
    from keel.context.smart import load_smart
    from tests.context._data import dataset

    data = load_smart(dataset("adi"))
    monkeypatch.setattr(MiniLMEmbedder, "_models", {})
    int8v2 = get_embedder("minilm-int8v2")
    assert int8v2.name == "minilm-int8v2:all-MiniLM-L6-v2"  # its own vectors: never mixed with float's
    scores = {}
    for spec in ("minilm-onnx", "minilm-int8v2"):
        with Collection.open(f"adi-{spec}", embedder=spec) as col:
            col.add_records([(d.id, d.title, d.text, {}) for d in data.docs])
            qv = col.embedder.embed([q.text for q in data.queries])
            for mode in ("dense", "hybrid"):
                run = {q.id: [h.citation.source for h in col.search(q.text, mode=mode, k=100, query_vector=qv[i])]
                       for i, q in enumerate(data.queries)}
                scores[spec, mode] = evaluate(run, data.qrels)["ndcg@10"]
    for mode in ("dense", "hybrid"):
        assert abs(scores["minilm-int8v2", mode] - scores["minilm-onnx", mode]) <= 0.005, scores
    texts = [d.text for d in data.docs[:40]]
    cos = (int8v2.embed(texts) * get_embedder("minilm-onnx").embed(texts)).sum(axis=1)
    assert float(cos.mean()) > 0.99 and float(cos.min()) < 1 - 1e-4, cos  # close to float, but not float
    with pytest.raises(Exception, match="uses the embedder 'minilm-int8v2:all-MiniLM-L6-v2', not 'minilm-int8'"):
        Collection.open("adi-minilm-int8v2", embedder="minilm-int8")
