"""Context rot: how answer quality falls as the context grows, measured on your own documents.

:func:`run_rot` builds haystacks of growing length from a collection's documents,
places a needle (a sentence that answers a question) at several depths, asks a model
the question, and scores the answer. Each cell of the grid is run

- with and without **distractors** (sentences shaped like the needle that give a
  wrong answer), and
- with the **full context** (the whole haystack in the prompt) and with the
  **assembled context** (Keel's hybrid retrieval over the same haystack, then
  :func:`keel.context.assemble` under a fixed token budget).

Needles come from a JSONL file of questions with known answers
(``{"question", "answer", "needle", "distractors"?, "wrong"?}``), or are made from
the collection itself: each names the topic of one of its documents (the title,
or its rarest words) and carries a random number as the answer, with distractors
that give other numbers for the same topic (see :func:`make_needles`).

Lengths are counted with the model's own tokenizer for ``local:`` models and with
:func:`keel.context.tokens.default_counter` otherwise. A haystack is the documents' paragraphs
(long ones split at line ends), documents in a seeded order, up to the length (a longer
haystack extends a shorter one); the needle and the distractors go between paragraphs, the
needle at the boundary nearest its depth.
The assembled context searches a scratch fork of the collection (the needles added
as records, the search filtered to the haystack's documents), dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from keel.context.rot_needles import Needle, RotError, load_needles, make_needles, score_answer
from keel.context.tokens import TokenCounter, default_counter

__all__ = ["Needle", "RotCell", "RotError", "RotResult", "format_table", "load_needles", "make_needles",
           "render_html", "run_rot"]

ContextKind = Literal["full", "assembled"]

INSTRUCTIONS = ("Answer the question from the documents. Reply with the answer only, in a few words. "
                "If the documents do not say, reply: I don't know.")
_PROMPT_MARGIN = 64  # chat-template tokens around the user message, and rounding between tokenizers


@dataclass
class RotCell:
    """The score of one cell of the grid, over every needle."""

    context: ContextKind
    distractors: bool
    length: int
    """Target haystack length in tokens (the needle and distractors included)."""
    depth: float | None
    """Where the needle sits in the full context (0 first, 1 last); ``None`` for assembled context."""
    needles: int
    correct: int
    distracted: int
    prompt_tokens: float
    """Mean tokens of the context and question sent (the counter of :attr:`RotResult.tokenizer`)."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.needles if self.needles else 0.0


@dataclass
class RotResult:
    """Everything a run measured, shaped like ``keel context rot --json``."""

    collection: str
    model: str
    tokenizer: str
    lengths: list[int]
    depths: list[float]
    needles: int
    needle_source: str
    assembled_tokens: int
    cells: list[RotCell] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)
    """Every answer: context, distractors, length, depth, needle index, answer, correct, distracted."""
    seconds: float = 0.0

    def cell(self, context: ContextKind, distractors: bool, length: int, depth: float | None) -> RotCell | None:
        return next((c for c in self.cells if (c.context, c.distractors, c.length, c.depth)
                     == (context, distractors, length, depth)), None)

    def curve(self, context: ContextKind, distractors: bool) -> list[tuple[int, float]]:
        """``(length, accuracy over every depth)`` for one line of the plot."""
        out = []
        for n in self.lengths:
            cells = [c for c in self.cells if (c.context, c.distractors, c.length) == (context, distractors, n)]
            if cells:
                out.append((n, sum(c.correct for c in cells) / max(1, sum(c.needles for c in cells))))
        return out

    def series(self) -> list[tuple[ContextKind, bool]]:
        return list(dict.fromkeys((c.context, c.distractors) for c in self.cells))

    def to_json(self) -> dict[str, Any]:
        return {"collection": self.collection, "model": self.model, "tokenizer": self.tokenizer,
                "lengths": self.lengths, "depths": self.depths, "needles": self.needles,
                "needle_source": self.needle_source, "assembled_tokens": self.assembled_tokens,
                "seconds": round(self.seconds, 2),
                "cells": [{**asdict(c), "accuracy": round(c.accuracy, 4)} for c in self.cells],
                "answers": self.answers}


# -- haystacks -----------------------------------------------------------------------------


def _documents(col: Any) -> list[tuple[str, str, str]]:
    """``(source, title, text)`` per document, chunks joined in ingest order."""
    docs: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    for _h, text, source, _a, title, _hp in col.chunk_texts():
        docs.setdefault(source, []).append(text)
        titles.setdefault(source, title or "")
    return [(s, titles[s], "\n".join(parts).strip()) for s, parts in docs.items() if "".join(parts).strip()]


_UNIT = 200  # tokens: paragraphs longer than this are split at line ends


