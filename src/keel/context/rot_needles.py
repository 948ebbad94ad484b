"""Needles for :mod:`keel.context.rot`: questions with known answers, made or loaded, and scoring."""

from __future__ import annotations

import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from keel.errors import UserError

__all__ = ["Needle", "RotError", "load_needles", "make_needles", "score_answer"]


class RotError(UserError):
    """A context-rot run cannot be done as asked (collection too small, model window too short, bad needles)."""


@dataclass
class Needle:
    """One question with a known answer, and the sentence in the context that answers it."""

    question: str
    answer: str
    """Counted correct when the answer holds this text (case, spacing and punctuation ignored)."""
    needle: str
    """The sentence placed in the haystack."""
    distractors: list[str] = field(default_factory=list)
    """Sentences like the needle that answer wrongly; placed only in the runs with distractors."""
    wrong: list[str] = field(default_factory=list)
    """The wrong answers the distractors give: an answer holding one counts as distracted."""


def load_needles(path: str | os.PathLike[str]) -> list[Needle]:
    """Needles from a JSONL file: one ``{"question", "answer", "needle", "distractors"?, "wrong"?}`` a line."""
    from keel.safeload import load_json

    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise RotError(f"cannot read needles file {p}: {exc.strerror or exc}",
                       hint="pass a JSONL file of questions with known answers to --needles") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{p}:{i}"
        try:
            row = load_json(line)
        except Exception as exc:
            raise RotError(f"{where}: not a JSON object ({exc})",
                           hint='write one object a line: {"question": ..., "answer": ..., "needle": ...}') from None
        if not isinstance(row, dict):
            raise RotError(f"{where}: not a JSON object", hint='write {"question": ..., "answer": ..., "needle": ...}')
        for key in ("question", "answer", "needle"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise RotError(f"{where}: {key!r} is missing or not a non-empty string",
                               hint="each line needs question, answer and needle (the sentence that answers it)")
        if _norm(row["answer"]) not in _norm(row["needle"]):
            raise RotError(f"{where}: the needle does not contain the answer {row['answer']!r}",
                           hint="the needle is the sentence placed in the context: it must state the answer")
        lists = {}
        for key in ("distractors", "wrong"):
            v = row.get(key, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise RotError(f"{where}: {key!r} must be a list of strings", hint=f'e.g. "{key}": ["..."]')
            lists[key] = v
        out.append(Needle(row["question"], row["answer"], row["needle"], lists["distractors"], lists["wrong"]))
    if not out:
        raise RotError(f"needles file {p} holds no needles", hint="write one JSON object a line")
    return out


_WORD = re.compile(r"[a-z][a-z-]{3,}")


def _topic(title: str, text: str, df: dict[str, int], n_docs: int) -> str:
    words = " ".join(title.split()[:8]).strip(" .,:;")
    if len(words.split()) >= 3:
        return words.lower()
    import math

    seen = list(dict.fromkeys(_WORD.findall(text.lower())))
    rare = sorted(seen, key=lambda w: (-math.log((n_docs + 1) / (df.get(w, 0) + 1)), w))[:3]
    return " and ".join(rare) if rare else (words.lower() or "this report")


def make_needles(docs: Sequence[tuple[str, str, str]], n: int, *, seed: int = 0,
                 distractors: int = 2) -> list[Needle]:
    """``n`` needles about the topics of ``(source, title, text)`` documents.

    Needle: "The registry number of the study on <topic> is 4817." Question: "What is the
    registry number of the study on <topic>?" Distractors give other numbers for the same
    topic ("The draft number of the study on <topic> is 2290.", "The registry number of the
    review on <topic> is 6051."): close in meaning, wrong in one word, as in Chroma's study.
    """
    rng = random.Random(seed)
    df: dict[str, int] = {}
    for _, _, text in docs:
        for w in set(_WORD.findall(text.lower())):
            df[w] = df.get(w, 0) + 1
    picks = rng.sample(range(len(docs)), min(n, len(docs)))
    templates = [("draft number", "study"), ("registry number", "review"), ("archive number", "summary")]
    out = []
    used: set[int] = set()
    for i in picks:
        _, title, text = docs[i]
        topic = _topic(title, text, df, len(docs))
        numbers = []
        while len(numbers) < 1 + distractors:
            x = rng.randrange(1000, 10000)
            if x not in used:
                used.add(x)
                numbers.append(x)
        answer = str(numbers[0])
        dis, wrong = [], []
        for j, num in enumerate(numbers[1:]):
            kind, noun = templates[j % len(templates)]
            dis.append(f"The {kind} of the {noun} on {topic} is {num}.")
            wrong.append(str(num))
        out.append(Needle(question=f"What is the registry number of the study on {topic}?", answer=answer,
                          needle=f"The registry number of the study on {topic} is {answer}.",
                          distractors=dis, wrong=wrong))
    return out


_PUNCT = re.compile(r"[^\w\s]")


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def score_answer(answer: str, needle: Needle) -> tuple[bool, bool]:
    """``(correct, distracted)``: the answer holds the expected text; else it holds a wrong one."""
    got = f" {_norm(answer)} "
    if f" {_norm(needle.answer)} " in got:
        return True, False
    return False, any(f" {_norm(w)} " in got for w in needle.wrong if _norm(w))
