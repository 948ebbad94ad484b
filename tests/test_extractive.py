"""The extractive answerer (issue 19): quotes the sentences of the request's sources that
answer, with citations, through the ordinary model seam (``get_model("extractive")``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from keel.models import Message, ResponseDone, TextDelta, get_model, parse_model_string
from keel.models.extractive import DONT_KNOW, ExtractiveError, Passage, answer, parse_request
from keel.workflows.guardrails.hallucination import check_support

HOLIDAYS = ("Full-time employees have 27 days of paid holiday a year, plus public holidays. Up to 5 unused\n"
            "days carry over to the next year and expire on 31 March.")
SICK = "Tell your manager before 10:00 on the first day. From the fourth day of sickness, send a doctor's note to HR."
TRAVEL = ("Book travel through the travel portal. Economy class for flights under six hours; business\n"
          "class is allowed for longer flights. Hotels up to 180 euros a night in capital cities and 130\n"
          "euros elsewhere.")
# As the knowledge-assistant template builds the Agent node's input from File search's output_text
REQUEST = ("Question: {q}\n\nSources:\n[1] docs/expenses.md#travel\n## Travel\n" + TRAVEL
           + "\n\n[2] docs/time-off.md#holidays\n## Holidays\n" + HOLIDAYS
           + "\n\n[3] docs/time-off.md#sick-leave\n## Sick leave\n" + SICK)


def test_the_request_is_read_as_a_question_and_numbered_passages() -> None:
    question, passages = parse_request(REQUEST.format(q="How many holiday days do I get?"))
    assert question == "How many holiday days do I get?"
    assert [(p.index, p.where) for p in passages] == [(1, "docs/expenses.md#travel"), (2, "docs/time-off.md#holidays"),
                                                      (3, "docs/time-off.md#sick-leave")]
    assert passages[1].text.startswith("## Holidays\nFull-time employees have 27 days")


@pytest.mark.parametrize(("question", "quoted", "cited"), [
    ("How many holiday days do I get?", "Full-time employees have 27 days of paid holiday a year, plus public holidays.", 2),
    ("When do carried-over days expire?", "expire on 31 March.", 2),
    ("What is the hotel limit in capital cities?", "Hotels up to 180 euros a night in capital cities", 1),
    ("When do I need a doctor's note?", "From the fourth day of sickness, send a doctor's note to HR.", 3),
])
def test_it_quotes_the_sentence_that_answers_and_cites_its_passage(question, quoted, cited) -> None:
    _, passages = parse_request(REQUEST.format(q=question))
    for embedder in (None, "minilm"):  # words alone answer these; the embedder keeps them right
        emb = None
        if embedder:
            from keel.models.extractive import _embedder

            emb = _embedder()
            if emb is None:
                continue
        said = answer(question, passages, embedder=emb)
        assert quoted in said and f"[{cited}]" in said, said
        # quoted verbatim, so the template's grounding check passes it
        passed, reason, _ = check_support(said, [p.text for p in passages], 0.5)
        assert passed, reason


def test_a_question_the_sources_do_not_touch_is_i_dont_know() -> None:
    _, passages = parse_request(REQUEST.format(q="x"))
    assert answer("What is the wifi password?", passages) == DONT_KNOW
    assert answer("Who is the chief executive?", [Passage(1, "a.md", "## A\nThe sky is blue today. Grass is green.")]) \
        == DONT_KNOW


def test_extractive_is_a_model_string_and_streams_like_a_model() -> None:
    assert parse_model_string("extractive").prefix == "extractive"
    assert parse_model_string("extractive:default").name == "default"
    model = get_model("extractive")
    assert model.model_string == "extractive:default"
    prompt = REQUEST.format(q="Where do I book travel?")

    async def run():
        events = [e async for e in model.generate([Message.system("Cite like [1]."), Message.user(prompt)],
                                                  stream=True)]
        return events, await model.generate(prompt)

    events, response = asyncio.run(run())
    deltas = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert isinstance(events[-1], ResponseDone) and events[-1].response.text == deltas
    assert response.text.startswith("Book travel through the travel portal. [1]")
    assert response.model == "extractive:default" and response.usage.output_tokens > 0


def test_what_it_cannot_do_is_a_clear_error_with_the_fix() -> None:
    model = get_model("extractive")
    with pytest.raises(ExtractiveError) as no_sources:
        asyncio.run(model.generate("Hello, how are you?").response())
    assert "found no numbered sources" in no_sources.value.message
    assert "File search" in no_sources.value.hint and "--model" in no_sources.value.hint
    with pytest.raises(ExtractiveError) as structured:
        asyncio.run(model.generate(REQUEST.format(q="holiday?"), output_schema={
            "type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
            "additionalProperties": False}).response())
    assert "cannot write structured output" in structured.value.message
    # and on the CLI: error / fix lines, no traceback
    r = subprocess.run([sys.executable, "-m", "keel", "chat", "extractive", "hello"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stdout + r.stderr, r.stderr
    assert "found no numbered sources" in r.stderr and "fix: " in r.stderr


def test_a_node_that_needs_more_than_quotes_is_refused_at_validate_time(tmp_path) -> None:
    spec = tmp_path / "x.yaml"
    spec.write_text("""name: x
nodes:
  - {id: start, type: start}
  - id: answer
    type: agent
    model: extractive
    output_schema: {type: object, properties: {a: {type: string}}, required: [a], additionalProperties: false}
  - {id: done, type: end}
edges:
  - {from: start, to: answer}
  - {from: answer, to: done}
""", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "keel", "workflows", "validate", str(spec)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"{spec}:6 (node answer): model 'extractive' is the extractive answerer" in r.stderr
    assert "fix: give this node a model" in r.stderr
    # the same node without the schema (the knowledge-assistant's answer node) is valid
    spec.write_text(spec.read_text().replace(
        "    output_schema: {type: object, properties: {a: {type: string}}, required: [a], additionalProperties: false}\n",
        ""), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "keel", "workflows", "validate", str(spec)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
