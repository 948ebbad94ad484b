"""A worker process for the crash-injection test (run as a script; killed with SIGKILL at random).

    python crash_worker.py init N   publish the workflow and create N runs (not executed)
    python crash_worker.py work     resume every unfinished run until none is left

The tool ``charge`` records each invocation in a log and its side effect in a
SQLite table keyed by the idempotency key, as a real payment API would.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys

from keel.models.scripted import get_script
from keel.store import open_store
from keel.workflows import Engine, ToolContext, Versions, validate

SPEC = """
name: crash
nodes:
  - {id: start, type: start, state: {paid: false}}
  - id: pay
    type: agent
    model: scripted:crash
    instructions: Charge the order.
    tools: [charge]
  - {id: mark, type: set_state, assign: {paid: "true"}}
  - {id: shape, type: transform, fields: {answer: "nodes.pay.output_text", paid: "state.paid"}}
  - {id: done, type: end}
edges:
  - {from: start, to: pay}
  - {from: pay, to: mark}
  - {from: mark, to: shape}
  - {from: shape, to: done}
"""

EFFECTS = os.environ["CRASH_EFFECTS"]


async def charge(order: int, ctx: ToolContext) -> str:
    """Charge an order once (idempotent on ctx.idempotency_key)."""
    await asyncio.sleep(30 if os.environ.get("CRASH_SLOW") else random.uniform(0, 0.05))
    with open(EFFECTS + ".log", "a") as log:
        log.write(f"{ctx.run_id} {ctx.idempotency_key}\n")
    conn = sqlite3.connect(EFFECTS, timeout=30)
    with conn:
        conn.execute("INSERT OR IGNORE INTO effects (key, run_id, order_no) VALUES (?, ?, ?)",
                     (ctx.idempotency_key, ctx.run_id, order))
    conn.close()
    await asyncio.sleep(random.uniform(0, 0.01))
    return f"charged order {order}"


def script_model() -> None:
    """scripted:crash asks for one charge, then answers once the tool has replied."""
    model = get_script("crash")
    attempt = model._attempt

    async def respond(request):  # queue the reply this request needs, then answer as scripted
        if any(m.role == "tool" for m in request.messages):
            model.reply(f"done: {request.messages[-1].content}")
        else:
            model.reply(tool_calls=[("charge", {"order": int(request.messages[-1].content)})])
        async for item in attempt(request):
            yield item

    model._attempt = respond


async def main() -> None:
    script_model()
    store = open_store()
    engine = Engine(store, tools={"charge": charge})
    if sys.argv[1] == "init":
        conn = sqlite3.connect(EFFECTS)
        conn.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, run_id TEXT, order_no INTEGER)")
        conn.close()
        from keel.workflows.loader import parse_spec

        loaded = parse_spec(SPEC)
        validate(loaded, tools={"charge": charge})
        version, _ = Versions(store).publish(loaded)
        for i in range(int(sys.argv[2])):
            engine.create(version, str(i))
        return
    while store.query("SELECT 1 FROM workflow_runs WHERE status = 'running' LIMIT 1"):
        await engine.recover(concurrency=10)
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