def _units(source: str, text: str, count: TokenCounter) -> list[tuple[str, str, int]]:
    """``(source, piece, tokens)``: the document's paragraphs, long ones split at line ends."""
    out: list[tuple[str, str, int]] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        n = count(para)
        if n <= _UNIT:
            out.append((source, para, n))
            continue
        lines: list[str] = []
        for line in para.splitlines():
            if lines and count("\n".join([*lines, line])) > _UNIT:
                piece = "\n".join(lines)
                out.append((source, piece, count(piece)))
                lines = []
            lines.append(line)
        if lines:
            piece = "\n".join(lines)
            out.append((source, piece, count(piece)))
    return out


def _haystack(order: list[tuple[str, str, int]], budget: int) -> list[tuple[str, str, int]]:
    """The first pieces of ``order`` whose tokens fit ``budget`` (at least one)."""
    out, used = [], 0
    for item in order:
        if out and used + item[2] + 1 > budget:
            break
        out.append(item)
        used += item[2] + 1  # + the blank line that joins pieces
    return out


def _place(docs: list[str], inserts: list[tuple[float, str]]) -> str:
    """``docs`` (pieces) joined, with each ``(depth, sentence)`` at the boundary nearest its depth."""
    sizes = [len(d) for d in docs]
    total = sum(sizes) or 1
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    at: dict[int, list[str]] = {}
    for depth, sentence in inserts:
        target = depth * total
        k = min(range(len(bounds)), key=lambda b: (abs(bounds[b] - target), b))
        at.setdefault(k, []).append(sentence)
    parts = []
    for k in range(len(docs) + 1):
        parts.extend(at.get(k, []))
        if k < len(docs):
            parts.append(docs[k])
    return "\n\n".join(parts)


def _distractor_depths(depth: float, n: int) -> list[float]:
    return [round((depth + (j + 1) / (n + 1)) % 1.0, 4) for j in range(n)]


def _user_message(context: str, question: str) -> str:
    return f"Documents:\n\n{context}\n\nQuestion: {question}"


# -- the model -----------------------------------------------------------------------------


@dataclass
class _ModelSetup:
    model: Any
    count: TokenCounter
    tokenizer: str
    window: int | None
    window_source: str


def _local_setup(path: str, need: int | None) -> tuple[TokenCounter, str, int]:
    """The local GGUF's tokenizer and trained window (vocab only: weights are not loaded)."""
    from keel.models.local import _import_llama_cpp

    _import_llama_cpp()
    import llama_cpp

    if not os.path.isfile(path):
        raise RotError(f"no model file at {path}", hint="pass local:/path/to/model.gguf")
    err = os.dup(2)  # llama.cpp prints a context warning for a vocab-only load, whatever `verbose` says
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    finally:
        os.dup2(err, 2)
        os.close(err)
    meta = llm.metadata
    arch = meta.get("general.architecture", "llama")
    try:
        train = int(meta.get(f"{arch}.context_length", 0))
    except ValueError:
        train = 0
    train = train or 2048  # files without the key: llama.cpp's usual default

    def count(text: str) -> int:
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return count, f"gguf:{Path(path).name}", train


def _setup_model(model: str, window: int | None, max_prompt_hint: int) -> _ModelSetup:
    from keel.config import get_settings
    from keel.models.registry import get_model, parse_model_string

    spec = parse_model_string(get_settings().resolve_alias(model))
    if spec.prefix == "local":
        from keel.models.packaged import local_path

        path = os.path.abspath(os.path.expanduser(local_path(spec.name)))
        count, name, train = _local_setup(path, max_prompt_hint)
        w = min(window, train) if window else train
        return _ModelSetup(None, count, name, w, "the model's trained context (n_ctx_train in the GGUF)"
                           if not window else "--window")
    count, name = default_counter()
    return _ModelSetup(get_model(model), count, name, window, "--window")


def _local_model(model: str, n_ctx: int) -> Any:
    from keel.config import get_settings
    from keel.models.local import LocalModel
    from keel.models.packaged import local_path
    from keel.models.registry import parse_model_string

    return LocalModel(local_path(parse_model_string(get_settings().resolve_alias(model)).name), n_ctx=n_ctx)


# -- the run -------------------------------------------------------------------------------


