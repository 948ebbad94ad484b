"""Ids that sort by creation time, and random hex.

``new_id()`` is 32 hex digits: the first 12 are the milliseconds since the Unix epoch,
the other 20 are random (80 bits). Rows keyed by such ids are appended to the end of
their indexes instead of landing on a random page, so the runs that one group commit
writes together share index pages (``docs/decisions/0010-group-commit.md``: 12% less
server CPU per request). Same shape as a hex UUID, so ids made before stay valid.

The random part comes from ``os.urandom``, read 4 KiB at a time (:func:`random_hex`):
``os.urandom`` releases the GIL for its system call, and in a server whose store work runs
on threads the event loop then waited for a thread to hand the GIL back, for every id (a
served chat completion made five; decision 0041). Each thread has its own buffer, and a
forked child drops what it inherited, so no two processes or threads share random bytes.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_id", "random_bytes", "random_hex"]

_CHUNK = 4096


class _Pool(threading.local):
    data = b""
    pos = 0
    pid = 0


_pool = _Pool()


def random_bytes(n: int) -> bytes:
    """``n`` bytes from ``os.urandom``, taken from this thread's buffer (``n`` ≤ 4096)."""
    p = _pool
    if p.pos + n > len(p.data) or p.pid != os.getpid():  # empty, or inherited over a fork
        p.data, p.pos, p.pid = os.urandom(_CHUNK), 0, os.getpid()
    p.pos += n
    return p.data[p.pos - n:p.pos]


def random_hex(n: int) -> str:
    """``2 * n`` random hex digits (``n`` bytes from :func:`random_bytes`)."""
    return random_bytes(n).hex()


def new_id() -> str:
    """A 32-hex-digit id, time-ordered to the millisecond, then random."""
    return f"{time.time_ns() // 1_000_000:012x}{random_bytes(10).hex()}"
