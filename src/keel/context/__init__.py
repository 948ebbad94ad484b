"""The context engine: ingest, hybrid retrieval, rerank and context assembly.

>>> from keel.context import Collection, assemble
>>> docs = Collection.open("docs")
>>> docs.add(["./handbook"], progress=True)
>>> hits = docs.search("rotate API keys", k=30, where={"kind": "markdown"})
>>> context = assemble(hits, instructions="Answer from the sources.", max_tokens=2000)

Modules, one concept each: ``parse`` and ``chunk_*`` (files to chunks),
``embedders``, ``ingest``, ``bm25`` / ``dense`` / ``filters`` / ``fusion`` (the
first stage), ``collection`` (the API), ``rerank``, ``assemble`` and ``tokens``
(context assembly), ``smart`` / ``metrics`` / ``bench`` (measurement).
Storage layout and its rationale: docs/decisions/0002-context-storage.md.
"""

from keel.context.assemble import AssembledContext, ContextPiece, assemble
from keel.context.collection import (
    DEFAULT_POOL,
    Collection,
    CollectionStats,
    RegexError,
    list_collections,
)
from keel.context.embedders import Embedder, get_embedder
from keel.context.filters import FilterError, parse_where
from keel.context.rerank import CrossEncoderReranker, LLMReranker, Reranker, get_reranker
from keel.context.types import ChunkDraft, Citation, Hit, IngestReport, SkippedFile

__all__ = [
    "DEFAULT_POOL",
    "AssembledContext",
    "ChunkDraft",
    "Citation",
    "Collection",
    "CollectionStats",
    "ContextPiece",
    "CrossEncoderReranker",
    "Embedder",
    "FilterError",
    "Hit",
    "IngestReport",
    "LLMReranker",
    "RegexError",
    "Reranker",
    "SkippedFile",
    "assemble",
    "get_embedder",
    "get_reranker",
    "list_collections",
    "parse_where",
]