class _Progress:
    """A bar on a terminal, plain lines (at most one every 2 s) otherwise, or nothing."""

    def __init__(self, mode: bool | str, total: int, what: str) -> None:
        if mode is True:
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.total, self.what, self.done, self._last = mode, total, what, 0, 0.0
        self._bar = None
        if mode == "bar":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("model calls"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task(what, total=total)

    def step(self, label: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, description=f"{self.what} {label}")
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self._last >= 2 or self.done == self.total:
                self._last = now
                print(f"{self.what}: {self.done}/{self.total} model calls ({label})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def run_rot(collection: str, model: str, *, lengths: Sequence[int] = (500, 1000, 2000, 4000),
            depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), needles: int | str | os.PathLike[str] = 5,
            distractors: Sequence[bool] = (False, True), contexts: Sequence[ContextKind] = ("full", "assembled"),
            assembled_tokens: int = 500, window: int | None = None, max_answer_tokens: int = 48,
            seed: int = 0, home: Path | None = None, progress: bool | str = False,
            on_answer: Callable[[dict[str, Any]], None] | None = None) -> RotResult:
    """Measure answer quality against context length (see the module docs).

    ``needles`` is a count (made from the collection) or a JSONL path. Raises
    :class:`RotError` before any model call when the collection holds too little text for
    the longest length, or when a prompt would not fit the model's window.
    """
    from keel.context.collection import Collection

    lengths = sorted({int(n) for n in lengths})
    depths = sorted({float(d) for d in depths})
    if not lengths or lengths[0] < 50:
        raise RotError(f"lengths must be at least 50 tokens, got {lengths}", hint="e.g. --lengths 500,1000,2000")
    if any(not 0 <= d <= 1 for d in depths) or not depths:
        raise RotError(f"depths must be between 0 and 1, got {depths}", hint="e.g. --depths 0,0.5,1")
    contexts = list(dict.fromkeys(contexts))
    if not contexts or any(c not in ("full", "assembled") for c in contexts):
        raise RotError(f"unknown context kind in {contexts}", hint="use full, assembled or both")
    t0 = time.perf_counter()
    setup = _setup_model(model, window, lengths[-1])
    count = setup.count
    col = Collection.open(collection, home=home, create=False)
    try:
        docs = _documents(col)
        if isinstance(needles, int):
            if len(docs) < 2:
                raise RotError(f"collection {collection!r} holds {len(docs)} document(s) with text",
                               hint=f"add documents: keel context add {collection} PATH...")
            the_needles = make_needles(docs, needles, seed=seed)
            source = f"made from {collection} (seed {seed})"
        else:
            the_needles = load_needles(needles)
            source = str(needles)
        shuffled = list(docs)
        random.Random(seed).shuffle(shuffled)
        order = [u for s, _t, text in shuffled for u in _units(s, text, count)]
        total = sum(n for _, _, n in order)
        extra = max(count(n.needle) + sum(count(d) for d in n.distractors) for n in the_needles)
        if total + extra < lengths[-1]:
            raise RotError(
                f"collection {collection!r} holds about {total:,} tokens of text ({len(docs)} documents, "
                f"counted with {setup.tokenizer}); the longest haystack asked for is {lengths[-1]:,} tokens",
                hint=f"add documents (keel context add {collection} PATH...) or lower --lengths "
                     f"(at most {total + extra:,} here)")
        q_tokens = max(count(INSTRUCTIONS + _user_message("", n.question)) for n in the_needles)
        biggest = max(lengths[-1] if "full" in contexts else 0, assembled_tokens if "assembled" in contexts else 0)
        longest = biggest + q_tokens + max_answer_tokens + _PROMPT_MARGIN
        if setup.window is not None and longest > setup.window:
            room = setup.window - q_tokens - max_answer_tokens - _PROMPT_MARGIN
            what = "--lengths" if biggest == lengths[-1] and "full" in contexts else "--assembled-tokens"
            raise RotError(
                f"model {model} takes {setup.window:,} tokens ({setup.window_source}); the longest prompt here "
                f"needs about {longest:,} (a {biggest:,}-token context, the question and the answer)",
                hint=f"lower {what} to at most {max(room, 0):,}, or use a model with a longer context window")
        if setup.model is None:
            setup.model = _local_model(model, n_ctx=min(setup.window or longest, longest + 256))
        calls = len(the_needles) * len(distractors) * (
            ("full" in contexts) * len(lengths) * len(depths) + ("assembled" in contexts) * len(lengths))
        result = RotResult(collection=collection, model=model, tokenizer=setup.tokenizer, lengths=lengths,
                           depths=depths, needles=len(the_needles), needle_source=source,
                           assembled_tokens=assembled_tokens)
        bar = _Progress(progress, calls, "context rot")
        scratch = None
        try:
            if "assembled" in contexts:
                scratch = _scratch_fork(col, the_needles)
            asyncio.run(_grid(result, setup, col, scratch, the_needles, order, contexts, distractors,
                              max_answer_tokens, bar, on_answer))
        finally:
            bar.close()
            if scratch is not None:
                scratch.close()
                scratch.drop()
    finally:
        col.close()
    result.seconds = time.perf_counter() - t0
    return result


