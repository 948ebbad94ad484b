"""ChatKit items keep one order per thread when many are saved at once (issue 17).

On PostgreSQL (READ COMMITTED) two transactions computing ``MAX(seq) + 1`` for one thread at the
same time both saw the same maximum and gave two items the same place; the thread's row is now
locked first. Run against the embedded store and a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

import pytest
from chatkit.types import AssistantMessageContent, AssistantMessageItem, ThreadMetadata

from keel.operate.server.chatkit_store import ChatContext, KeelChatKitStore
from keel.store import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'keel.db'}"
    opened = open_store(tmp_path, url=url)
    assert opened.dialect == request.param
    yield opened
    opened.close()


def test_items_saved_at_once_get_distinct_places_in_their_thread(store) -> None:
    chat = KeelChatKitStore(store)
    context = ChatContext(owner="k/u")
    now = dt.datetime.now(dt.UTC)
    asyncio.run(chat.save_thread(ThreadMetadata(id="t1", created_at=now), context))
    writers, per_writer = 8, 5
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            start.wait()
            for i in range(per_writer):
                item = AssistantMessageItem(id=f"i{w}-{i}", thread_id="t1", created_at=now,
                                            content=[AssistantMessageContent(text=f"{w}/{i}")])
                asyncio.run(chat.add_thread_item("t1", item, context))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    rows = store.query("SELECT id, seq FROM chatkit_items WHERE thread_id = ? ORDER BY seq", ("t1",))
    assert len(rows) == writers * per_writer
    assert sorted(r["seq"] for r in rows) == list(range(1, writers * per_writer + 1)), rows
    # Each writer's own items stay in the order it saved them.
    for w in range(writers):
        mine = [r["id"] for r in rows if r["id"].startswith(f"i{w}-")]
        assert mine == [f"i{w}-{i}" for i in range(per_writer)]
