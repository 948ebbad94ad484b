"""A tiny random-weight GGUF model, written in a fraction of a second, for tests.

:func:`write_tiny_gguf` writes a real Llama-architecture GGUF file (hidden size
64, 2 layers, a ~512-token byte-level BPE tokenizer, a ChatML chat template)
whose weights are random. Its answers are gibberish, but llama.cpp loads and
runs it exactly like a downloaded model, in milliseconds. That lets your tests,
and Keel's own, exercise the whole local path (``local:<path>`` models, chat
templating, streaming, grammar-constrained structured output, tool calls,
cancellation) with no download and no network::

    from keel.testing import write_tiny_gguf
    from keel.models.local import LocalModel

    def test_my_agent_runs_locally(tmp_path):
        model = LocalModel(str(write_tiny_gguf(tmp_path / "tiny.gguf")))
        ...

The file is deterministic: the same ``seed`` gives a byte-identical file, so
a test that also fixes the sampling seed is reproducible. Because the model is
random, give it bounded schemas (``maxLength``, ``maxItems``, ``enum``,
``minimum``/``maximum``) or it may run into the token limit.

Needs the ``local`` extra (``numpy``, ``gguf``, ``tokenizers``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["write_tiny_gguf"]

_HIDDEN = 64
_LAYERS = 2
_HEADS = 4
_FFN = 128
_CONTEXT = 2048
_VOCAB = 512
_GAIN = 2.0

_BOS = "<|endoftext|>"
_IM_START = "<|im_start|>"
_IM_END = "<|im_end|>"
_SPECIALS = [_BOS, _IM_START, _IM_END]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Fixed training text for the tokenizer: prose, code and JSON, so the merges
# include the pieces structured output is made of.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. A tiny model answers every question.",
    "You are a helpful assistant. Answer the user's question briefly and politely.",
    "What is the weather in Paris today? It is sunny, with a light wind from the west.",
    "Please summarize the following text in one sentence, then list three key points.",
    '{"name": "Ada", "age": 36, "tags": ["math", "engines"], "active": true, "score": 0.5}',
    '{"tool": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    '{"answer": "yes", "confidence": "high", "items": [1, 2, 3], "note": null}',
    "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(i * i)\n",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 3.14 -7 1e3",
    "system user assistant tool message content role function call result error",
    "Hello, world! How are you? I am fine, thank you. Goodbye; see you tomorrow.",
    "positive negative neutral true false null yes no maybe unknown other none",
]


def _train_tokenizer() -> tuple[list[str], list[str]]:
    """Train a byte-level BPE on the fixed corpus: ``(tokens, merges)``, specials last."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB - len(_SPECIALS),
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    return [*tokens, *_SPECIALS], merges


def write_tiny_gguf(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a tiny random-weight Llama GGUF model to ``path`` and return the path.

    The same ``seed`` always gives a byte-identical file (~0.6 MB, written in
    well under a second). Load it with ``LocalModel(str(path))`` or
    ``llama_cpp.Llama(model_path=str(path))``.
    """
    import numpy as np
    from gguf import GGUFWriter, TokenType

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, merges = _train_tokenizer()
    n_vocab = len(tokens)
    special_ids = {t: tokens.index(t) for t in _SPECIALS}

    rng = np.random.default_rng(seed)

    def weight(*shape: int, gain: float = _GAIN) -> np.ndarray:
        # (rows, cols) = (output features, input features). A gain above 1 keeps the
        # activations, and so the logits, spread out: sampling is varied, not uniform.
        return (rng.standard_normal(shape) * (gain / np.sqrt(shape[-1]))).astype(np.float32)

    # Write to a temporary file next to the target, then rename: a reader never
    # sees a half-written model.
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        w = GGUFWriter(tmp_name, "llama")
        w.add_name("keel-tiny-random")
        w.add_context_length(_CONTEXT)
        w.add_embedding_length(_HIDDEN)
        w.add_block_count(_LAYERS)
        w.add_feed_forward_length(_FFN)
        w.add_head_count(_HEADS)
        w.add_head_count_kv(_HEADS)
        w.add_rope_dimension_count(_HIDDEN // _HEADS)
        w.add_rope_freq_base(10000.0)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_vocab_size(n_vocab)
        w.add_file_type(0)  # all F32

        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")  # "gpt2" is rejected by llama.cpp
        w.add_token_list(tokens)
        w.add_token_types(
            [TokenType.CONTROL if t in special_ids else TokenType.NORMAL for t in tokens]
        )
        w.add_token_merges(merges)
        w.add_bos_token_id(special_ids[_BOS])
        w.add_eos_token_id(special_ids[_IM_END])
        w.add_pad_token_id(special_ids[_BOS])
        w.add_add_bos_token(False)
        w.add_add_eos_token(False)
        w.add_chat_template(CHATML_TEMPLATE)

        w.add_tensor("token_embd.weight", weight(n_vocab, _HIDDEN, gain=8.0))
        for i in range(_LAYERS):
            b = f"blk.{i}"
            w.add_tensor(f"{b}.attn_norm.weight", np.ones(_HIDDEN, dtype=np.float32))
            w.add_tensor(f"{b}.attn_q.weight", weight(_HIDDEN, _HIDDEN))
            w.add_tensor(f"{b}.attn_k.weight", weight(_HIDDEN, _HIDDEN))
            w.add_tensor(f"{b}.attn_v.weight", weight(_HIDDEN, _HIDDEN))
            w.add_tensor(f"{b}.attn_output.weight", weight(_HIDDEN, _HIDDEN))
            w.add_tensor(f"{b}.ffn_norm.weight", np.ones(_HIDDEN, dtype=np.float32))
            w.add_tensor(f"{b}.ffn_gate.weight", weight(_FFN, _HIDDEN))
            w.add_tensor(f"{b}.ffn_up.weight", weight(_FFN, _HIDDEN))
            w.add_tensor(f"{b}.ffn_down.weight", weight(_HIDDEN, _FFN))
        w.add_tensor("output_norm.weight", np.ones(_HIDDEN, dtype=np.float32))
        w.add_tensor("output.weight", weight(n_vocab, _HIDDEN))

        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