def _needle_source(i: int, j: int | None = None) -> str:
    return f"keel-rot/needle-{i}" + ("" if j is None else f"-distractor-{j}")


def _drop_stale_forks(col: Any) -> None:
    """Drop scratch forks left by runs that were killed (their process is gone)."""
    from keel.context.collection import Collection, list_collections

    stale = re.compile(rf"{re.escape(col.name[:40])}-rot-(\d+)-[0-9a-f]+$")
    for name in list_collections(col._home, store=col._store):
        m = stale.match(name)
        if m is None or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        Collection.open(name, home=col._home, create=False, store=col._store).drop()


def _scratch_fork(col: Any, needles: list[Needle]) -> Any:
    """A fork of ``col`` holding every needle and distractor as its own record."""
    _drop_stale_forks(col)
    name = f"{col.name[:40]}-rot-{os.getpid()}-{random.randrange(1 << 30):x}"
    fork = col.fork(name)
    try:
        records = []
        for i, n in enumerate(needles):
            records.append((_needle_source(i), "", n.needle, {}))
            records.extend((_needle_source(i, j), "", d, {}) for j, d in enumerate(n.distractors))
        fork.add_records(records)
    except BaseException:
        fork.close()
        fork.drop()
        raise
    return fork


async def _grid(result: RotResult, setup: _ModelSetup, col: Any, scratch: Any, needles: list[Needle],
                order: list[tuple[str, str, int]], contexts: Sequence[ContextKind], distractors: Sequence[bool],
                max_answer_tokens: int, bar: _Progress, on_answer: Callable[[dict[str, Any]], None] | None) -> None:
    from keel.context.assemble import assemble
    from keel.models.types import Message, ModelSettings

    count = setup.count
    settings = ModelSettings(temperature=0, max_tokens=max_answer_tokens, seed=0)
    messages_for = lambda text: [Message.system(INSTRUCTIONS), Message.user(text)]  # noqa: E731

    async def ask(text: str) -> str:
        from keel.errors import ProviderError

        try:
            r = await setup.model.generate(messages_for(text), settings=settings)
        except ProviderError as exc:
            if re.search(r"context|too long|maximum.*tokens|n_ctx", str(exc), re.I):
                raise RotError(f"model {result.model} refused a {count(text):,}-token prompt: {exc.message}",
                               hint="lower --lengths, or pass the model's real window with --window") from None
            raise
        return r.text

    for length in result.lengths:  # outermost: a run cut short has every setting of the lengths it did
        for with_d in distractors:
            for kind in contexts:
                run_depths: list[float | None] = list(result.depths) if kind == "full" else [None]
                for depth in run_depths:
                    correct = distracted = 0
                    tokens = []
                    for i, n in enumerate(needles):
                        dis = n.distractors if with_d else []
                        budget = length - count(n.needle) - sum(count(d) for d in dis)
                        hay = _haystack(order, budget)
                        if kind == "full":
                            inserts = [(depth, n.needle)]
                            inserts += list(zip(_distractor_depths(depth or 0.0, len(dis)), dis, strict=True))
                            context = _place([t for _, t, _ in hay], inserts)
                        else:
                            allowed = [s for s, _, _ in hay] + [_needle_source(i)] + [
                                _needle_source(i, j) for j in range(len(dis))]
                            hits = scratch.search(n.question, mode="hybrid", k=50,
                                                  where={"source": {"$in": allowed}})
                            context = assemble(hits, max_tokens=result.assembled_tokens, count_tokens=count,
                                               data_note=False).text
                        text = _user_message(context, n.question)
                        tokens.append(count(text))
                        answer = await ask(text)
                        ok, wrong = score_answer(answer, n)
                        correct += ok
                        distracted += wrong
                        row = {"context": kind, "distractors": with_d, "length": length, "depth": depth,
                               "needle": i, "answer": answer[:200], "correct": ok, "distracted": wrong,
                               "prompt_tokens": tokens[-1]}
                        result.answers.append(row)
                        if on_answer is not None:
                            on_answer(row)
                        bar.step(f"{kind} {length} tokens" + ("" if depth is None else f" depth {depth:g}")
                                 + (" +distractors" if with_d else ""))
                    result.cells.append(RotCell(kind, with_d, length, depth, len(needles), correct, distracted,
                                                round(sum(tokens) / len(tokens), 1)))


def render_html(result: RotResult) -> str:
    """The report as one self-contained HTML document (see :mod:`keel.context.rot_report`)."""
    from keel.context.rot_report import render_html as render

    return render(result)


def format_table(result: RotResult) -> str:
    """The terminal table: one row per context kind and distractor setting, accuracy per length."""
    from keel.context.rot_report import format_table as table

    return table(result)
