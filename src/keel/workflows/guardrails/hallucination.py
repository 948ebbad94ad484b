"""The lexical hallucination check: is each sentence of an answer supported by the sources it cites?

A sentence cites sources by position (``[1]``, ``[2, 3]``); one that cites none is held to all
of them. It is supported when at least ``min_overlap`` of its content words (stop words
dropped, light stemming) appear in its sources, every number in it appears there too, and it
cites no source that does not exist. Cheap and conservative: paraphrase can fail it, which is
why a model judge can be configured for what it lets through.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["check_support", "source_texts"]

_STOP = frozenset(["a", "an", "the", "and", "or", "but", "if", "then", "else", "of", "to", "in", "on", "at", "by", "for", "with", "from", "into", "onto", "about", "over", "under", "as", "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "there", "here", "which", "who", "whom", "whose", "what", "when", "where", "why", "how", "not", "no", "nor", "so", "than", "too", "very", "can", "could", "will", "would", "shall", "should", "may", "might", "must", "do", "does", "did", "done", "have", "has", "had", "having", "i", "you", "he", "she", "we", "they", "me", "him", "her", "us", "them", "my", "your", "his", "our", "their", "also", "just", "only", "any", "all", "some", "each", "such", "more", "most", "other", "same", "own", "both", "few", "many", "much", "per", "via", "yes"])
_CITE = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_WORD = re.compile(r"[^\W_]+(?:[.,]\d+)*", re.UNICODE)


def _stem(word: str) -> str:
    for suffix in ("ingly", "edly", "ing", "ed", "es", "ly", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _tokens(text: str) -> tuple[set[str], set[str]]:
    """(content words, numbers) of ``text``."""
    words, numbers = set(), set()
    for w in _WORD.findall(text.lower()):
        if w[0].isdigit():
            numbers.add(w.replace(",", ""))
        elif len(w) > 2 and w not in _STOP:
            words.add(_stem(w))
    return words, numbers


def source_texts(value: Any) -> list[str]:
    """Source texts from a CEL value: a string, a list of strings, or a list of objects with a
    ``text`` or ``content`` field (anything else is used as its JSON)."""
    if value is None:
        return []
    if isinstance(value, dict) and isinstance(value.get("results"), list):
        value = value["results"]
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("text", item.get("content", json.dumps(item, ensure_ascii=False)))
        out.append(item if isinstance(item, str) else json.dumps(item, ensure_ascii=False))
    return out


def check_support(answer: str, sources: list[str], min_overlap: float) -> tuple[bool, str, list[dict]]:
    """``(passed, reason, sentences)``; each sentence: text, cited, overlap, missing, supported."""
    if not sources:
        return (not answer.strip(), "there are no sources to support the answer", [])
    src_tokens = [_tokens(s) for s in sources]
    report: list[dict] = []
    failures: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", answer):
        cited = sorted({int(n) for group in _CITE.findall(sentence) for n in group.split(",")})
        plain = re.sub(r"\s+([.!?,;:])", r"\1", re.sub(r"\s+", " ", _CITE.sub(" ", sentence))).strip()
        words, numbers = _tokens(plain)
        if not words and not numbers:
            continue
        bad_refs = [n for n in cited if not 1 <= n <= len(sources)]
        pool = [src_tokens[n - 1] for n in cited if 1 <= n <= len(sources)] or src_tokens
        known_words = set().union(*(w for w, _ in pool))
        known_numbers = set().union(*(n for _, n in pool))
        missing = sorted(words - known_words)
        missing_numbers = sorted(numbers - known_numbers)
        overlap = 1.0 if not words else 1 - len(missing) / len(words)
        supported = not bad_refs and not missing_numbers and overlap >= min_overlap
        report.append({"text": plain, "cited": cited, "overlap": round(overlap, 3),
                       "missing": missing + missing_numbers, "supported": supported})
        if not supported:
            held = ", ".join(f"[{n}]" for n in cited) if cited else "the sources"
            if bad_refs:
                why = f"cites {', '.join(f'[{n}]' for n in bad_refs)} but there are {len(sources)} sources"
            elif missing_numbers:
                why = f"{', '.join(missing_numbers)} is not in {held}"
            else:
                why = f"only {overlap:.0%} of its words are in {held} (missing: {', '.join(missing[:6])})"
            failures.append(f"{plain!r}: {why}")
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        return False, f"unsupported sentence {failures[0]}{more}", report
    return True, "", report
