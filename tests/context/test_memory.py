"""Memory by compaction (keel.context.memory) on real stores: dedup, supersession, races, sources."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime

import pytest

from keel.context.memory import Memory, MemoryError, Turn, run_turns, thread_turns
from keel.store import open_store
from keel.testing import scripted

DAY = 86_400.0
T0 = datetime(2026, 1, 10, tzinfo=UTC).timestamp()


@pytest.fixture
def store(keel_home):
    s = open_store(keel_home)
    yield s
    s.close()


def _mem(store, scope: str = "user:ana", **kw) -> Memory:
    return Memory("mem", scope, store, embedder="test-hashing", **kw)


def test_the_same_turn_and_the_same_fact_are_stored_once(store) -> None:
    mem = _mem(store)
    turns = [Turn("user", "I live in Porto.", T0), Turn("assistant", "Nice!", T0 + 1)]
    assert mem.record(turns, source="thread:a") == 2
    assert mem.record(turns, source="thread:a") == 0  # a retried step: nothing new
    assert mem.pending() == 2
    # the same fact in other words of the same form: one fact
    assert mem.add_facts([("I", "City", "Porto.", T0, {"source": "thread:a", "position": 0})]) == 1
    assert mem.add_facts([("user", "city", "porto", T0 + 5, {"source": "thread:b", "position": 3})]) == 0
    [fact] = mem.facts(include_superseded=True)
    assert (fact.subject, fact.attribute, fact.value, fact.valid_from) == ("user", "City", "Porto", T0)
    assert fact.sources == [{"source": "thread:a", "position": 0}] and fact.current
    mem.close()


def test_a_later_fact_supersedes_an_earlier_one_whatever_the_order_of_writing(store) -> None:
    mem = _mem(store)
    src = {"source": "thread:a", "position": 0}
    mem.add_facts([("user", "city", "Lisbon", T0 + 60 * DAY, src)])  # the update arrives first
    mem.add_facts([("user", "city", "Porto", T0, src), ("user", "employer", "Acme", T0, src)])
    mem.add_facts([("user", "city", "Braga", T0 + 30 * DAY, src)])
    history = {f.value: f for f in mem.facts(include_superseded=True)}
    assert [f.value for f in mem.facts()] == ["Acme", "Lisbon"]
    assert history["Porto"].superseded_by == history["Braga"].id and history["Porto"].valid_until == T0 + 30 * DAY
    assert history["Braga"].superseded_by == history["Lisbon"].id
    assert history["Porto"].render() == "- user city: Porto (from 2026-01-10 until 2026-02-09, superseded)"
    assert history["Lisbon"].render() == "- user city: Lisbon (since 2026-03-11)"
    # the agent's block dates every fact, the superseded ones with when they stopped holding
    block = mem.context("which city does the user live in?", k=5)
    assert "user city: Lisbon (since 2026-03-11)" in block and "Porto (from 2026-01-10 until" in block
    # forgetting the newest makes the one before it current again
    assert mem.forget([history["Lisbon"].id[:10]]) == 1
    assert [f.value for f in mem.facts()] == ["Acme", "Braga"]
    assert [h.citation.source for h in mem._collection().search("Lisbon", k=10)] and \
        history["Lisbon"].id not in [h.citation.source for h in mem._collection().search("Lisbon", k=10)]
    with pytest.raises(MemoryError, match="no fact"):
        mem.forget(["ffffffffffff"])
    mem.close()


def test_scopes_do_not_see_each_other(store) -> None:
    ana, bob = _mem(store, "user:ana"), _mem(store, "user:bob")
    ana.add_facts([("user", "dog name", "Rex", T0, {"source": "s", "position": 0})])
    bob.add_facts([("user", "dog name", "Fido", T0, {"source": "s", "position": 0})])
    assert [f.value for f in ana.search("what is my dog called?")] == ["Rex"]
    assert [f.value for f in bob.search("what is my dog called?")] == ["Fido"]
    assert _mem(store, "user:cy").search("dog") == []
    assert bob.forget(everything=True) == 1 and [f.value for f in ana.facts()] == ["Rex"]
    with pytest.raises(MemoryError, match="not valid"):
        _mem(store, "no spaces please")
    ana.close()
    bob.close()


def test_compaction_dates_facts_by_their_message_and_survives_a_repeat(store) -> None:
    mem = _mem(store)
    mem.record([Turn("user", "Hi there!", T0), Turn("user", "I started at Acme today.", T0 + DAY),
                Turn("assistant", "Congrats on Acme.", T0 + DAY), Turn("user", "Now I work at Globex.", T0 + 90 * DAY)],
               source="thread:t1")
    with scripted("extractor") as ex:
        ex.reply(parsed={"facts": [{"message": 2, "subject": "user", "attribute": "employer", "value": "Acme"},
                                   {"message": 3, "subject": "user", "attribute": "employer", "value": "Globex"},
                                   {"message": 9, "subject": "user", "attribute": "made up", "value": "x"}]})
        assert mem.compact("scripted:extractor") == 2  # message 9 does not exist: dropped
        prompt = ex.calls[0].messages[-1].content
    assert prompt.splitlines() == ["[1] user (2026-01-10): Hi there!", "[2] user (2026-01-11): I started at Acme today.",
                                   "[3] user (2026-04-10): Now I work at Globex."]
    assert ex.calls[0].output_schema["properties"]["facts"]["items"]["additionalProperties"] is False
    acme, globex = mem.facts(include_superseded=True)
    assert acme.valid_from == T0 + DAY and acme.sources == [{"source": "thread:t1", "position": 1}]
    assert globex.valid_from == T0 + 90 * DAY and acme.superseded_by == globex.id and mem.pending() == 0
    # the same turns recorded and compacted again (a crash before they were marked): no new facts
    store.execute("UPDATE memory_turns SET compacted_at = NULL")
    with scripted("extractor") as ex:
        ex.reply(parsed={"facts": [{"message": 2, "subject": "I", "attribute": "employer", "value": "Acme."}]})
        assert mem.compact("scripted:extractor") == 0
    assert len(mem.facts(include_superseded=True)) == 2
    mem.close()


def test_threads_writing_the_same_fact_at_once_make_one_fact(store, keel_home) -> None:
    _mem(store).close()  # the collection exists before the race (its embedder is chosen once)
    barrier = threading.Barrier(6)
    added: list[int] = []
    errors: list[BaseException] = []

    def write(i: int) -> None:
        s = open_store(keel_home)
        try:
            m = _mem(s)
            barrier.wait()
            added.append(m.add_facts([("user", "city", "Porto", T0, {"source": f"thread:{i}", "position": 0})]))
            m.record([Turn("user", "I live in Porto", T0)], source="thread:x")
            m.close()
        except BaseException as e:
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(added) == [0, 0, 0, 0, 0, 1]
    mem = _mem(store)
    assert len(mem.facts(include_superseded=True)) == 1 and mem.pending() == 1
    assert [h.citation.source for h in mem._collection().search("Porto city", k=5)] == [mem.facts()[0].id]
    mem.close()


_WRITER = textwrap.dedent("""
    import sys, time
    from keel.context.memory import Memory
    from keel.store import open_store
    value, when, go = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    store = open_store()
    mem = Memory("mem", "user:ana", store, embedder="test-hashing")
    mem.record([("user", "I live in Porto")], source="thread:x")
    while not __import__("os").path.exists(go):
        time.sleep(0.01)
    for _ in range(20):
        mem.add_facts([("user", "city", value, when, {"source": "proc", "position": 0})])
    mem.close()
    store.close()
