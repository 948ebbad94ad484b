"""The File search node over a real context-engine collection built from a temp folder of markdown."""

from __future__ import annotations

import pytest

from keel.testing import scripted
from keel.workflows import Runs, Spans, arun

pytest.importorskip("keel.context")

DOCS = {
    "time-off.md": "# Time off\n\n## Holidays\n\nFull-time employees get 27 days of paid holiday a year.\n\n"
                   "## Sick leave\n\nTell your manager before 10:00 on the first day you are ill.\n",
    "expenses.md": "# Expenses\n\n## Travel\n\nTrain tickets are reimbursed in second class; flights need "
                   "approval from your manager.\n",
    "security.md": "# Security\n\n## Laptops\n\nLock your laptop screen whenever you leave your desk.\n",
}

FLOW = """
name: ask-docs
nodes:
  - {id: start, type: start}
  - id: search
    type: file_search
    collection: COLLECTION
    query: "workflow.input.topic + ' ' + workflow.input.question"
    max_results: 2
    WHERE
  - id: answer
    type: agent
    model: scripted:kb
    input: "'Q: ' + workflow.input.question + '\\\\nSources:\\\\n' + input.output_text"
  - {id: done, type: end, output: "{'answer': input.output_text, 'cited': nodes.search.output_parsed.results}"}
  - {id: oops, type: end, output: "input.output_text"}
edges:
  - {from: start, to: search}
  - {from: search, to: answer}
  - {from: search, port: error, to: oops}
  - {from: answer, to: done}
"""


@pytest.fixture
def handbook(tmp_path, keel_home, monkeypatch):
    from keel.context import Collection

    monkeypatch.chdir(tmp_path)

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    with Collection.open("handbook", embedder="test-hashing") as col:
        col.add(["docs"])
    return folder


async def test_file_search_results_carry_citations(spec_file, store, handbook) -> None:
    path = spec_file(FLOW.replace("COLLECTION", "handbook").replace("    WHERE\n", ""))
    with scripted("kb") as kb:
        kb.reply("27 days [1].")
        result = await arun(path, {"topic": "holiday", "question": "How many paid holiday days a year?"},
                            store=store)
    assert result.status == "succeeded", result.error
    cited = result.output["cited"]
    assert 1 <= len(cited) <= 2 and [c["index"] for c in cited] == list(range(1, len(cited) + 1))
    top = cited[0]
    assert top["source"] == "docs/time-off.md" and "27 days" in top["text"] and top["anchor"]
    assert top["start_line"] >= 1 and top["score"] > 0
    # the agent got the passages numbered, each with where it came from
    sent = kb.calls[0].messages[-1].content
    assert f"[1] docs/time-off.md#{top['anchor']}" in sent and "27 days" in sent
    spans = Spans(store).for_trace(Runs(store).get(result.run_id).trace_id)
    [node] = [s for s in spans if s.name == "node search"]
    assert node.attributes["keel.file_search.collection"] == "handbook"
    assert node.attributes["keel.file_search.results"] == len(cited)
    steps = Runs(store).steps(result.run_id)
    [step] = [s for s in steps if s.node_id == "search"]
    assert step.output["output_parsed"]["query"] == "holiday How many paid holiday days a year?"


async def test_file_search_filters_and_a_missing_collection(spec_file, store, handbook) -> None:
    path = spec_file(FLOW.replace("COLLECTION", "handbook").replace("WHERE", "where: {source: docs/security.md}"))
    with scripted("kb") as kb:
        kb.reply("Lock it.")
        result = await arun(path, {"topic": "holiday", "question": "days?"}, store=store)
    assert {c["source"] for c in result.output["cited"]} == {"docs/security.md"}

    path = spec_file(FLOW.replace("COLLECTION", "nope").replace("    WHERE\n", ""), "missing.yaml")
    result = await arun(path, {"topic": "x", "question": "y"}, store=store)
    assert result.status == "succeeded"  # through the error edge, with a message that says what to do
    assert "file search in 'nope' failed" in result.output and "keel context add" in result.output, result.output
