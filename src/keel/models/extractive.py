"""The extractive answerer: answers from the sources in the request by quoting them.

``extractive`` (or ``extractive:default``) is a built-in "model" for knowledge workflows when
no model is configured. It reads the numbered passages an Agent node was given (File
search's ``output_text``: ``[1] docs/time-off.md#holidays`` then the passage), scores every
sentence of every passage against the question, and answers with the best sentence (and the
next one when it scores almost as well), verbatim, each followed by its citation ``[n]``.

Scoring (measured on the demo's 30 questions, docs/benchmarks.md): lexical overlap of the
question's content words with the sentence, IDF-weighted over the passages' sentences, with
the passage heading counting half; plus the cosine of the local MiniLM embedder when
``keel[embeddings]`` is installed (it matches "hotel in Paris" to "capital cities"). When no
sentence shares a word with the question and none is close in meaning, it says "I don't
know." (which the template's grounding check sends to its ``unsure`` end).

Because every sentence is quoted, the grounding (hallucination) guardrail passes it
unchanged, and the call is recorded and traced like any model call. It cannot follow
instructions, call tools or write structured output: a request for structured output is a
:class:`ExtractiveError` with the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from keel.errors import UserError
from keel.models.base import Model, ModelRequest
from keel.models.types import ModelResponse, TextDelta, Usage

__all__ = ["ExtractiveError", "ExtractiveModel", "Passage", "Scored", "answer", "parse_request", "rank", "switch_line"]

SWITCH = "keel up --model openai:gpt-4.1-mini (with OPENAI_API_KEY set) or keel up --model ollama:llama3.2"
"""The one line that switches a ``keel up`` project from the extractive answerer to a model."""


def switch_line(project: str | None = None) -> str:
    """:data:`SWITCH`, said where to run it when the reader is not in the project folder
    (the web UI: the server's folder, which ``keel up`` serves from)."""
    if not project:
        return SWITCH
    return f"in {project}: {SWITCH}"

DONT_KNOW = "I don't know."


class ExtractiveError(UserError):
    """The extractive answerer cannot serve this request (no sources, structured output)."""


@dataclass(frozen=True)
class Passage:
    """One numbered source of the request."""

    index: int
    where: str
    """``source#anchor`` as File search printed it."""
    text: str


@dataclass(frozen=True)
class Scored:
    """A sentence of a passage and how well it answers the question."""

    sentence: str
    passage: int
    position: int
    score: float


_PASSAGE = re.compile(r"^\[(\d+)\] ?(.*)$", re.MULTILINE)
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*(?:[.:,]\d+)*", re.UNICODE)  # full-time is one word
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_STOP_WORDS = (
    "a an the and or but if then of to in on at by for with from into about over under as is are was were be been "
    "being it its this that these those there here which who whom whose what when where why how not no can could "
    "will would shall should may might must do does did have has had i you he she we they me my your our their "
    "also just only any all some each such more most other get got many much long know"
)
_STOP = frozenset(_STOP_WORDS.split())


def _stem(word: str) -> str:
    for suffix in ("ingly", "edly", "ing", "ed", "es", "ly", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _terms(text: str) -> set[str]:
    out = set()
    for w in _WORD.findall(text.lower()):
        if w[0].isdigit():
            out.add(w)
        elif len(w) > 2 and w not in _STOP:
            out.add(_stem(w))
    return out


def parse_request(text: str) -> tuple[str, list[Passage]]:
    """The question and the numbered passages of a user message (``Question: ... Sources: [1] ...``)."""
    head, sep, tail = text.partition("Sources:")
    body = tail if sep else text
    marks = list(_PASSAGE.finditer(body))
    passages = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(body)
        passages.append(Passage(int(m.group(1)), m.group(2).strip(), body[m.end():end].strip()))
    question = head if sep else (body[: marks[0].start()] if marks else text)
    question = re.sub(r"^\s*(question|q)\s*:\s*", "", question.strip(), flags=re.IGNORECASE).strip()
    return question, passages


def _sentences(passage: Passage) -> tuple[str, list[str]]:
    """The passage's heading words and its sentences (headings and list markers dropped)."""
    heading, lines = passage.where.partition("#")[2].replace("-", " "), []
    for line in passage.text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            heading += " " + stripped.lstrip("#")
            continue
        lines.append(re.sub(r"^([-*+]|\d+[.)])\s+", "", stripped))
    text = re.sub(r"\s+", " ", " ".join(lines)).strip()
    return heading, [s.strip() for s in _SENTENCE.split(text) if len(_terms(s)) >= 2]


def _embedder():
    """The local MiniLM embedder, or None when ``keel[embeddings]`` is not installed."""
    try:
        from keel.context.embedders import MiniLMEmbedder

        MiniLMEmbedder.model_path()
        return MiniLMEmbedder()
    except Exception:  # lexical scoring alone still answers
        return None


def rank(question: str, passages: Sequence[Passage], *, embedder: object | None = None) -> list[Scored]:
    """Every sentence of ``passages``, best answer to ``question`` first.

    Score: IDF-weighted share of the question's terms found in the sentence (its passage's
    heading counts half), plus 0.5 x the embedder's cosine when an embedder is given.
    """
    units: list[tuple[int, int, str, set[str], set[str]]] = []
    for p in passages:
        heading, sentences = _sentences(p)
        head_terms = _terms(heading)
        for pos, s in enumerate(sentences):
            units.append((p.index, pos, s, _terms(s), head_terms))
    if not units:
        return []
    q = _terms(question)
    n = len(units)
    idf = {t: math.log(1 + n / (1 + sum(t in u[3] or t in u[4] for u in units))) for t in q}
    total = sum(idf.values()) or 1.0
    cosines = [0.0] * n
    if embedder is not None and question.strip():
        import numpy as np

        vecs = embedder.embed([question] + [u[2] for u in units])  # type: ignore[attr-defined]
        cosines = [float(c) for c in np.asarray(vecs[1:]) @ np.asarray(vecs[0])]
    scored = []
    for (index, pos, sentence, terms, head_terms), cos in zip(units, cosines, strict=True):
        lexical = sum(idf[t] * (1.0 if t in terms else 0.5 if t in head_terms else 0.0) for t in q) / total
        scored.append(Scored(sentence, index, pos, lexical + 0.5 * cos))
    return sorted(scored, key=lambda s: (-s.score, s.passage, s.position))


def answer(question: str, passages: Sequence[Passage], *, embedder: object | None = None,
           min_score: float = 0.15, second_ratio: float = 0.85, same_passage_ratio: float = 0.5) -> str:
    """The extractive answer: the best sentence with its citation, and the runner-up too when it
    scores at least ``second_ratio`` of the best (``same_passage_ratio`` when it comes from the
    same passage: a rule and its condition are often two sentences); :data:`DONT_KNOW` when the
    best scores below ``min_score``."""
    ranked = rank(question, passages, embedder=embedder)
    if not ranked or ranked[0].score < min_score:
        return DONT_KNOW
    best, chosen = ranked[0], [ranked[0]]
    for other in ranked[1:2]:
        ratio = same_passage_ratio if other.passage == best.passage else second_ratio
        if other.score >= ratio * best.score:
            chosen.append(other)
    chosen.sort(key=lambda s: (s.passage, s.position))
    return " ".join(f"{_with_stop(s.sentence)} [{s.passage}]" for s in chosen)


def _with_stop(sentence: str) -> str:
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."


class ExtractiveModel(Model):
    """The built-in extractive answerer, reached as ``extractive`` or ``extractive:default``."""

    provider = "extractive"
    structured_mode = "none"

    def __init__(self, name: str = "default", **kwargs: object) -> None:
        super().__init__(name, **kwargs)  # type: ignore[arg-type]
        self._embedder = _embedder()

    async def _attempt(self, request: ModelRequest) -> AsyncIterator[TextDelta | ModelResponse]:
        if request.output_schema is not None:
            raise ExtractiveError(
                "the extractive answerer (model extractive) cannot write structured output",
                hint=f"give this Agent node a model: point its alias at one in keel.toml, or {SWITCH}",
            )
        users = [m for m in request.messages if m.role == "user" and m.content]
        question, passages = parse_request(users[-1].content if users else "")
        if not passages:  # sources may come in another message (e.g. the instructions)
            for m in request.messages:
                passages = passages or parse_request(m.content)[1]
        if not passages:
            raise ExtractiveError(
                "the extractive answerer (model extractive) found no numbered sources ([1] ...) in the request",
                hint="give the Agent node File search results as input, as the knowledge-assistant template does "
                     "(input: 'Question: ' + input_as_text + '\\n\\nSources:\\n' + nodes.search.output_text), "
                     f"or give it a model: {SWITCH}",
            )
        if self._embedder is not None:
            import asyncio

            text = await asyncio.to_thread(answer, question, passages, embedder=self._embedder)
        else:
            text = answer(question, passages)
        if request.stream:
            yield TextDelta(text=text)
        prompt = sum(len(m.content.split()) for m in request.messages)
        yield ModelResponse(text=text, usage=Usage(input_tokens=prompt, output_tokens=len(text.split())),
                            finish_reason="stop")
