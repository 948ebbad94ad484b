"""Where MiniLM's int8 error enters, and whether SmoothQuant removes it (issue 18, decision 0035).

    python benchmarks/onnx_int8_sensitivity.py                  # cosine proxy + ADI nDCG@10 (~15 min busy)
    python benchmarks/onnx_int8_sensitivity.py --datasets adi,cranfield

Every variant is ``minilm-int8``'s recipe (dynamic quantisation, weights int8 per output
channel, activations uint8 per tensor per batch) on Keel's plain graph
(``keel.context.onnx_minilm.build_graph``), changed in one way:

- ``keep-<type>``: one kind of weight product (query, key, value, attention output,
  feed-forward in, feed-forward out) left in float32 in all six layers;
- ``keep-ffn-out-0``: only layer 0's feed-forward output left in float32;
- ``sq<alpha>``: SmoothQuant on the LayerNorm outputs that feed Q/K/V and the feed-forward
  input: a channel j of the activation is divided by s_j = amax_j^alpha / wmax_j^(1-alpha)
  (a Mul node) and row j of the weights multiplied by it, exact in float; ``amax`` is
  calibrated on 300 paragraphs of Keel's own docs/*.md, never on a test collection;
- ``sq0.7-ffn-out<alpha>``: the feed-forward output's input (GELU's) smoothed too;
- ``fused-all-sq0.7``: the fused graph (``build_fused_graph``) with Attention (Q/K/V) and
  every MatMul int8, with the same smoothing before Attention and the feed-forward input.

The fast proxy is the cosine to float32 on 282 real texts (200 Cranfield and 82 ADI
documents); then nDCG@10 on ``--datasets`` through ``onnx_variants.quality`` (Keel ingest,
dense and hybrid, change against float32). Results go to stdout.
"""

from __future__ import annotations

import argparse
import glob
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parent.parent
_LAYERS = 6
TYPES = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
         "attn-out": "attention.output.dense", "ffn-in": "intermediate.dense", "ffn-out": "output.dense"}


def calibration_texts(n: int = 300) -> list[str]:
    """Paragraphs of 180 words from Keel's own docs (dataset-independent), a fixed sample."""
    paras = []
    for f in sorted(glob.glob(str(ROOT / "docs" / "*.md"))):
        words = Path(f).read_text().split()
        paras += [" ".join(words[i:i + 180]) for i in range(0, len(words), 180)]
    idx = np.random.default_rng(0).permutation(len(paras))[:n]
    return [paras[i] for i in sorted(idx)]


class Runner:
    def __init__(self) -> None:
        from tokenizers import Tokenizer

        from keel.context.embedders import MiniLMEmbedder
        from keel.context.minilm import MAX_TOKENS

        self.md = Path(MiniLMEmbedder.model_path())
        self.tok = Tokenizer.from_file(str(self.md / "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.no_padding()

    def session(self, path: Path):
        import onnxruntime as ort

        o = ort.SessionOptions()
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        o.intra_op_num_threads, o.inter_op_num_threads = 2, 1
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])

    def embed(self, path: Path, texts: list[str], probe=None) -> np.ndarray:
        from keel.context.minilm import encode_by_length

        s = self.session(path)

        def fwd(ids, mask):
            outs = s.run(None, {"input_ids": ids, "attention_mask": mask})
            if probe:
                probe(outs[1:], mask)
            return outs[0]

        return encode_by_length(self.tok, texts, fwd, batch_size=16)


def weight_matmuls(model) -> list:
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits]


