"""``keel worker`` with scripted models, for the worker tests (run as a script: the real command,
in a process of its own, killed with SIGKILL by the tests).

    python worker_proc.py [keel worker options]

Models it scripts (the tests' stand-in for a remote model):

- ``scripted:pay``: asks for one ``charge`` of the order in the input, then answers
  ``paid: <tool result>`` once the tool has replied;
- ``scripted:slow``: streams ``one two three four five six`` in pieces, holding after the
  first piece until the file ``$WORKER_GATE`` exists (a test reads the first piece meanwhile).

Tools (import paths, as a project's are): ``tests.operate.worker_proc:charge`` does its side
effect once per idempotency key in the SQLite file ``$WORKER_EFFECTS`` and logs every
invocation to ``$WORKER_EFFECTS.log``; it holds until ``$WORKER_GATE`` exists when
``WORKER_HOLD`` is set (a test kills the worker mid-call).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

from keel.workflows import ToolContext


async def _gate() -> None:
    gate = os.environ.get("WORKER_GATE")
    while gate and not Path(gate).exists():
        await asyncio.sleep(0.02)


async def charge(order: int, ctx: ToolContext) -> str:
    """Charge an order once (idempotent on ctx.idempotency_key)."""
    path = os.environ["WORKER_EFFECTS"]
    with open(path + ".log", "a") as log:
        log.write(f"{ctx.run_id} {ctx.idempotency_key}\n")
    if os.environ.get("WORKER_HOLD"):
        await _gate()
    conn = sqlite3.connect(path, timeout=30)
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, run_id TEXT, order_no INTEGER)")
        conn.execute("INSERT OR IGNORE INTO effects (key, run_id, order_no) VALUES (?, ?, ?)",
                     (ctx.idempotency_key, ctx.run_id, order))
    conn.close()
    return f"charged order {order}"


def _script() -> None:
    from keel.models.scripted import get_script
    from keel.models.types import TextDelta

    pay = get_script("pay")
    pay_attempt = pay._attempt

    async def pay_respond(request):  # queue the reply this request needs, then answer as scripted
        if any(m.role == "tool" for m in request.messages):
            pay.reply(f"paid: {request.messages[-1].content}")
        else:
            import re

            order = next(re.search(r"\d+", m.content)[0] for m in reversed(request.messages)
                         if re.search(r"\d+", m.content or ""))
            pay.reply(tool_calls=[("charge", {"order": int(order)})])
        async for item in pay_attempt(request):
            yield item

    pay._attempt = pay_respond

    slow = get_script("slow")
    slow_attempt = slow._attempt

    async def slow_respond(request):
        slow.reply("one two three four five six")
        first = True
        async for item in slow_attempt(request):
            yield item
            if first and isinstance(item, TextDelta):
                first = False
                await _gate()

    slow._attempt = slow_respond


if __name__ == "__main__":
    _script()
    from keel.cli import main

    sys.argv = ["keel", "worker", *sys.argv[1:]]
    main()
