"""Who may execute a run: an owner (``host:pid:nonce``) and a lease.

On the host that owns a run, the owner's process being alive is the truth (a kill
-9 frees its runs at once; a slow model call is never duplicated). For an owner on
another host, the lease is: every commit renews it, and once it has expired the
run may be taken over.
"""

from __future__ import annotations

import os
import socket
import time

__all__ = ["LEASE_SECONDS", "may_take_over", "owner_alive", "owner_id"]

LEASE_SECONDS = 30.0
"""A run whose owner (on another host) has not committed for this long may be taken over."""


def owner_id() -> str:
    """A new owner id for this process: ``host:pid:nonce``."""
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool | None:
    """Whether the owning process is alive: known on this host, None (unknown) elsewhere."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def may_take_over(owner: str | None, lease_until: float | None) -> bool:
    """A run's owner is gone: its process is dead (this host), or its lease expired (another host).

    On this host a live owner keeps its run even past the lease: a model call may
    legitimately take minutes, and a second executor would only duplicate it.
    """
    if not owner:
        return True
    alive = owner_alive(owner)
    if alive is not None:
        return not alive
    return (lease_until or 0) <= time.time()
