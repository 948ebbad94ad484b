"""The typed objects of the context engine: chunks, hits, citations, ingest reports."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ChunkDraft",
    "Citation",
    "Hit",
    "IngestReport",
    "SkippedFile",
    "content_hash",
]

ChunkKind = Literal["markdown", "code", "text", "html", "pdf", "table", "record"]


def content_hash(text: str) -> str:
    """The content address of a chunk's text (hex SHA-256, first 32 characters)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass
class ChunkDraft:
    """A chunk as a chunker makes it, before it is stored."""

    text: str
    """The text that is embedded, indexed and shown."""
    kind: ChunkKind = "text"
    title: str = ""
    """The document's title (first H1, HTML ``<title>``, module name, ...)."""
    heading_path: tuple[str, ...] = ()
    """Headings from the top down to this chunk, e.g. ``("Agents", "Configuration")``."""
    anchor: str = ""
    """A fragment that links to this chunk's section, e.g. ``configuration`` (GitHub-style slug)."""
    start_line: int = 1
    """First line in the source file (1-based, inclusive)."""
    end_line: int = 1
    """Last line in the source file (inclusive)."""
    symbols: tuple[str, ...] = ()
    """Code symbols this chunk defines, e.g. ``("Agent", "Agent.clone")``."""
    signature: str = ""
    """For code: the signature line(s) of the symbol, e.g. ``def clone(self, **kwargs) -> Agent``."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Extra metadata from the chunker (e.g. ``lang``); user metadata is merged over it."""


@dataclass(frozen=True)
class Citation:
    """Where a piece of context came from, precise enough to open it."""

    source: str
    """The source path (as ingested, relative to the ingest root when one was given)."""
    anchor: str = ""
    start_line: int = 0
    end_line: int = 0
    title: str = ""
    heading_path: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = self.source + (f"#{self.anchor}" if self.anchor else "")
        if self.start_line:
            where += f" (lines {self.start_line}-{self.end_line})"
        return where


@dataclass
class Hit:
    """One retrieved chunk with its scores."""

    chunk_id: int
    text: str
    citation: Citation
    score: float
    """The final score in the stage that produced the hit (fused, or reranked)."""
    scores: dict[str, float] = field(default_factory=dict)
    """Per-signal scores, e.g. ``{"dense": 0.71, "bm25": 12.3, "convex": 0.93}`` (the fused score is
    named by the collection's fusion method: ``convex`` or ``rrf``)."""
    ranks: dict[str, int] = field(default_factory=dict)
    """Per-signal 1-based ranks in the candidate pool."""
    meta: dict[str, Any] = field(default_factory=dict)
    """The chunk's metadata (kind, lang, symbols, user metadata, ...)."""
    hash: str = ""

    def to_json(self) -> dict[str, Any]:
        c = self.citation
        return {
            "chunk_id": self.chunk_id,
            "score": round(self.score, 6),
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
            "source": c.source,
            "anchor": c.anchor,
            "start_line": c.start_line,
            "end_line": c.end_line,
            "title": c.title,
            "heading_path": list(c.heading_path),
            "text": self.text,
            "meta": self.meta,
        }


@dataclass(frozen=True)
class SkippedFile:
    """A file that ingest did not index, and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What one ``add`` did."""

    files_seen: int = 0
    files_indexed: int = 0
    """Files whose chunks changed and were written."""
    files_unchanged: int = 0
    files_removed: int = 0
    """Files that had left the source tree and so left the index."""
    chunks_written: int = 0
    chunks_embedded: int = 0
    """Chunks whose vectors were computed now (the rest came from the embedding cache)."""
    skipped: list[SkippedFile] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    """Time spent inside the embedder; ``seconds - embed_seconds`` is Keel's own overhead."""
