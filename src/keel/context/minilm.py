"""all-MiniLM-L6-v2 in plain NumPy: the default embedder without torch.

Importing sentence-transformers (and with it torch and transformers) takes
seconds, longer than a whole ``keel context search`` should. This module runs
the same model with what loads in a fraction of a second:

- the word-piece tokenizer is ``tokenizers`` (the Rust library transformers'
  fast tokenizer wraps), read from the model's own ``tokenizer.json``, set to
  truncate at 256 word pieces and pad to the longest text of a batch, as
  sentence-transformers does;
- the weights are the model's ``model.safetensors``, memory-mapped (no copy;
  a query touches a few rows of the 47 MB word-embedding table);
- the forward pass is BERT's (embeddings, 6 encoder layers of self-attention
  and a GELU feed-forward, each followed by LayerNorm), then mean pooling over
  the real tokens and L2 normalisation.

The forward pass runs on one BLAS thread (``threadpoolctl``, when installed):
on a busy 2-core machine OpenBLAS's threads made the many small attention
products up to 60x slower, a batch 4x slower, and even a one-line query's
forward pass 0.6 s instead of 0.02 s (docs/decisions/0015-numpy-minilm.md).

The vectors match sentence-transformers' within float32 rounding (cosine
above 1 - 1e-6 on the test texts), so collections indexed by either are
interchangeable: the embedder's name, part of the vector cache key, is the same.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

__all__ = ["MAX_TOKENS", "NumpyMiniLM"]

MAX_TOKENS = 256
_LAYERS = 6
_HEADS = 12
_EPS = 1e-12
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
_controller: object | None = None


def _one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """A context in which BLAS runs on one thread (a no-op without threadpoolctl)."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    if _controller is False:
        return contextlib.nullcontext()
    return _controller.limit(limits=1, user_api="blas")  # type: ignore[attr-defined]


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file as read-only memory-mapped arrays."""
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        out[name] = mm[base + start: base + end].view(dtype).reshape(info["shape"])
    return out


_ERFC = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418, 0.37409196,
         1.00002368, -1.26551223)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf with a fractional error below 1.2e-7 everywhere (Numerical Recipes' erfc), in place where it can."""
    z = np.abs(x)
    t = z * np.float32(0.5)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = np.full_like(t, _ERFC[0])
    for c in _ERFC[1:]:
        poly *= t
        poly += c
    z *= z
    poly -= z
    np.exp(poly, out=poly)
    poly *= t  # erfc(|x|)
    np.subtract(1.0, poly, out=poly)  # erf(|x|)
    return np.copysign(poly, x, out=poly)


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), computed in place on ``x``."""
    e = _erf(x * np.float32(0.7071067811865476))
    e += 1.0
    e *= 0.5
    x *= e
    return x


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + _EPS) * w + b


def encode_by_length(tokenizer: Tokenizer, texts: Sequence[str],
                     forward: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                     batch_size: int = 16) -> np.ndarray:
    """Tokenise ``texts``, run ``forward(ids, mask)`` on batches of similar length (longest
    first, padded to the batch's longest, as sentence-transformers does) and return its
    (len(texts), 384) rows in the order of ``texts``. Shared by the NumPy and ONNX runtimes."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    encs = tokenizer.encode_batch(list(texts))
    order = sorted(range(len(encs)), key=lambda i: -len(encs[i].ids))
    out = np.zeros((len(encs), 384), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        seq = max(len(encs[i].ids) for i in idx)
        ids = np.zeros((len(idx), seq), dtype=np.int64)
        mask = np.zeros((len(idx), seq), dtype=np.int64)
        for row, i in enumerate(idx):
            n = len(encs[i].ids)
            ids[row, :n] = encs[i].ids
            mask[row, :n] = 1
        out[idx] = forward(ids, mask)
    return out


class NumpyMiniLM:
    """The model in ``model_dir`` (a sentence-transformers folder of all-MiniLM-L6-v2)."""

    def __init__(self, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.w = _load_safetensors(model_dir / "model.safetensors")
        self._lock = threading.Lock()

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean-pooled, normalised vectors for a padded batch ``ids`` (B, T) with ``mask``."""
        w = self.w
        batch, seq = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:seq][None]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        hidden = x.shape[-1]
        dh = hidden // _HEADS
        scale = np.float32(1.0 / np.sqrt(dh))
        # padding positions get a large negative score, as transformers' extended attention mask does
        bias = ((1.0 - mask[:, None, None, :].astype(np.float32)) * np.finfo(np.float32).min)
        for i in range(_LAYERS):
            p = f"encoder.layer.{i}."

            def lin(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
                out = v.reshape(-1, v.shape[-1]) @ w[p + name + ".weight"].T  # one GEMM for the whole batch
                out += w[p + name + ".bias"]
                return out.reshape(*v.shape[:-1], -1)

            def heads(v: np.ndarray) -> np.ndarray:
                # contiguous, so the batched matmuls below run as BLAS calls, not NumPy's generic loop
                return np.ascontiguousarray(v.reshape(batch, seq, _HEADS, dh).transpose(0, 2, 1, 3))

            q = heads(lin(x, "attention.self.query"))
            kt = np.ascontiguousarray(heads(lin(x, "attention.self.key")).transpose(0, 1, 3, 2))
            v = heads(lin(x, "attention.self.value"))
            scores = q @ kt
            scores *= scale
            scores += bias
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores, out=scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
            x = _layer_norm(lin(ctx, "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = _gelu(lin(x, "intermediate.dense"))
            x = _layer_norm(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        m = mask[..., None].astype(np.float32)
        pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode(self, texts: Sequence[str], *, batch_size: int = 16) -> np.ndarray:
        """Unit vectors (len(texts), 384) for ``texts``, batched by length as sentence-transformers does."""
        with self._lock, _one_blas_thread():
            return encode_by_length(self.tokenizer, texts, self._forward, batch_size=batch_size)
