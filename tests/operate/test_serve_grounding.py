"""A grounded workflow through the OpenAI-compatible API (issue 14, item 3): an answer the
grounding check refuses reaches the caller as the workflow's refusal line, never as the
unsupported sentence or the check's diagnostics; a supported answer is its words, not the
End node's JSON. A real `keel serve` subprocess; the model is `scripted:echo` (it answers
with the user's message, so the test picks the answer)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.operate.conftest import Server, publish, start_server

pytest.importorskip("openai")
from openai import OpenAI

SOURCE = "Hotels are paid up to 180 euros a night in capital cities."
SUPPORTED = "Hotels are paid up to 180 euros a night in capital cities [1]."
UNSUPPORTED = "Hotels are paid up to 150 euros a night in capital cities [1]."  # the source says 180
REFUSAL = "I could not find an answer the handbook supports."

GROUNDED = f"""
name: grounded
description: answers, then checks the answer against its source (agent -> guardrails -> end)
nodes:
  - {{id: start, type: start}}
  - {{id: answer, type: agent, model: "scripted:echo", instructions: "Answer from the source."}}
  - id: check
    type: guardrails
    text: input.output_text
    checks:
      - {{type: hallucination, sources: "['{SOURCE}']", min_overlap: 0.5}}
  - id: done
    type: end
    output: "{{'answer': nodes.answer.output_text, 'sources': ['travel.md']}}"
  - id: unsure
    type: end
    output: "{{'answer': '{REFUSAL}'}}"
edges:
  - {{from: start, to: answer}}
  - {{from: answer, to: check}}
  - {{from: check, port: pass, to: done}}
  - {{from: check, port: fail, to: unsure}}
"""


@pytest.fixture(scope="module")
def grounded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home: Path = tmp_path_factory.mktemp("grounded-home")
    publish(home, GROUNDED, "grounded")
    server = start_server(home)  # no keys: open mode, the SDK's placeholder key is fine
    try:
        yield server
    finally:
        server.stop()


def _ask(client: OpenAI, said: str, *, stream: bool) -> str:
    messages = [{"role": "user", "content": said}]
    if not stream:
        return client.chat.completions.create(model="grounded", messages=messages).choices[0].message.content or ""
    return "".join(c.choices[0].delta.content or "" for c in
                   client.chat.completions.create(model="grounded", messages=messages, stream=True) if c.choices)


@pytest.mark.parametrize("stream", [False, True])
def test_a_refused_answer_is_the_refusal_line_without_diagnostics(grounded_server: Server, stream: bool) -> None:
    client = OpenAI(base_url=f"{grounded_server.url}/v1", api_key="placeholder", max_retries=0)
    content = _ask(client, UNSUPPORTED, stream=stream)
    assert content == REFUSAL
    assert "150" not in content and "hallucination" not in content and "unsupported" not in content
    # the Responses API too
    assert client.responses.create(model="grounded", input=UNSUPPORTED).output_text == REFUSAL
    assert "Traceback" not in grounded_server.log_text()


@pytest.mark.parametrize("stream", [False, True])
def test_a_supported_answer_is_its_words_not_the_end_nodes_json(grounded_server: Server, stream: bool) -> None:
    client = OpenAI(base_url=f"{grounded_server.url}/v1", api_key="placeholder", max_retries=0)
    assert _ask(client, SUPPORTED, stream=stream) == SUPPORTED


def test_the_check_and_its_reason_stay_in_the_run(grounded_server: Server) -> None:
    client = OpenAI(base_url=f"{grounded_server.url}/v1", api_key="placeholder", max_retries=0)
    r = client.chat.completions.create(model="grounded", messages=[{"role": "user", "content": UNSUPPORTED}])
    run_id = r.model_extra["keel"]["run_id"]
    with grounded_server.client() as http:
        run = http.get(f"/v1/runs/{run_id}").json()
        trace = http.get(f"/v1/runs/{run_id}/trace").json()
    assert run["output"] == {"answer": REFUSAL}
    check = [s for s in trace["spans"] if "check" in json.dumps(s) and "guardrails" in json.dumps(s)]
    assert check and "unsupported sentence" in json.dumps(check), trace
