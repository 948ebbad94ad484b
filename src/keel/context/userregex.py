"""Regular expressions from users (``search(regex=...)``, ``keel context search --regex``), run
with a time budget.

Python's ``re`` backtracks: ``(a|aa)+$`` against a long run of ``a`` followed by ``!``
takes longer than the age of the universe, and nothing can interrupt it. Patterns run
on the ``regex`` module instead (Python's syntax, and a ``timeout`` it checks while
matching); a search whose pattern needs more than :data:`BUDGET_SECONDS` over all the
chunks it scans is refused with :class:`RegexError`. Without ``regex`` installed
(it ships with Keel's dependencies), ``re`` is used and there is no budget.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from keel.errors import UserError

__all__ = ["BUDGET_SECONDS", "RegexError", "compile_regex", "count_matches"]

BUDGET_SECONDS = 2.0
"""Time one search may spend matching its regex, over every chunk it scans."""

try:
    import regex as _engine
except ImportError:  # pragma: no cover - regex comes with nltk, a core dependency
    _engine = None

_ERRORS: tuple[type[Exception], ...] = (re.error,) if _engine is None else (re.error, _engine.error)


class RegexError(UserError):
    """A ``regex`` argument is not a valid regular expression, or takes too long to match."""


def compile_regex(pattern: str) -> Any:
    """``pattern`` compiled (multiline), or :class:`RegexError` naming it and the position."""
    try:
        if _engine is not None:
            return _engine.compile(pattern, _engine.MULTILINE)
        return re.compile(pattern, re.MULTILINE)
    except _ERRORS as e:
        msg, pos = getattr(e, "msg", str(e)), getattr(e, "pos", None)
        raise RegexError(f"invalid regex {pattern!r}: {msg}" + (f" at position {pos}" if pos is not None else ""),
                         hint="regexes use Python's syntax; escape literal characters like ( [ ? with \\") from None


def count_matches(compiled: Any, rows: Iterable[tuple[Any, str]], *,
                  budget: float = BUDGET_SECONDS) -> Iterator[tuple[Any, int]]:
    """``(key, matches)`` for each ``(key, text)`` of ``rows`` the pattern matches at least once;
    :class:`RegexError` once matching has taken ``budget`` seconds in all."""
    deadline = time.monotonic() + budget
    for key, text in rows:
        if _engine is None:
            n = sum(1 for _ in compiled.finditer(text))
        else:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                n = sum(1 for _ in compiled.finditer(text, timeout=left))
            except TimeoutError:
                raise RegexError(
                    f"regex {compiled.pattern!r} took more than {budget:g} s to match the chunks searched",
                    hint="nested repetition like (a+)+ or (a|aa)+ backtracks without end; simplify it, bound it "
                         "(a{1,50}) or narrow the search with --where") from None
        if n:
            yield key, n
