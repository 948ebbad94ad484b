"""Run events as NOTIFY payloads for live followers (decision 0037), on real PostgreSQL.

A writer's events reach a follower in another store (another instance's connections) in the
notifications themselves, in order, chunked under the 8,000-byte cap, with a pointer for an
event too big for one; the follower reads ``run_events`` only to start (a late follower
replays everything stored, tokens included), for a pointer, and when a payload does not
continue from its last event. End to end: a streamed chat completion on a server that does
not execute gets every token, in order, of a run a ``keel worker`` executes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from keel.store import open_store
from keel.workflows.engine import NodeEvent
from keel.workflows.events import CHANNEL, PAYLOAD_LIMIT, EventLog, _payloads, follow
from keel.workflows.wakeup import FEED_LIMIT, Feed, Wakeup
from tests.operate.conftest import start_server
from tests.operate.workers import env, publish_to, start_worker


class _Reads:
    """Counts the follower store's reads of ``run_events`` (the real store answers them)."""

    def __init__(self, store: Any) -> None:
        self.n = 0
        real = store.query

        def query(sql: str, params: Any = ()) -> list[dict[str, Any]]:
            if "FROM run_events" in sql:
                self.n += 1
            return real(sql, params)

        store.query = query


def _tokens(n: int) -> list[str]:
    return [f"w{i:04d}-" + "é" * (i % 7) + " " for i in range(n)]


async def _publish_run(log: EventLog, run_id: str, tokens: list[str], *, per_turn: int, big: str = "") -> None:
    """A run's events: node events, ``tokens`` as text deltas ``per_turn`` to a turn of the loop
    (one commit each), an oversized delta (``big``) in the middle, then the run's end."""
    log.publish(NodeEvent("node_started", run_id, "bot", "agent"))
    for i, text in enumerate(tokens):
        log.publish(NodeEvent("text_delta", run_id, "bot", "agent", text=text))
        if big and i == len(tokens) // 2:
            log.publish(NodeEvent("text_delta", run_id, "bot", "agent", text=big))
        if i % per_turn == per_turn - 1:
            await asyncio.sleep(0.002)
    log.publish(NodeEvent("node_finished", run_id, "bot", "agent", port="next"))
    log.publish(NodeEvent("run_finished", run_id, status="succeeded"))
    await asyncio.sleep(0.01)


def test_payloads_are_chunked_under_the_cap_in_order_with_a_pointer_for_an_event_too_big() -> None:
    rows = [("r1", f"{i:025d}", "text_delta", json.dumps({"text": "x" * 300 + "é" * 50}), 0.0,
             f"{i - 1:025d}" if i else "") for i in range(100)]
    rows.insert(50, ("r1", "0000000000000000000000049b", "text_delta", json.dumps({"text": "y" * 9000}), 0.0,
                     f"{49:025d}"))
    rows[51] = (*rows[51][:5], "0000000000000000000000049b")
    payloads = _payloads(rows)
    assert len(payloads) > 4
    assert all(len(p.encode()) <= PAYLOAD_LIMIT for p in payloads)
    entries, prev = [], ""
    for p in payloads:
        run_id, _, data = p.partition(" ")
        message = json.loads(data)
        assert run_id == "r1" and message["p"] == prev  # each chunk continues from the last
        entries += message["e"]
        prev = message["e"][-1][0]
    assert [e[0] for e in entries] == [r[1] for r in rows]
    assert [e[1] is None for e in entries].count(True) == 1 and entries[50][1] is None  # the pointer


