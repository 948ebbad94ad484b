"""A worker process for the multi-agent kill test (run as a script; the test kills it with SIGKILL).

    python multi_agent_worker.py first   run the conductor workflow; its second model call hangs
    python multi_agent_worker.py resume  resume the run the killed worker left behind

The researcher (an agent called as a tool) calls ``note``, which appends a line to the file named
by ``MULTI_AGENT_LOG`` each time it runs: after the kill and the resume, one line means the
completed specialist call was not made again. In ``resume`` the researcher has no scripted reply:
calling it again would fail the run.
"""

from __future__ import annotations

import asyncio
import os
import sys

from keel.store import open_store
from keel.testing import scripted
from keel.workflows import Engine, Runs, Versions, validate

SPEC = """
name: desk
nodes:
  - {id: start, type: start}
  - id: conductor
    type: agent
    model: scripted:conductor
    agent_tools: [{agent: researcher}]
    handoffs: [closer]
  - {id: researcher, type: agent, model: scripted:researcher, tools: [note]}
  - {id: closer, type: agent, model: scripted:closer}
  - {id: done, type: end}
edges:
  - {from: start, to: conductor}
  - {from: conductor, to: done}
"""


def note(text: str) -> str:
    """Write a note."""
    with open(os.environ["MULTI_AGENT_LOG"], "a") as log:
        log.write(text + "\n")
    return "noted"


async def main() -> None:
    store = open_store()
    engine = Engine(store, tools={"note": note})
    with scripted("conductor") as conductor, scripted("researcher") as researcher, scripted("closer") as closer:
        if sys.argv[1] == "first":
            from keel.workflows.loader import parse_spec

            loaded = parse_spec(SPEC)
            validate(loaded, tools={"note": note})
            version, _ = Versions(store).publish(loaded)
            conductor.reply(tool_calls=[("researcher", {"input": "order 7?"})])
            researcher.reply(tool_calls=[("note", {"text": "looked up order 7"})])
            researcher.reply("Order 7 shipped.")
            conductor.reply("never sent", delay=600)  # the test kills the process while this waits
            await engine.start(version, "Where is order 7?")
            return
        conductor.reply(tool_calls=[("transfer_to_closer", {})])
        closer.reply("Closed: order 7 shipped.")
        [result] = await engine.recover()
        print(result.status, result.error or Runs(store).get(result.run_id).output)
        assert not researcher.calls, "the researcher ran again"
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
