"""An Agent node's ``memory`` option: turns recorded on the write path, facts recalled on a later run."""

from __future__ import annotations

import pytest

from keel.testing import scripted
from keel.workflows import arun

pytest.importorskip("keel.context")

FLOW = """
name: remembering
nodes:
  - {id: start, type: start}
  - id: chat
    type: agent
    model: scripted:pal
    input: workflow.input.text
    memory: {collection: pal-memory, scope: "user:{{ workflow.input.user }}"MORE}
  - {id: done, type: end, output: "input.output_text"}
edges:
  - {from: start, to: chat}
  - {from: chat, to: done}
"""


@pytest.fixture
def memory_collection(keel_home):
    from keel.context import Collection

    Collection.open("pal-memory", embedder="test-hashing").close()  # a test embedder, not MiniLM


async def test_agent_records_turns_and_recalls_compacted_facts_on_a_later_run(spec_file, store,
                                                                               memory_collection) -> None:
    from keel.context.memory import MEMORY_NOTICE, Memory

    path = spec_file(FLOW.replace("MORE", ""))
    with scripted("pal") as pal:
        pal.reply("Noted, Porto is lovely.")
        first = await arun(path, {"text": "I live in Porto and my dog is called Rex.", "user": "ana"}, store=store)
    assert first.status == "succeeded", first.error
    assert pal.calls[0].messages[0].role == "user"  # nothing remembered yet: no memory block
    ana = Memory("pal-memory", "user:ana", store)
    assert ana.pending() == 2 and ana.facts() == []  # the write path made no facts, called no model

    with scripted("extractor") as ex:  # compaction, off the request path, with a strict schema
        ex.reply(parsed={"facts": [{"message": 1, "subject": "I", "attribute": "city", "value": "Porto"},
                                   {"message": 1, "subject": "my dog", "attribute": "name", "value": "Rex"}]})
        assert ana.compact("scripted:extractor") == 2
    assert ex.calls[0].output_schema is not None and "[1] user" in ex.calls[0].messages[-1].content
    assert "Noted, Porto" not in ex.calls[0].messages[-1].content  # only the user's turns by default
    assert ana.pending() == 0

    with scripted("pal") as pal:
        pal.reply("Rex, in Porto.")
        second = await arun(path, {"text": "What is my dog called?", "user": "ana"}, store=store)
        pal.reply("I don't know yet.")
        other = await arun(path, {"text": "What is my dog called?", "user": "bob"}, store=store)
    assert second.status == other.status == "succeeded"
    block = pal.calls[0].messages[0]
    assert block.role == "system" and block.content.startswith(MEMORY_NOTICE)
    assert "dog name: Rex (since " in block.content and "user city: Porto" in block.content
    assert pal.calls[0].messages[-1].content == "What is my dog called?"
    assert all(m.role != "system" for m in pal.calls[1].messages)  # bob's scope is empty: nothing of ana's
    ana.close()


async def test_background_compaction_after_n_turns(spec_file, store, memory_collection) -> None:
    import time

    from keel.context.memory import Memory

    path = spec_file(FLOW.replace("MORE", ", compact_after: 2, max_facts: 0"))
    with scripted("pal") as pal:
        pal.reply("Congratulations!")
        pal.reply(parsed={"facts": [{"message": 1, "subject": "user", "attribute": "employer", "value": "Acme"}]})
        result = await arun(path, {"text": "I just joined Acme.", "user": "cy"}, store=store)
        assert result.status == "succeeded"
        mem = Memory("pal-memory", "user:cy", store)
        for _ in range(200):  # the compaction runs in a thread of its own; wait for its fact
            if mem.pending() == 0:  # set once the facts are stored
                break
            time.sleep(0.05)
    [fact] = mem.facts()
    assert (fact.subject, fact.attribute, fact.value) == ("user", "employer", "Acme")
    assert fact.sources[0]["source"] == f"run:{result.run_id}" and mem.pending() == 0
    mem.close()


def test_memory_spec_problems_point_at_the_field(spec_file) -> None:
    from keel.workflows import SpecError, validate

    bad = FLOW.replace("MORE", "").replace("user:{{ workflow.input.user }}", "{{ nodes.nope.x }}")
    with pytest.raises(SpecError) as e:
        validate(spec_file(bad))
    [p] = e.value.problems
    assert "memory.scope" in p.message and "nope" in p.message and p.node_id == "chat" and p.line == 8
    with pytest.raises(SpecError) as e:
        validate(spec_file(FLOW.replace("MORE", ", max_facts: -1")))
    assert any("max_facts" in p.message for p in e.value.problems)


async def test_a_scope_that_renders_invalid_fails_the_node_saying_why(spec_file, store, memory_collection) -> None:
    path = spec_file(FLOW.replace("MORE", ", max_facts: 0"))
    with scripted("pal") as pal:  # the node fails before it calls the model
        result = await arun(path, {"text": "Hi", "user": "two words"}, store=store)
    assert pal.calls == [] and result.status == "failed" and "memory scope 'user:two words' is not valid" in result.error, result.error
    assert "letters, digits" in result.error