async def test_a_live_follower_on_another_instance_gets_every_event_from_the_payloads(pg_url: str) -> None:
    writer, reader = open_store(url=pg_url), open_store(url=pg_url)
    wake = Wakeup(reader, poll=60)  # no poll during the test: every table read is counted below
    reads = _Reads(reader)
    log = EventLog(writer)
    tokens = _tokens(400)
    big = "z" * 12_000
    try:
        got: list[dict[str, Any]] = []

        async def one() -> None:
            async for doc in follow(reader, "run-a", wake):
                got.append(doc)

        follower = asyncio.ensure_future(one())
        await _wait_listening(writer)  # a notification sent before LISTEN is lost (the table has it)
        await _publish_run(log, "run-a", tokens, per_turn=3, big=big)
        await asyncio.wait_for(follower, 60)
        texts = [d["text"] for d in got if d["kind"] == "text_delta"]
        assert texts == [*tokens[:201], big, *tokens[201:]]
        assert [d["seq"] for d in got] == list(range(len(got)))
        assert got[0]["kind"] == "node_started" and got[-1]["kind"] == "run_finished"
        assert log.payloads > 10  # about one per commit (134 turns of the loop)
        # the table: the first read, and one for the oversized event's pointer
        assert reads.n <= 3, reads.n
    finally:
        wake.close()
        writer.close()
        reader.close()


async def test_a_late_follower_replays_the_table_tokens_included_then_goes_on_live(pg_url: str) -> None:
    writer, reader = open_store(url=pg_url), open_store(url=pg_url)
    wake = Wakeup(reader, poll=60)
    log = EventLog(writer)
    tokens = _tokens(60)
    try:
        log.publish(NodeEvent("node_started", "run-b", "bot", "agent"))
        for text in tokens[:30]:
            log.publish(NodeEvent("text_delta", "run-b", "bot", "agent", text=text))
            await asyncio.sleep(0.002)
        got: list[dict[str, Any]] = []

        async def one() -> None:
            async for doc in follow(reader, "run-b", wake):
                got.append(doc)

        follower = asyncio.ensure_future(one())  # joins mid-run: its first read replays what is stored
        await _wait_listening(writer)
        for text in tokens[30:]:
            log.publish(NodeEvent("text_delta", "run-b", "bot", "agent", text=text))
            await asyncio.sleep(0.002)
        log.publish(NodeEvent("run_finished", "run-b", status="succeeded"))
        await asyncio.wait_for(follower, 60)
        assert [d.get("text") for d in got if d["kind"] == "text_delta"] == tokens
        # after the run: a new follower replays all of it from the table, tokens included
        again = [d async for d in follow(reader, "run-b", wake)]
        assert [d.get("text") for d in again if d["kind"] == "text_delta"] == tokens
    finally:
        wake.close()
        writer.close()
        reader.close()


async def test_a_follower_whose_listening_connection_dropped_reads_the_gap_from_the_table(pg_url: str) -> None:
    """Notifications sent while the follower's LISTEN connection is down are lost; the first
    payload after it listens again does not continue from its last event: it reads the table."""
    writer, reader = open_store(url=pg_url), open_store(url=pg_url)
    wake = Wakeup(reader, poll=60)
    log = EventLog(writer)
    try:
        got: list[dict[str, Any]] = []
        follower = asyncio.ensure_future(_collect(follow(reader, "run-c", wake), got))
        old = await _wait_listening(writer)
        log.publish(NodeEvent("node_started", "run-c", "bot", "agent"))
        for i in range(5):
            log.publish(NodeEvent("text_delta", "run-c", "bot", "agent", text=f"t{i} "))
            await asyncio.sleep(0.002)
        writer.query("SELECT pg_terminate_backend(?)", (old,))  # the listener reconnects a second later
        for i in range(5, 10):  # sent while nobody listens: lost as notifications, stored as rows
            log.publish(NodeEvent("text_delta", "run-c", "bot", "agent", text=f"t{i} "))
            await asyncio.sleep(0.002)
        await _wait_listening(writer, other_than=old)
        for i in range(10, 15):
            log.publish(NodeEvent("text_delta", "run-c", "bot", "agent", text=f"t{i} "))
            await asyncio.sleep(0.002)
        log.publish(NodeEvent("run_finished", "run-c", status="succeeded"))
        await asyncio.wait_for(follower, 60)
        assert [d.get("text") for d in got if d["kind"] == "text_delta"] == [f"t{i} " for i in range(15)]
        assert got[-1]["kind"] == "run_finished"
    finally:
        wake.close()
        writer.close()
        reader.close()


