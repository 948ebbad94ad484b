"""Text that cannot be stored: lone surrogates.

JSON may spell a UTF-16 surrogate alone (``"\\ud800"``); Python decodes it to a ``str`` that
has no UTF-8 form, so it cannot be written to the store, logged, or sent back as JSON. Such
text is refused where it enters (the server answers 400 naming the field; the engine refuses
the run's input), and :func:`scrub` makes text already stored safe to show.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["lone_surrogate_at", "scrub"]


def lone_surrogate_at(value: Any, path: str) -> str | None:
    """The path (``path``, ``path.key``, ``path[3]``) of the first string in ``value`` (keys
    included) that holds a lone surrogate, or None when all text is valid."""
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        return None  # orjson refuses surrogates: everything it takes is valid text
    except TypeError:
        pass
    return _walk(value, path)


def _bad(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _walk(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if _bad(value) else None
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and _bad(k):
                return path
            found = _walk(v, f"{path}.{k}" if isinstance(k, str) else f"{path}[{k!r}]")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _walk(v, f"{path}[{i}]")
            if found:
                return found
    return None


def scrub(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD (for showing stored text)."""
    if isinstance(value, str):
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value) if _bad(value) else value
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
