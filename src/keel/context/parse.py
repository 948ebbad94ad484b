"""From a file on disk to chunks: type detection, bad-file checks, the right chunker.

A file is skipped (with a reason, never an exception that stops the ingest) when
it is empty, binary, not valid UTF-8, larger than ``max_bytes``, of a type no
chunker handles, or when its parser fails.
"""

from __future__ import annotations

import os
from pathlib import Path

from keel.context.chunk_code import chunk_python
from keel.context.chunk_html import chunk_html
from keel.context.chunk_markdown import chunk_markdown
from keel.context.chunk_text import chunk_text
from keel.context.files import SkipFile, read_file
from keel.context.types import ChunkDraft

__all__ = ["DEFAULT_MAX_BYTES", "LANGS", "SUFFIXES", "SkipFile", "chunk_data", "chunk_file"]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024

LANGS: dict[str, str] = {
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".go": "go", ".rs": "rust", ".java": "java", ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp",
    ".cs": "csharp", ".rb": "ruby", ".php": "php", ".swift": "swift", ".lua": "lua", ".r": "r",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ps1": "powershell", ".sql": "sql",
    ".vue": "vue", ".svelte": "svelte", ".css": "css", ".scss": "scss", ".less": "less",
    ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json", ".jsonc": "json", ".json5": "json",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".ini": "ini", ".cfg": "ini", ".conf": "ini",
    ".xml": "xml", ".proto": "protobuf", ".graphql": "graphql", ".gql": "graphql", ".tf": "terraform",
}
"""Code and configuration suffix -> language: chunked as text by blank-line blocks, kind ``code``,
metadata ``lang``."""

SUFFIXES: dict[str, str] = {
    ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown",
    ".txt": "text", ".text": "text", ".rst": "text", ".adoc": "text", ".asciidoc": "text", ".org": "text",
    ".tex": "text", ".log": "text", ".csv": "text", ".tsv": "text", "": "text",
    ".html": "html", ".htm": "html",
    ".py": "python", ".pyi": "python",
    ".pdf": "pdf",
    **dict.fromkeys(LANGS, "code"),
}
"""File suffix -> chunker. Anything else is skipped as an unsupported type."""


def _read_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise SkipFile("binary file (contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SkipFile(f"not valid UTF-8 (byte {e.start}: {data[e.start:e.start + 1]!r})") from None
    if not text.strip():
        raise SkipFile("empty file")
    return text


def _chunk_pdf(data: bytes, max_chars: int) -> list[ChunkDraft]:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:
        raise SkipFile("PDF support needs pypdf (pip install 'keel[context]')") from None
    import io

    try:
        reader = PdfReader(io.BytesIO(data))
        chunks: list[ChunkDraft] = []
        title = (reader.metadata.title if reader.metadata else None) or ""
        for n, page in enumerate(reader.pages, 1):
            for c in chunk_text(page.extract_text() or "", max_chars=max_chars, kind="pdf", title=title,
                                anchor=f"page={n}", meta={"page": n}):
                chunks.append(c)
    except (PyPdfError, ValueError, KeyError, TypeError) as e:
        raise SkipFile(f"unreadable PDF: {e}") from None
    if not chunks:
        raise SkipFile("PDF has no extractable text (scanned images need OCR)")
    return chunks


def chunk_file(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_chars: int = 1200) -> list[ChunkDraft]:
    """Chunks of ``path``, or :class:`SkipFile` with the reason it cannot be ingested."""
    check_type(path)
    return chunk_data(path, read_file(os.path.realpath(path), max_bytes=max_bytes), max_chars=max_chars)


def check_type(path: Path) -> str:
    """The chunker for ``path``'s type, or :class:`SkipFile` when none handles it."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise SkipFile(f"unsupported file type {path.suffix!r}")
    return kind


def chunk_data(path: Path, data: bytes, *, max_chars: int = 1200) -> list[ChunkDraft]:
    """Chunks of ``data``, the bytes of ``path`` (whose suffix picks the chunker)."""
    kind = check_type(path)
    if not data:
        raise SkipFile("empty file")
    if kind == "pdf":
        return _chunk_pdf(data, max_chars)
    text = _read_text(data)
    if kind == "markdown":
        chunks = chunk_markdown(text, max_chars=max_chars)
    elif kind == "html":
        chunks = chunk_html(text, max_chars=max_chars)
    elif kind == "python":
        chunks = chunk_python(text, module=path.stem, max_chars=max(max_chars, 1500))
    elif kind == "code":
        chunks = chunk_text(text, max_chars=max_chars, kind="code", title=path.name,
                            meta={"lang": LANGS[path.suffix.lower()]})
    else:
        chunks = chunk_text(text, max_chars=max_chars)
    if not chunks:
        raise SkipFile("no text to index")
    return chunks
