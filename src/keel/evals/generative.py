"""Generative benchmarking: a gold set of queries written from your own documents.

Chroma's method (Hong, "Generative Benchmarking", 2025), with any Keel model:

1. **Filter the chunks**: the model reads each chunk and keeps only those a user
   could ask about, under your criteria (boilerplate, navigation, license text and
   bare tables of contents are skipped by default).
2. **Write the queries**: for each kept chunk the model writes the queries it
   answers, steered by a description of the users (``context``) and examples of
   real queries (``examples``), so they read like users' queries rather than a
   paraphrase of the chunk.
3. **Check each query** (no model): it must have between ``min_words`` and
   ``max_words`` words, must not copy ``max_copied_words`` consecutive words of its
   chunk (a copied query makes lexical search look better than it is), and must
   not be a near-duplicate of a query already kept (``rapidfuzz`` ratio >= 90).

Each query that passes is judged relevant to the chunk it came from (its content
hash), which gives a gold set ``query -> chunk`` that
:func:`keel.evals.retrieval.evaluate_collection` scores. Both model calls use a
strict JSON schema, so an answer is never unparseable; a call that fails is
counted per chunk and the rest goes on.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from keel.errors import KeelError
from keel.evals.errors import EvalSpecError

__all__ = [
    "DEFAULT_CRITERIA",
    "Chunk",
    "GeneratedQuery",
    "GenerationOptions",
    "GenerationReport",
    "check_query",
    "collection_chunks",
    "generate_queries",
]

DEFAULT_CRITERIA = (
    "Keep the chunk if it holds specific information a user could look for: how to do something, "
    "what an option or function does, a fact, a limit, an explanation. Skip it if it is boilerplate, "
    "navigation, a table of contents, a license or legal notice, a changelog entry with no detail, or "
    "too short or fragmentary to answer a question on its own."
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Chunk:
    """A chunk of a collection, as generation sees it."""

    hash: str
    """The chunk's content hash: its id in the gold set."""
    text: str
    source: str
    anchor: str = ""
    title: str = ""
    heading_path: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneratedQuery:
    id: str
    query: str
    chunk: Chunk

    def to_item(self) -> dict[str, Any]:
        """The gold-set line: ``{"id", "query", "relevant": {hash: 1}, "source", "anchor"}``."""
        return {"id": self.id, "query": self.query, "relevant": {self.chunk.hash: 1},
                "source": self.chunk.source, "anchor": self.chunk.anchor}


@dataclass(frozen=True)
class GenerationOptions:
    model: str
    """Any Keel model string (a strong model writes better queries)."""
    per_chunk: int = 1
    """Queries to write per kept chunk."""
    context: str = ""
    """Who the users are and what they ask, e.g. "developers integrating our payments API"."""
    examples: tuple[str, ...] = ()
    """Real queries from your users: their style is what the generated queries imitate."""
    filter_chunks: bool = True
    criteria: str = DEFAULT_CRITERIA
    max_chunks: int | None = None
    """Sample at most this many chunks (seeded, so the same sample each time)."""
    seed: int = 0
    min_words: int = 3
    max_words: int = 40
    max_copied_words: int = 8
    concurrency: int = 4
    timeout: float = 120.0
    temperature: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.per_chunk <= 20:
            raise EvalSpecError(f"per_chunk {self.per_chunk} is out of range", hint="write 1 to 20 queries per chunk")
        if self.min_words < 1 or self.max_words < self.min_words:
            raise EvalSpecError("need 1 <= min_words <= max_words")
        if self.max_copied_words < 2:
            raise EvalSpecError("max_copied_words must be at least 2")


@dataclass
class GenerationReport:
    """What generation did, and the gold queries it kept."""

    queries: list[GeneratedQuery] = field(default_factory=list)
    chunks_seen: int = 0
    chunks_skipped: int = 0
    """Chunks the model's filter skipped."""
    chunks_failed: int = 0
    """Chunks whose model call failed (``failures`` says why)."""
    generated: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """Queries dropped by the quality check, by reason."""
    skip_reasons: list[tuple[str, str]] = field(default_factory=list)
    """(chunk label, the filter's reason), for the first few skipped chunks."""
    failures: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        drops = ", ".join(f"{n} {why}" for why, n in self.dropped.most_common())
        return (f"{len(self.queries)} queries kept from {self.chunks_seen} chunks "
                f"({self.chunks_skipped} skipped by the filter, {self.chunks_failed} failed); "
                f"{self.generated} written, {sum(self.dropped.values())} dropped" + (f" ({drops})" if drops else ""))


def collection_chunks(collection: Any) -> list[Chunk]:
    """Every distinct chunk of a :class:`keel.context.Collection`, in ingest order."""
    rows = collection.chunk_texts()
    out: dict[str, Chunk] = {}
    for h, text, source, anchor, title, path in rows:
        if h not in out:
            out[h] = Chunk(h, text, source, anchor or "", title or "", tuple(json.loads(path or "[]")))
    return list(out.values())


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def check_query(query: str, chunk_text: str, kept: Sequence[str], options: GenerationOptions) -> str | None:
    """Why ``query`` fails the quality check, or ``None`` if it passes."""
    from rapidfuzz import fuzz

    words = _words(query)
    if len(words) < options.min_words:
        return "too short"
    if len(words) > options.max_words:
        return "too long"
    n = options.max_copied_words
    if len(words) >= n:
        chunk = " " + " ".join(_words(chunk_text)) + " "
        if any(f" {' '.join(words[i:i + n])} " in chunk for i in range(len(words) - n + 1)):
            return "copies the chunk"
    norm = " ".join(words)
    if any(fuzz.ratio(norm, " ".join(_words(k))) >= 90 for k in kept):
        return "near-duplicate"
    return None


