"""Connector sessions pooled across steps and runs: one live MCP session per connector and
event loop, kept open, reopened when it went down (docs/connectors.md, "Connections").

The MCP SDK's client lives inside an anyio task group that must be entered and left by one
task, so each pooled session is held by a task of its own (:class:`_Held`); steps of any run
on the same loop borrow the client. A session is keyed by the connector's name and version
(``updated_at``): changing the connector opens a new session and closes the old one. At most
:data:`MAX_SESSIONS` are kept per loop (least recently used closed first). ``asyncio.run``
cancels the holding tasks when its loop ends, which closes the sessions (a ``stdio:`` server
exits).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["MAX_SESSIONS", "ConnectorPool", "pool"]

MAX_SESSIONS = 32
"""Live connector sessions kept per event loop."""

Opener = Callable[[contextlib.AsyncExitStack], Awaitable[Any]]


class _Held:
    """One session, opened and closed by its own task."""

    def __init__(self, version: str, open_: Opener) -> None:
        self.version = version
        self.client: Any = None
        self.error: BaseException | None = None
        self._ready = asyncio.Event()
        self._close = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._hold(open_))

    async def _hold(self, open_: Opener) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                self.client = await open_(stack)
                self._ready.set()
                await self._close.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # a session that failed to open, or whose transport died
            self.error = e
        finally:
            self._ready.set()

    @property
    def alive(self) -> bool:
        return not self.task.done() and self.error is None

    async def ready(self) -> Any:
        await self._ready.wait()
        if self.error is not None:
            raise self.error
        if self.task.done():
            raise ConnectionError("the pooled MCP session closed")
        return self.client

    async def close(self) -> None:
        self._close.set()
        # asyncio.wait never raises the task's own error (a server already gone must not fail the
        # caller) but does raise the caller's CancelledError (a step timeout, a cancelled run).
        try:
            await asyncio.wait({self.task}, timeout=10)
        finally:
            if not self.task.done():
                self.task.cancel()


class ConnectorPool:
    """The sessions of one event loop."""

    def __init__(self) -> None:
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self.opened = 0
        """Sessions opened so far (tests and ``keel connectors`` diagnostics read it)."""

    async def client(self, name: str, version: str, open_: Opener) -> Any:
        """The live client of connector ``name`` at ``version``, opened with ``open_(stack)`` if
        there is none (or the one there is went down, or is for another version)."""
        held = self._held.get(name)
        while held is not None and (held.version != version or not held.alive):
            await self._drop(name, held)
            held = self._held.get(name)  # re-read: a concurrent caller may have opened it meanwhile
        if held is None:
            held = _Held(version, open_)
            self.opened += 1
            self._held[name] = held
            while len(self._held) > MAX_SESSIONS:
                oldest = next(iter(self._held))
                await self.drop(oldest)
        if self._held.get(name) is held:
            self._held.move_to_end(name)
        try:
            return await held.ready()
        except BaseException:
            if self._held.get(name) is held:
                del self._held[name]
            raise

    async def drop(self, name: str, only_if: Any = None) -> None:
        """Close connector ``name``'s session (a call on it failed, or it changed). With
        ``only_if`` (the client a failed call used), only if that client is still the pooled one:
        a session another step has just reopened is left open."""
        held = self._held.get(name)
        if held is not None and (only_if is None or held.client is only_if):
            await self._drop(name, held)

    async def _drop(self, name: str, held: _Held) -> None:
        if self._held.get(name) is held:
            del self._held[name]
        await held.close()

    def names(self) -> list[str]:
        return [n for n, h in self._held.items() if h.alive]

    async def aclose(self) -> None:
        for name in list(self._held):
            await self.drop(name)


_pools: dict[asyncio.AbstractEventLoop, ConnectorPool] = {}
"""A plain dict (each pool's tasks hold their loop, so weak keys would never go): the pools of
closed loops are forgotten on the next access."""


def pool() -> ConnectorPool:
    """The pool of the running event loop."""
    loop = asyncio.get_running_loop()
    for closed in [lp for lp in _pools if lp.is_closed()]:
        del _pools[closed]
    p = _pools.get(loop)
    if p is None:
        p = _pools[loop] = ConnectorPool()
    return p
