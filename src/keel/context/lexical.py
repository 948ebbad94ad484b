"""Lexical analysis for BM25: words, stop words, stemming.

:func:`analyze` is applied identically to chunks at ingest and to queries: lower
case, Unicode words, English stop words dropped, Snowball (Porter 2) stemming
when PyStemmer is installed. The analyzer's name is recorded in each collection,
so a collection built with stemming refuses a query process that cannot stem.

:func:`fts_query` builds safe SQLite FTS5 query text (used by the storage
measurement in ``benchmarks/storage_choice.py``):

User text never reaches FTS5's query grammar as is (a stray ``"`` or ``NEAR``
would be a syntax error or change the meaning): it is split into words, English
stop words are dropped (as bm25s and Lucene's English analyzer do; it also keeps
queries over large collections fast), and each word is quoted and OR-ed.
"""

from __future__ import annotations

import re

__all__ = ["ANALYZER", "STOPWORDS", "analyze", "fts_query", "query_terms"]

# Lucene's English stop set plus common question words seen in queries.
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with", "what", "which", "who", "whom", "how", "when", "where", "why", "do", "does", "did", "has", "have", "had", "been", "being", "can", "could", "should", "would", "may", "might", "must", "shall", "i", "we", "you", "he", "she", "them", "our", "your", "its", "his", "her", "from", "about", "than", "so", "any", "all", "some", "there's", "what's", "are", "were"]
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def query_terms(text: str) -> list[str]:
    """Lower-cased words of ``text`` minus stop words, first occurrence order, no repeats."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text.lower()):
        if w not in STOPWORDS and w not in seen:
            seen[w] = None
    return list(seen)


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression that ORs the words of ``text``; ``""`` when none are left."""
    return " OR ".join(f'"{t}"' for t in query_terms(text))


def _make_stemmer():
    try:
        import Stemmer
    except ImportError:
        return None, "words-stop"
    return Stemmer.Stemmer("english"), "words-stop-snowball"


_stemmer, ANALYZER = _make_stemmer()
"""The analyzer's name, recorded in each collection (stemming needs PyStemmer)."""


def analyze(text: str) -> list[str]:
    """BM25 terms of ``text``, in order, with repeats (term frequency counts them)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) < 64]
    if _stemmer is not None:
        words = _stemmer.stemWords(words)
    return words