""")


def _two_processes(tmp_path, env: dict[str, str], args: list[list[str]]) -> None:
    import os

    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, *a, str(go)], env={**os.environ, **env},
                              stderr=subprocess.PIPE, text=True) for a in args]
    go.write_text("")
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err


def test_two_processes_writing_facts_at_once(tmp_path, store) -> None:
    _mem(store).close()
    # the same fact from both: one fact; and an update racing the fact it updates: the later one wins
    _two_processes(tmp_path, {}, [["Porto", str(T0)], ["Porto", str(T0)]])
    _two_processes(tmp_path, {}, [["Lisbon", str(T0 + DAY)], ["Braga", str(T0 + 2 * DAY)]])
    mem = _mem(store)
    facts = mem.facts(include_superseded=True)
    assert [f.value for f in facts] == ["Porto", "Lisbon", "Braga"] and [f.value for f in mem.facts()] == ["Braga"]
    assert facts[0].superseded_by == facts[1].id and facts[1].superseded_by == facts[2].id
    assert mem.pending() == 1
    mem.close()


def test_memory_on_postgresql(pg_url, tmp_path) -> None:
    store = open_store(url=pg_url)
    try:
        mem = Memory("mem", "user:ana", store, embedder="test-hashing", collection_store=pg_url)
        mem.record([("user", "I live in Porto")], source="thread:x")
        mem.add_facts([("user", "city", "Lisbon", T0 + DAY, {"source": "a", "position": 0}),
                       ("user", "city", "Porto", T0, {"source": "a", "position": 0})])
        assert [f.value for f in mem.facts()] == ["Lisbon"]
        mem.close()
        _two_processes(tmp_path, {"KEEL_STORE_URL": pg_url}, [["Braga", str(T0 + 2 * DAY)], ["Braga", str(T0 + 2 * DAY)]])
        mem = Memory("mem", "user:ana", store, embedder="test-hashing", collection_store=pg_url)
        assert [f.value for f in mem.facts(include_superseded=True)] == ["Porto", "Lisbon", "Braga"]
        assert [f.value for f in mem.search("which city?", k=1, include_superseded=False)] == ["Braga"]
        assert mem.pending() == 1
        mem.close()
    finally:
        store.close()


async def test_turns_from_a_chatkit_thread_and_from_a_run(store) -> None:
    from chatkit.types import (
        AssistantMessageContent,
        AssistantMessageItem,
        InferenceOptions,
        ThreadMetadata,
        UserMessageItem,
        UserMessageTextContent,
    )

    from keel.operate.server.chatkit_store import ChatContext, KeelChatKitStore

    ck, ctx = KeelChatKitStore(store), ChatContext()
    when = datetime(2026, 2, 1, tzinfo=UTC)
    await ck.save_thread(ThreadMetadata(id="thr_1", created_at=when), ctx)
    await ck.add_thread_item("thr_1", UserMessageItem(
        id="m1", thread_id="thr_1", created_at=when, content=[UserMessageTextContent(text="My dog is Rex.")],
        inference_options=InferenceOptions()), ctx)
    await ck.add_thread_item("thr_1", AssistantMessageItem(
        id="m2", thread_id="thr_1", created_at=when, content=[AssistantMessageContent(text="Hi Rex!")]), ctx)
    turns = thread_turns(store, "thr_1")
    assert [(t.role, t.text, t.said_at) for t in turns] == [("user", "My dog is Rex.", when.timestamp()),
                                                             ("assistant", "Hi Rex!", when.timestamp())]
    with pytest.raises(MemoryError, match="no chat thread"):
        thread_turns(store, "thr_nope")
    with pytest.raises(MemoryError, match="no run"):
        run_turns(store, "nope")


def test_cli_show_forget_record_without_tracebacks(store, keel_home) -> None:
    import os

    mem = _mem(store)
    mem.add_facts([("user", "city", "Porto", T0, {"source": "thread:a", "position": 0}),
                   ("user", "city", "Lisbon", T0 + DAY, {"source": "thread:a", "position": 4})])
    lisbon = mem.facts()[0]
    mem.close()

    from typer.testing import CliRunner

    from keel.cli import app
    from keel.errors import KeelError

    def keel(*args: str):
        return CliRunner().invoke(app, ["memory", *args])

    out = keel("show", "mem", "--scope", "user:ana", "--all")
    assert out.exit_code == 0 and "user city: Porto (from 2026-01-10 until 2026-01-11, superseded)" in out.stdout
    assert f"{lisbon.id[:12]}  user city: Lisbon (since 2026-01-11)  [thread:a#4]" in out.stdout
    out = keel("show", "mem", "--scope", "user:bob")
    assert out.exit_code == 0 and "scopes with facts: user:ana" in out.stdout
    for args, words in ((("forget", "mem", "--scope", "user:ana"), "--everything"),
                        (("forget", "mem", "--scope", "user:ana", "abc"), "too short"),
                        (("record", "mem", "--thread", "thr_nope"), "no chat thread"),
                        (("record", "mem"), "one of --thread or --run"),
                        (("show", "mem", "--scope", "two words"), "not valid")):
        out = keel(*args)
        assert isinstance(out.exception, KeelError) and words in out.exception.message + (out.exception.hint or "")
    # through the real entry point: an error and a fix, exit 2, no traceback
    proc = subprocess.run([sys.executable, "-m", "keel", "memory", "forget", "mem", "--scope", "user:ana"],
                          capture_output=True, text=True, env={**os.environ, "KEEL_HOME": str(keel_home)}, timeout=120)
    assert proc.returncode == 2 and "error: name the facts to forget" in proc.stderr and "fix:" in proc.stderr
    assert "Traceback" not in proc.stderr
    out = keel("forget", "mem", "--scope", "user:ana", lisbon.id[:12])
    assert out.exit_code == 0 and "forgot 1 fact" in out.stdout
    out = keel("show", "mem", "--scope", "user:ana", "--json")
    import json

    assert [f["value"] for f in json.loads(out.stdout)["facts"]] == ["Porto"]


def test_grounded_compaction_quotes_the_turns_and_a_failing_batch_goes_turn_by_turn(store) -> None:
    from keel.context.memory import grounded_schema

    schema = grounded_schema(["I live in Porto.", "My dog is Rex."])
    item = schema["properties"]["facts"]["items"]["properties"]
    assert {"Porto", "Rex", "dog", "user"} <= set(item["value"]["enum"]) | set(item["subject"]["enum"])
    assert "in Porto" not in item["value"]["enum"] and item["message"] == {"enum": [1, 2]}  # no stop-word edges

    mem = _mem(store)
    mem.record([Turn("user", "I live in Porto.", T0), Turn("user", "Is it sunny there?", T0),
                Turn("user", "My dog is Rex.", T0)], source="thread:a")
    bad = {"facts": [{"message": 1, "subject": "user", "attribute": "city", "value": "Atlantis"}]}
    with scripted("small") as small:
        small.reply(parsed=bad)  # the batch of two: not under the schema, twice (the retry) ...
        small.reply(parsed=bad)
        small.reply(parsed={"facts": [{"message": 1, "subject": "user", "attribute": "city", "value": "Porto"}]})
        small.reply(parsed=bad)  # ... then one turn at a time: the second never answers under it
        small.reply(parsed=bad)
        assert mem.compact("scripted:small", grounded=True, skip_questions=True) == 1
    shown = [c.messages[-1].content for c in small.calls]
    assert shown[0].splitlines() == ["[1] user (2026-01-10): I live in Porto.", "[2] user (2026-01-10): My dog is Rex."]
    assert shown[2] == "[1] user (2026-01-10): I live in Porto." and all("sunny" not in s for s in shown)
    assert [f.value for f in mem.facts()] == ["Porto"] and mem.failed_turns == 1 and mem.pending() == 0
    mem.close()


def test_two_collections_with_the_same_scope_each_keep_the_turn_and_the_fact(store) -> None:
    """Ids hash the collection too: the same turn and fact in a second collection are rows of its own."""
    first, second = _mem(store), Memory("mem-two", "user:ana", store, embedder="test-hashing")
    turns = [Turn("user", "I live in Porto.", T0)]
    src = {"source": "thread:a", "position": 0}
    assert first.record(turns, source="thread:a") == 1 and second.record(turns, source="thread:a") == 1
    assert first.pending() == second.pending() == 1
    assert first.add_facts([("user", "city", "Porto", T0, src)]) == 1
    assert second.add_facts([("user", "city", "Porto", T0, src)]) == 1
    assert [f.value for f in second.facts()] == ["Porto"] and [f.value for f in second.search("city")] == ["Porto"]
    assert first.facts()[0].id != second.facts()[0].id
    first.close()
    second.close()


def test_a_fact_said_again_after_it_was_replaced_is_current_again(store) -> None:
    mem = _mem(store)
    src = {"source": "thread:a", "position": 0}
    mem.add_facts([("user", "city", "Lisbon", T0, src)])
    mem.add_facts([("user", "city", "Porto", T0 + 30 * DAY, src)])
    assert [f.value for f in mem.facts()] == ["Porto"]
    assert mem.add_facts([("user", "city", "Lisbon", T0 + 60 * DAY, src)]) == 0  # the same fact, not a new one
    history = {f.value: f for f in mem.facts(include_superseded=True)}
    assert [f.value for f in mem.facts()] == ["Lisbon"] and history["Lisbon"].valid_from == T0 + 60 * DAY
    assert history["Porto"].superseded_by == history["Lisbon"].id and history["Porto"].valid_until == T0 + 60 * DAY
    # said again while still current (or said earlier than its replacement): nothing moves
    mem.add_facts([("user", "city", "Lisbon", T0 + 90 * DAY, src), ("user", "city", "Porto", T0 + 45 * DAY, src)])
    assert [(f.value, f.valid_from) for f in mem.facts()] == [("Lisbon", T0 + 60 * DAY)]
    mem.close()


def test_facts_stored_while_indexing_failed_are_indexed_by_the_next_write(store, monkeypatch) -> None:
    mem = _mem(store)
    src = {"source": "thread:a", "position": 0}
    mem.add_facts([("user", "city", "Porto", T0, src)])
    col = mem._collection()

    def embedding_down(*a, **kw):
        raise RuntimeError("embedder unreachable")

    monkeypatch.setattr(col, "add_records", embedding_down)
    with pytest.raises(RuntimeError, match="unreachable"):
        mem.add_facts([("user", "dog name", "Rex", T0, src)])
    monkeypatch.undo()
    assert sorted(f.value for f in mem.facts()) == ["Porto", "Rex"]
    assert [f.value for f in mem.search("what is my dog called?")] == ["Porto"]  # Rex stored, not indexed
    assert mem.add_facts([("user", "dog name", "Rex", T0, src)]) == 0  # the next compaction extracts it again
    assert mem.search("what is my dog called?")[0].value == "Rex"
    mem.close()


def test_search_before_any_fact_is_indexed_finds_nothing_instead_of_failing(store, monkeypatch) -> None:
    """Found in review: with facts stored but none indexed yet, the scope filter named a field the
    collection had never seen, and search raised ``unknown filter field 'scope'``."""
    mem = _mem(store)
    col = mem._collection()

    def embedding_down(*a, **kw):
        raise RuntimeError("embedder unreachable")

    monkeypatch.setattr(col, "add_records", embedding_down)
    with pytest.raises(RuntimeError, match="unreachable"):
        mem.add_facts([("user", "city", "Porto", T0, {"source": "thread:a", "position": 0})])
    monkeypatch.undo()
    assert [f.value for f in mem.facts()] == ["Porto"]
    assert mem.search("where do I live?") == []
    assert mem.context("where do I live?") == ""
    mem.close()