def test_a_feed_holds_at_most_its_limit_in_characters_then_says_it_lost_payloads() -> None:
    feed = Feed()
    payload = "x" * 7_000
    n = FEED_LIMIT // len(payload)
    for _ in range(n):
        feed.put(payload)
    assert feed.size == n * len(payload) and not feed.lost
    feed.put(payload)  # past the limit: everything is dropped, and said to be
    feed.put("y")  # the reader reads the table anyway: later payloads are not kept either
    assert feed.size == 0 and not feed.items and feed.lost
    assert feed.take() == ([], True)
    feed.put("z")  # read: it keeps payloads again
    assert feed.take() == (["z"], False) and feed.size == 0


async def test_a_stalled_follower_drops_payloads_past_the_feed_limit_and_reads_every_event_from_the_table(
        pg_url: str) -> None:
    """A follower that does not read (its SSE client is slow) while the run writes more than
    :data:`FEED_LIMIT` of payloads keeps at most that much; its feed says payloads were lost,
    and it reads what they said from the table: no event is missed."""
    writer, reader = open_store(url=pg_url), open_store(url=pg_url)
    wake = Wakeup(reader, poll=60)
    log = EventLog(writer)
    texts = [f"t{i:03d} " + "x" * 6_000 for i in range(int(FEED_LIMIT / 6_000 * 1.5))]  # ~1.5 FEED_LIMITs
    try:
        it = follow(reader, "run-d", wake)
        started = asyncio.ensure_future(it.__anext__())
        await _wait_listening(writer)
        log.publish(NodeEvent("node_started", "run-d", "bot", "agent"))
        first = await asyncio.wait_for(started, 60)  # the follower took one event, and now stalls
        assert first["kind"] == "node_started"
        (feed,) = wake._waiters[(CHANNEL, "run-d")]
        for text in texts:
            log.publish(NodeEvent("text_delta", "run-d", "bot", "agent", text=text))
            await asyncio.sleep(0.002)
            assert feed.size <= FEED_LIMIT
        log.publish(NodeEvent("run_finished", "run-d", status="succeeded"))
        for _ in range(1200):  # until the notifications arrived (a guard against hanging)
            if feed.lost:
                break
            await asyncio.sleep(0.05)
        assert feed.lost and feed.size == 0
        rest = [doc async for doc in it]
        assert [d["text"] for d in rest if d["kind"] == "text_delta"] == texts
        assert rest[-1]["kind"] == "run_finished"
        assert [d["seq"] for d in [first, *rest]] == list(range(len(rest) + 1))
    finally:
        wake.close()
        writer.close()
        reader.close()


async def _collect(it: Any, out: list[dict[str, Any]]) -> None:
    async for doc in it:
        out.append(doc)


async def _wait_listening(writer: Any, *, other_than: int = 0) -> int:
    """The pid of the follower's listening connection once it LISTENs (PostgreSQL's own view)."""
    for _ in range(1200):
        rows = writer.query("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
                            " AND datname = current_database() AND pid <> ?", (other_than,))
        if rows:
            return rows[0]["pid"]
        await asyncio.sleep(0.05)
    raise AssertionError("the follower never listened")


def test_a_streamed_completion_on_one_server_gets_every_token_of_a_run_on_a_worker_in_order(
        tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    publish_to(home, ECHO, "echo", url=pg_url)
    environ = env(home, tmp_path, url=pg_url)
    server = start_server(home, "--no-execute", env=environ)
    worker = start_worker(home, environ)
    words = " ".join(f"word{i:03d}-é" for i in range(300))  # ~300 pieces of 8 characters, one turn
    try:
        pieces: list[str] = []
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", timeout=120,
                          json={"model": "echo", "stream": True, "messages": [{"role": "user", "content": words}]}
                          ) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                    if delta:
                        pieces.append(delta)
        assert "".join(pieces) == words
        assert len(pieces) >= 300  # token by token, not the answer in one piece at the end
    finally:
        server.stop()
        worker.stop()
    assert "Traceback" not in server.log_text() + worker.log_text()


ECHO = """
name: echo
nodes:
  - {id: start, type: start}
  - {id: bot, type: agent, model: scripted:echo, instructions: Repeat.}
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
"""
