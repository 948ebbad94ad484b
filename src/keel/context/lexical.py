"""Lexical analysis for BM25: words, stop words, stemming.

:func:`analyze` is applied identically to chunks at ingest and to queries: lower
case, Unicode words, one-letter words and Lucene's English stop words dropped,
Snowball (Porter 2) stemming when PyStemmer is installed: the rules of Lucene's
English analyzer and of ``bm25s`` (decision 0034). The analyzer's name is recorded
in each collection and with each chunk's stored terms (terms are keyed by chunk hash
*and* analyzer), so a collection indexed by an older analyzer is re-analysed when it
is opened (:mod:`keel.context.reanalyze`), and a collection built with stemming
refuses a query process that cannot stem.

:func:`fts_query` builds safe SQLite FTS5 query text (used by the storage
measurement in ``benchmarks/storage_choice.py``):

User text never reaches FTS5's query grammar as is (a stray ``"`` or ``NEAR``
would be a syntax error or change the meaning): it is split into words, English
stop words are dropped (as bm25s and Lucene's English analyzer do; it also keeps
queries over large collections fast), and each word is quoted and OR-ed.
"""

from __future__ import annotations

import re

__all__ = ["ANALYZER", "LEGACY_ANALYZERS", "MIN_LENGTH", "STOPWORDS", "analyze", "fts_query", "is_stemmed",
           "query_terms"]

STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
     "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
     "will", "with"]
)
"""Lucene's English stop set (``EnglishAnalyzer.ENGLISH_STOP_WORDS_SET``, 33 words), as bm25s uses it."""

MIN_LENGTH = 2
"""Shorter words are dropped (bm25s's and scikit-learn's token rule): a one-letter token is an
initial, a variable name or a possessive's ``s``, common and rarely what a query means."""

# The first analyzer's list (Lucene's set plus question words, pronouns and modal verbs), kept so
# the measurement of the change can be repeated (decision 0034); no collection is analysed with it.
_LEGACY_STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with", "what", "which", "who", "whom", "how", "when", "where", "why", "do", "does", "did", "has", "have", "had", "been", "being", "can", "could", "should", "would", "may", "might", "must", "shall", "i", "we", "you", "he", "she", "them", "our", "your", "its", "his", "her", "from", "about", "than", "so", "any", "all", "some", "there's", "what's", "are", "were"]
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def query_terms(text: str) -> list[str]:
    """Lower-cased words of ``text`` minus stop words and one-letter words, first occurrence order, no repeats."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(text.lower()):
        if w not in STOPWORDS and len(w) >= MIN_LENGTH and w not in seen:
            seen[w] = None
    return list(seen)


def fts_query(text: str) -> str:
    """An FTS5 MATCH expression that ORs the words of ``text``; ``""`` when none are left."""
    return " OR ".join(f'"{t}"' for t in query_terms(text))


def _make_stemmer():
    try:
        import Stemmer
    except ImportError:
        return None, "lucene-stop-min2"
    return Stemmer.Stemmer("english"), "lucene-stop-min2-snowball"


_stemmer, ANALYZER = _make_stemmer()
"""The analyzer's name, recorded in each collection and with each chunk's terms (stemming needs PyStemmer)."""

LEGACY_ANALYZERS = frozenset({"words-stop", "words-stop-snowball"})
"""Analyzers of earlier Keel versions: a collection recorded with one is re-analysed on open."""


def is_stemmed(name: str) -> bool:
    """Whether the analyzer named ``name`` stems (a process without PyStemmer cannot query its terms)."""
    return name.endswith("-snowball")


def analyze(text: str) -> list[str]:
    """BM25 terms of ``text``, in order, with repeats (term frequency counts them)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and MIN_LENGTH <= len(w) < 64]
    if _stemmer is not None:
        words = _stemmer.stemWords(words)
    return words


def _legacy_analyze(text: str) -> list[str]:
    """The ``words-stop[-snowball]`` analyzer of earlier versions (tests write old collections with it)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _LEGACY_STOPWORDS and len(w) < 64]
    return _stemmer.stemWords(words) if _stemmer is not None else words
