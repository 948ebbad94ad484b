"""An Agent node's ``memory`` option (:class:`~keel.workflows.spec.AgentMemory`, docs/memory.md).

Before the model call, the facts remembered for the node's scope that best match its input go
before the conversation as one system message headed by :data:`~keel.context.memory.MEMORY_NOTICE`
(data, not instructions). What was recalled is memoized for the step, so a re-executed step sees
the same facts. After the answer, the node's input and answer are recorded as two turns
(``run:<id>``, positions from the step number): an insert each, no model call, no embedding; the
same step recorded twice is one pair of turns. Compaction into facts happens elsewhere: ``keel
memory compact``, or a background thread of this process when ``compact_after`` turns wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from keel.errors import KeelError
from keel.models import Message
from keel.workflows.nodes import NodeFailure

if TYPE_CHECKING:
    from keel.workflows.engine import Engine, _ActiveRun
    from keel.workflows.spec import AgentNode

__all__ = ["recall", "record"]

log = logging.getLogger(__name__)
_compacting: set[tuple[str, str]] = set()
_lock = threading.Lock()


def _scope(run: _ActiveRun, node: AgentNode, env: dict[str, Any]) -> str:
    from keel.context.memory import check_scope

    try:
        scope = str(run.wf.templates[(node.id, "memory.scope")].render(env))
    except Exception as e:  # CelError: a variable missing at run time
        raise NodeFailure(f"cannot build the memory scope: {e}", kind="cel") from None
    try:
        return check_scope(scope)
    except KeelError as e:  # e.g. a user id with spaces in it
        raise NodeFailure(f"{e.message} ({e.hint})", kind="memory") from None


def _open(engine: Engine, node: AgentNode, scope: str) -> Any:
    from keel.context.memory import Memory

    assert node.memory is not None
    return Memory(node.memory.collection, scope, engine.store)


async def recall(engine: Engine, run: _ActiveRun, node: AgentNode, env: dict[str, Any], query: str) -> list[Message]:
    """The memory block for this step (memoized), as a list of zero or one system message."""
    assert node.memory is not None
    key = f"{run.seq}:memory"
    memo = engine.memo_get(run.id, key)
    if memo is None:
        scope = _scope(run, node, env)
        text = ""
        if node.memory.max_facts:
            def search() -> str:
                with _open(engine, node, scope) as mem:
                    return mem.context(query, k=node.memory.max_facts)
            try:
                text = await asyncio.to_thread(search)
            except KeelError as e:
                raise NodeFailure(f"memory {node.memory.collection!r}: {e.message}"
                                  + (f" ({e.hint})" if e.hint else ""), kind="memory") from None
        memo = json.dumps({"scope": scope, "text": text})
        engine.memo_put(run.id, key, memo)
    text = json.loads(memo)["text"]
    return [Message.system(text)] if text else []


async def record(engine: Engine, run: _ActiveRun, node: AgentNode, env: dict[str, Any], user_text: str,
                 answer: str) -> None:
    """Record the step's two turns; start a background compaction when ``compact_after`` turns wait."""
    assert node.memory is not None
    scope = _scope(run, node, env)
    mem = _open(engine, node, scope)
    await asyncio.to_thread(mem.record, [("user", user_text), ("assistant", answer)], source=f"run:{run.id}",
                            start=2 * int(run.seq))
    after = node.memory.compact_after
    if after is None or await asyncio.to_thread(mem.pending) < after:
        return
    job = (node.memory.collection, scope)
    with _lock:
        if job in _compacting:  # one compaction per memory and scope at a time in this process
            return
        _compacting.add(job)
    model = run.version.model_for(node.model)

    def compact() -> None:
        try:
            with _open(engine, node, scope) as m:
                m.compact(model)  # a model of its own: the engine's belongs to its event loop
        except Exception:  # a failed compaction leaves the turns pending for the next one
            log.exception("memory compaction of %s/%s failed", *job)
        finally:
            with _lock:
                _compacting.discard(job)

    threading.Thread(target=compact, name=f"keel-memory-{scope}", daemon=True).start()