def _filter_prompt(chunk: Chunk, options: GenerationOptions) -> list[Any]:
    from keel.models import Message

    system = ("You select document chunks for a retrieval benchmark. Reply with a JSON object: a short "
              "`reasoning`, then `verdict`: \"keep\" or \"skip\".\n\nCriteria: " + options.criteria)
    if options.context:
        system += f"\n\nThe documents and their users: {options.context}"
    return [Message(role="system", content=system), Message(role="user", content=_show(chunk))]


def _write_prompt(chunk: Chunk, options: GenerationOptions) -> list[Any]:
    from keel.models import Message

    n = options.per_chunk
    system = ("You write the search queries real users type to find information in a knowledge base. "
              f"Reply with a JSON object whose `queries` holds exactly {n} "
              f"quer{'y' if n == 1 else 'ies'}. Each query must be answered by the chunk below, must be "
              "phrased the way a user who has not read it would ask (their own words, not the chunk's), "
              f"and must have {options.min_words} to {options.max_words} words.")
    if options.context:
        system += f"\n\nThe users: {options.context}"
    if options.examples:
        system += "\n\nExamples of real user queries (match their style and length, not their topic):\n" + \
            "\n".join(f"- {e}" for e in options.examples)
    return [Message(role="system", content=system), Message(role="user", content=_show(chunk))]


def _show(chunk: Chunk) -> str:
    where = " > ".join(chunk.heading_path) or chunk.title
    head = f"Source: {chunk.source}" + (f" ({where})" if where else "")
    return f"{head}\n\n{chunk.text}"


_FILTER_SCHEMA = {
    "type": "object",
    "properties": {"reasoning": {"type": "string", "maxLength": 300}, "verdict": {"type": "string", "enum": ["keep", "skip"]}},
    "required": ["reasoning", "verdict"],
    "additionalProperties": False,
}


def _write_schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"queries": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 400},
                                   "minItems": n, "maxItems": n}},
        "required": ["queries"],
        "additionalProperties": False,
    }


def _label(chunk: Chunk) -> str:
    return chunk.source + (f"#{chunk.anchor}" if chunk.anchor else "")


async def generate_queries(chunks: Sequence[Chunk], options: GenerationOptions, *,
                           progress: Callable[[int, int], None] | None = None) -> GenerationReport:
    """Filter ``chunks``, write queries for the kept ones, check them; the kept queries are
    numbered ``g1, g2, ...`` in chunk order (stable for a seed)."""
    from keel.models import ModelSettings, get_model

    report = GenerationReport()
    chosen = list(chunks)
    if options.max_chunks is not None and len(chosen) > options.max_chunks:
        picked = sorted(random.Random(options.seed).sample(range(len(chosen)), options.max_chunks))
        chosen = [chosen[i] for i in picked]
    report.chunks_seen = len(chosen)
    if not chosen:
        return report
    model = get_model(options.model)
    settings = ModelSettings(temperature=options.temperature, seed=options.seed, max_tokens=400 + 120 * options.per_chunk,
                             timeout=options.timeout)
    gate = asyncio.Semaphore(options.concurrency)
    written: list[list[str] | None] = [None] * len(chosen)
    done = 0

    async def ask(messages: list[Any], schema: dict[str, Any]) -> dict[str, Any]:
        response = await asyncio.wait_for(model.generate(messages, output_schema=schema, settings=settings),
                                          options.timeout)
        return dict(response.parsed)

    async def one(i: int, chunk: Chunk) -> None:
        nonlocal done
        async with gate:
            try:
                if options.filter_chunks:
                    verdict = await ask(_filter_prompt(chunk, options), _FILTER_SCHEMA)
                    if verdict["verdict"] == "skip":
                        report.chunks_skipped += 1
                        if len(report.skip_reasons) < 20:
                            report.skip_reasons.append((_label(chunk), str(verdict.get("reasoning", ""))))
                        return
                answer = await ask(_write_prompt(chunk, options), _write_schema(options.per_chunk))
                written[i] = [str(q).strip() for q in answer["queries"]]
            except TimeoutError:
                report.chunks_failed += 1
                report.failures.append((_label(chunk), f"timed out after {options.timeout:g} s"))
            except KeelError as e:
                report.chunks_failed += 1
                report.failures.append((_label(chunk), e.message))
            finally:
                done += 1
                if progress is not None:
                    progress(done, len(chosen))

    try:
        await asyncio.gather(*(one(i, c) for i, c in enumerate(chosen)))
    finally:
        await model.aclose()
    kept: list[str] = []
    for chunk, queries in zip(chosen, written, strict=True):
        for q in queries or ():
            report.generated += 1
            problem = check_query(q, chunk.text, kept, options)
            if problem:
                report.dropped[problem] += 1
                continue
            kept.append(q)
            report.queries.append(GeneratedQuery(f"g{len(report.queries) + 1}", q, chunk))
    return report
