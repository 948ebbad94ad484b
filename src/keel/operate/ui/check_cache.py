"""The canvas's spec checks, remembered by the digest of the text for a short while.

Opening a workflow checks its text as ``keel workflows validate`` does: 0.2 s for 500 nodes on
an idle machine, most of a second on a loaded one. Reopening it, or reading it again after a
save, checks the same text again. A check also depends on things outside the text (the
settings' model aliases, whether a tool imports, the collections), so a remembered answer
expires after ``ttl`` seconds: a change there shows at the latest that long after. Bounded
(CONTRIBUTING rule 14): at most ``size`` texts, the least recently used dropped first.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CheckCache", "settings_stamp"]


def settings_stamp() -> tuple[Any, ...]:
    """What the settings are read from, cheaply: a change of any of it is a new cache key."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("KEEL_")))
    from keel.config import _home_before_settings

    stamps = []
    for path in (Path("keel.toml"), _home_before_settings() / "keel.toml", Path(".env")):
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(None)
    return (env, os.getcwd(), *stamps)


class CheckCache:
    """``get(text, file, compute)``: ``compute()``'s answer for this text and file name, reused
    for ``ttl`` seconds. Answers are shared between callers: they must not be changed."""

    def __init__(self, *, size: int = 32, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.ttl, self._clock = size, ttl, clock
        self._items: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, file: str, compute: Callable[[], Any]) -> Any:
        key = (hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), file, settings_stamp())
        now = self._clock()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                self._items.move_to_end(key)
                return hit[1]
        answer = compute()  # outside the lock: two threads may both compute a miss, never wait on each other
        with self._lock:
            self._items[key] = (now, answer)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return answer

    def __len__(self) -> int:
        return len(self._items)