def activation_absmax(run: Runner, model, texts: list[str], out: Path) -> dict[str, np.ndarray]:
    """Per-channel max |x| over real tokens of every weight product's input, by weight name."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    ins = sorted({n.input[0] for n in weight_matmuls(m)})
    for name in ins:
        m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    onnx.save_model(m, str(out / "probe.onnx"))
    amax: dict[str, np.ndarray] = {}

    def probe(values, mask):
        for name, v in zip(ins, values, strict=True):
            amax[name] = np.maximum(amax.get(name, 0), np.abs(v[mask.astype(bool)]).max(0))

    run.embed(out / "probe.onnx", texts, probe)
    return {n.input[1]: amax[n.input[0]] for n in weight_matmuls(model)}


def smooth(model, amax: dict[str, np.ndarray], alpha: float, targets: list[tuple[object, str]]):
    """SmoothQuant: for each (node, weight name of the amax table), x / s before the node, s * W."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name: i for i in m.graph.initializer}
    by_input: dict[str, list] = {}
    nodes = {n.name: n for n in m.graph.node}
    for node_name, key in targets:
        by_input.setdefault(nodes[node_name].input[0], []).append((nodes[node_name], key))
    muls = []
    for x, group in by_input.items():
        ws = {n.input[1]: numpy_helper.to_array(inits[n.input[1]]) for n, _ in group}
        wmax = np.max([np.abs(w).max(1) for w in ws.values()], axis=0)
        s = (np.maximum(amax[group[0][1]], 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha)).astype(np.float32)
        for name, w in ws.items():
            inits[name].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), name))
        xs = f"{x}_smoothed"
        m.graph.initializer.append(numpy_helper.from_array((1 / s).astype(np.float32), xs + "_inv"))
        muls.append((group[0][0].name, helper.make_node("Mul", [x, xs + "_inv"], [xs], name=xs)))
        for n, _ in group:
            n.input[0] = xs
    order = list(m.graph.node)
    for first, mul in muls:  # before the first consumer: its input is already computed there
        order.insert(min(k for k, n in enumerate(order) if n.name == first or n.input[:1] == [mul.output[0]]), mul)
    del m.graph.node[:]
    m.graph.node.extend(order)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="adi", help="nDCG@10 datasets ('' skips quality)")
    ap.add_argument("--texts", type=int, default=282, help="texts for the cosine proxy (Cranfield, then ADI)")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    args = ap.parse_args()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from retrieval_speed import docs_texts

    from keel.context.onnx_minilm import build_fused_graph, build_graph

    run = Runner()
    out = Path(tempfile.mkdtemp(prefix="keel-int8-sensitivity-"))
    try:
        plain = build_graph(run.md)
        fp32 = out / "fp32.onnx"
        onnx.save_model(plain, str(fp32))
        amax = activation_absmax(run, plain, calibration_texts(), out)
        mm = {n.input[1]: n.name for n in weight_matmuls(plain)}
        attention_products = [f"attention_{p}_{i}" for i in range(_LAYERS) for p in ("scores", "context")]

        def of_type(t: str) -> list[str]:
            return [mm[f"encoder.layer.{i}.{TYPES[t]}.weight_t"] for i in range(_LAYERS)]

        def ln_targets() -> list[tuple[str, str]]:
            return [(mm[k], k) for k in mm if any(t in k for t in ("self.query", "self.key", "self.value",
                                                                   "intermediate"))]

        fused = build_fused_graph(run.md)
        fused_amax = {}
        fused_targets = []
        for n in fused.graph.node:
            if n.op_type == "Attention" or n.name.startswith("ffn_in_"):
                i = int(n.name.rsplit("_", 1)[1])
                k = f"encoder.layer.{i}." + ("attention.self.query" if n.op_type == "Attention" else "intermediate.dense")
                fused_amax[n.name] = amax[k + ".weight_t"]
                fused_targets.append((n.name, n.name))
        variants = {"int8": (plain, [], ["MatMul"])}
        variants.update({f"keep-{t}": (plain, of_type(t), ["MatMul"]) for t in TYPES})
        variants["keep-ffn-out-0"] = (plain, of_type("ffn-out")[:1], ["MatMul"])
        for a in (0.5, 0.7, 0.9):
            variants[f"sq{a}"] = (smooth(plain, amax, a, ln_targets()), [], ["MatMul"])
        sq7 = variants["sq0.7"][0]
        variants["sq0.7-keep-ffn-out"] = (sq7, of_type("ffn-out"), ["MatMul"])
        variants["sq0.7-keep-ffn-out-0"] = (sq7, of_type("ffn-out")[:1], ["MatMul"])
        variants["sq0.7-ffn-out0.7"] = (smooth(sq7, amax, 0.7, [(n, f"encoder.layer.{i}.output.dense.weight_t")
                                                              for i, n in enumerate(of_type("ffn-out"))]), [], ["MatMul"])
        variants["fused-all"] = (fused, [], ["MatMul", "Attention"])
        variants["fused-all-sq0.7"] = (smooth(fused, fused_amax, 0.7, fused_targets), [], ["MatMul", "Attention"])
        only = [v for v in args.only.split(",") if v]
        _, cran = docs_texts("cranfield")
        _, adi = docs_texts("adi")
        texts = (cran[:200] + adi)[:args.texts]
        ref = run.embed(fp32, texts)
        paths = {"fp32": fp32}
        print(f"{'variant':24} cosine to float32 on {len(texts)} texts: mean, min", flush=True)
        for name, (model, keep, ops) in variants.items():
            if only and name not in only:
                continue
            src, dst = out / f"{name}-src.onnx", out / f"{name}.onnx"
            onnx.save_model(model, str(src))
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                             per_channel=True, nodes_to_exclude=attention_products + keep,
                             extra_options={"DefaultTensorType": 1})
            c = (run.embed(dst, texts) * ref).sum(1)
            print(f"{name:24} {c.mean():.5f} {c.min():.5f}", flush=True)
            paths[name] = dst
        if args.datasets:
            import onnx_variants

            onnx_variants.quality(paths, [d for d in args.datasets.split(",") if d])
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
