"""Markdown chunking by heading hierarchy.

A document is split at ATX headings (``#`` .. ``######``) into sections; each
section's body is cut into blocks (paragraphs, fenced code blocks, tables, lists)
and blocks are packed into chunks of at most ``max_chars``. A code block or a
table is never cut, even when it alone is longer than ``max_chars``: half a code
example or a table without its header row answers nothing. Headings inside code
fences are not headings.

Each chunk carries the heading path (``("Agents", "Configuration")``), a
GitHub-style anchor for its section and its 1-based line range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keel.context.types import ChunkDraft

__all__ = ["chunk_markdown", "slugify"]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```+|~~~+)")
_TABLE_ROW = re.compile(r"^\s*\|")


def slugify(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text, flags=re.UNICODE)
    return text.strip().replace(" ", "-")


@dataclass
class _Block:
    lines: list[str]
    start: int  # 1-based line number
    atomic: bool  # code block or table: never split

    @property
    def end(self) -> int:
        return self.start + len(self.lines) - 1

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _Section:
    level: int
    heading: str
    path: tuple[str, ...]
    anchor: str
    start: int
    blocks: list[_Block]


def _sections(lines: list[str]) -> list[_Section]:
    sections = [_Section(0, "", (), "", 1, [])]
    stack: list[tuple[int, str]] = []
    slugs: dict[str, int] = {}
    fence: str | None = None
    para: _Block | None = None

    def close_para() -> None:
        nonlocal para
        if para is not None:
            sections[-1].blocks.append(para)
            para = None

    for n, line in enumerate(lines, 1):
        if fence is not None:
            sections[-1].blocks[-1].lines.append(line)
            m = _FENCE.match(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip():
                fence = None
            continue
        m = _FENCE.match(line)
        if m:
            close_para()
            fence = m.group(1)
            sections[-1].blocks.append(_Block([line], n, atomic=True))
            continue
        h = _HEADING.match(line)
        if h:
            close_para()
            level, title = len(h.group(1)), h.group(2).strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            slug = slugify(title)
            count = slugs.get(slug, 0)
            slugs[slug] = count + 1
            anchor = slug if count == 0 else f"{slug}-{count}"
            sections.append(_Section(level, title, tuple(t for _, t in stack), anchor, n, []))
            continue
        if not line.strip():
            close_para()
            continue
        is_row = bool(_TABLE_ROW.match(line))
        if para is not None and para.atomic != is_row:
            close_para()
        if para is None:
            para = _Block([], n, atomic=is_row)
        para.lines.append(line)
    close_para()
    return sections


def _front_matter_end(lines: list[str]) -> int:
    if lines and lines[0].strip() == "---":
        for i, line in enumerate(lines[1:60], 1):
            if line.strip() == "---":
                return i + 1
    return 0


def chunk_markdown(text: str, *, max_chars: int = 1200, kind: str = "markdown") -> list[ChunkDraft]:
    """Chunks of a markdown document (see the module docstring)."""
    lines = text.splitlines()
    skip = _front_matter_end(lines)
    body = [""] * skip + lines[skip:]
    sections = _sections(body)
    title = next((s.heading for s in sections if s.level == 1), "")
    if not title:
        title = next((s.heading for s in sections if s.level > 0), "")
    chunks: list[ChunkDraft] = []
    for sec in sections:
        blocks = sec.blocks
        if not blocks:
            continue
        group: list[_Block] = []
        size = 0

        def flush(group: list[_Block] = group, sec: _Section = sec) -> None:
            if not group:
                return
            text = "\n\n".join(b.text for b in group).strip("\n")
            if text.strip():
                chunks.append(ChunkDraft(
                    text=text, kind=kind, title=title, heading_path=sec.path, anchor=sec.anchor,
                    start_line=group[0].start, end_line=group[-1].end,
                    meta={"lang": _fence_lang(group)} if _fence_lang(group) else {},
                ))
            group.clear()

        for block in blocks:
            blen = len(block.text)
            # A short lead-in ("The options are:") stays with the table or code after it.
            if group and size + blen > max_chars and not (block.atomic and size < max_chars // 4):
                flush()
                size = 0
            if not block.atomic and blen > max_chars:
                for piece in _split_long(block, max_chars):
                    group.append(piece)
                    flush()
                size = 0
                continue
            group.append(block)
            size += blen + 2
        flush()
    return chunks


def _fence_lang(group: list[_Block]) -> str:
    for b in group:
        m = _FENCE.match(b.lines[0]) if b.atomic else None
        if m:
            lang = b.lines[0].strip()[len(m.group(1)):].strip().split(" ")[0]
            if lang:
                return lang
    return ""


def _split_long(block: _Block, max_chars: int) -> list[_Block]:
    """Cut an over-long paragraph at line boundaries (sentences would need a model of them)."""
    out: list[_Block] = []
    cur: list[str] = []
    start = block.start
    size = 0
    for i, line in enumerate(block.lines):
        if cur and size + len(line) > max_chars:
            out.append(_Block(cur, start, atomic=False))
            cur, size, start = [], 0, block.start + i
        cur.append(line)
        size += len(line) + 1
    if cur:
        out.append(_Block(cur, start, atomic=False))
    return out
