"""Ids and random hex (keel.ids): random bytes come from a per-thread buffer of os.urandom (decision
0041), so a forked child and another thread must never reuse the bytes this thread has buffered."""

from __future__ import annotations

import os
import re
import threading

from keel.ids import new_id, random_bytes, random_hex
from keel.workflows.tracing import new_id as span_id


def test_ids_keep_their_shape() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", new_id())
    assert re.fullmatch(r"[0-9a-f]{16}", span_id(8)) and re.fullmatch(r"[0-9a-f]{32}", span_id())
    assert len(random_hex(10)) == 20
    assert len({new_id() for _ in range(20_000)}) == 20_000  # past several 4 KiB buffers


def test_a_forked_child_and_another_thread_get_other_bytes() -> None:
    random_bytes(10)  # this thread's buffer is filled: a fork copies it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what the parent draws next must not be what it draws
        os.write(write, random_bytes(32))
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64)
    os.close(read)
    os.close(write)
    other: list[bytes] = []
    t = threading.Thread(target=lambda: other.append(random_bytes(32)))
    t.start()
    t.join()
    mine = random_bytes(32)
    assert len({child, other[0], mine}) == 3
