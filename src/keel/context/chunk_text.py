"""Plain text chunking: paragraphs (blank-line separated) packed up to ``max_chars``.

An over-long paragraph is cut at line boundaries, or at spaces for text with
no line breaks. Line ranges are kept, so citations point at real lines.
"""

from __future__ import annotations

from typing import Any

from keel.context.types import ChunkDraft, ChunkKind

__all__ = ["chunk_text"]


def _paragraphs(lines: list[str]) -> list[tuple[int, int]]:
    """0-based inclusive (start, end) line ranges of non-blank runs."""
    out, start = [], None
    for i, line in enumerate(lines):
        if line.strip():
            if start is None:
                start = i
        elif start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(lines) - 1))
    return out


def _wrap(line: str, max_chars: int) -> list[str]:
    if len(line) <= max_chars:
        return [line]
    out, cur = [], ""
    for word in line.split(" "):
        if cur and len(cur) + len(word) + 1 > max_chars:
            out.append(cur)
            cur = ""
        cur = f"{cur} {word}" if cur else word
    if cur:
        out.append(cur)
    return out


def chunk_text(text: str, *, max_chars: int = 1200, kind: ChunkKind = "text", title: str = "",
               meta: dict[str, Any] | None = None, anchor: str = "") -> list[ChunkDraft]:
    """Chunks of plain text (see the module docstring)."""
    lines = text.splitlines()
    if not title:
        title = next((line.strip() for line in lines if line.strip()), "")[:120]
    chunks: list[ChunkDraft] = []
    group: list[str] = []
    g_start = g_end = 0

    def flush() -> None:
        nonlocal group
        body = "\n".join(group).strip()
        if body:
            chunks.append(ChunkDraft(text=body, kind=kind, title=title, anchor=anchor,
                                     start_line=g_start + 1, end_line=g_end + 1, meta=dict(meta or {})))
        group = []

    for start, end in _paragraphs(lines):
        para = lines[start : end + 1]
        size = sum(len(x) + 1 for x in group)
        psize = sum(len(x) + 1 for x in para)
        if group and size + psize > max_chars:
            flush()
        if psize > max_chars:
            for i, line in enumerate(para):
                for piece in _wrap(line, max_chars):
                    if group and sum(len(x) + 1 for x in group) + len(piece) > max_chars:
                        flush()
                    if not group:
                        g_start = start + i
                    group.append(piece)
                    g_end = start + i
            continue
        if not group:
            g_start = start
        else:
            group.append("")
        group.extend(para)
        g_end = end
    flush()
    return chunks
