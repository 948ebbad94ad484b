"""The server's in-memory event hub (no server needed: it is plain asyncio)."""

from __future__ import annotations

from keel.operate.server.runner import EventHub
from keel.workflows.engine import NodeEvent


async def test_a_reader_that_joins_as_the_run_finishes_still_gets_every_event() -> None:
    """The reader takes the history so far, and the run finishes while it reads: the events
    published meanwhile (the final one included) still reach it, in order, once each."""
    hub = EventHub()
    hub.open("r1", "wf", 1)
    hub.publish(NodeEvent("node_started", "r1", "start", "start"))
    hub.publish(NodeEvent("node_finished", "r1", "start", "start", port="next"))
    seen = []
    async for doc in hub.follow("r1"):
        seen.append(doc["kind"])
        if len(seen) == 1:  # while the reader is inside the history, the run goes on and ends
            hub.publish(NodeEvent("node_started", "r1", "bot", "agent"))
            hub.publish(NodeEvent("node_finished", "r1", "bot", "agent", port="next"))
            hub.publish(NodeEvent("run_finished", "r1", status="succeeded"))
    assert seen == ["node_started", "node_finished", "node_started", "node_finished", "run_finished"]


async def test_a_reader_of_a_finished_run_gets_its_steps_and_stops() -> None:
    hub = EventHub()
    hub.open("r2", "wf", 1)
    hub.publish(NodeEvent("node_started", "r2", "start", "start"))
    hub.publish(NodeEvent("text_delta", "r2", "bot", "agent", text="hi"))
    hub.publish(NodeEvent("run_finished", "r2", status="succeeded"))
    assert [d["kind"] async for d in hub.follow("r2")] == ["node_started", "run_finished"]
