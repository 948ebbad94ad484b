"""What the scripted model answers when a template's eval runs on it (tests/workflows/test_template_evals.py).

One responder per template: it reads the request as the template's Agent nodes build it (the
node is told apart by its instructions) and answers as a careful model would, from what the
request holds — the SQL result the tool sent back, the two documents, the numbered sources, the
record — or, where judging is the model's whole job (a review's verdict, a triage), from the
eval's own answer key. So the eval exercises the template's whole path (tools on the sample
data, File search over the ingested sample docs, If/else routes, end outputs) and its graders.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keel.models.base import ModelRequest
from keel.models.scripted import Reply

Responder = Callable[[ModelRequest], "str | Reply"]


def _system(request: ModelRequest) -> str:
    return next((m.content for m in request.messages if m.role == "system"), "")


def _user(request: ModelRequest) -> str:
    return next(m.content for m in request.messages if m.role == "user")


def _tool_results(request: ModelRequest) -> list[str]:
    return [m.content for m in request.messages if m.role == "tool"]


def _item(items: list[dict], key: str, text: str) -> dict:
    found = [it for it in items if it[key] in text]
    assert found, f"no eval item's {key} is in the request: {text[:200]!r}"
    return max(found, key=lambda it: len(it[key]))


def customer_service(items: list[dict]) -> Responder:
    def respond(request: ModelRequest) -> str | Reply:
        system, user = _system(request), _user(request)
        if system.startswith("You triage"):
            item = _item(items, "message", user)
            order = re.search(r"\b(\d+)\b", user)
            return Reply(parsed={"intent": item["expect_intent"], "order_id": int(order.group(1)) if order else 0,
                                 "reason": "the customer's message, in short"})
        if "Look it up with lookup_order" in system:
            results = _tool_results(request)
            if not results:
                return Reply(tool_calls=[("lookup_order", {"order_id": int(re.search(r"\d+", user).group())})])
            order = json.loads(results[-1])
            return f"Order {order['order_id']} is {order['status']}."
        return "Thank you for your message; a colleague will follow up by email."

    return respond


def data_enrichment(items: list[dict]) -> Responder:
    def respond(request: ModelRequest) -> str | Reply:
        user = _user(request)
        if user.startswith("Company: "):
            want = _item(items, "description", user)["expect"]
            return Reply(parsed={"industry": want["industry"], "country": want["country"],
                                 "employees": want["employees"], "sells_to_businesses": want["b2b"],
                                 "summary": "What the record says, in short."})
        record = json.loads(user.split("Record: ", 1)[1].split("\nQuestion: ", 1)[0])
        return Reply(parsed={"answer": f"{record['name']}: {record['summary']}", "fields_used": ["name", "summary"]})

    return respond


def knowledge_assistant(items: list[dict]) -> Responder:
    def respond(request: ModelRequest) -> str:
        user = _user(request)
        item = _item(items, "question", user)
        # the numbered sources File search sent: quote the passage holding the answer, cite its number
        for number, source, passage in re.findall(r"^\[(\d+)\] (\S+)\n(.*?)(?=^\[\d+\] |\Z)",
                                                  user.split("Sources:\n", 1)[1], re.M | re.S):
            passage = " ".join(passage.split())
            if item["expect"].lower() in passage.lower() and source.split("#")[0].endswith(item["source"]):
                sentence = next(s for s in re.split(r"(?<=[.!?])\s+", passage) if item["expect"].lower() in s.lower())
                return f"{sentence.strip()} [{number}]"
        return "I don't know."

    return respond


def structured_data_qa(items: list[dict]) -> Responder:
    def respond(request: ModelRequest) -> str | Reply:
        results = _tool_results(request)
        if not results:
            return Reply(tool_calls=[("run_sql", {"query": _item(items, "question", _user(request))["sql"]})])
        rows = json.loads(results[-1])["rows"]  # the answer is read from the tool's result, not the key
        value = rows[0][0]
        return f"The answer is {value:g}." if isinstance(value, float) else f"The answer is {value}."

    return respond


def document_comparison(items: list[dict]) -> Responder:
    """A line-level diff of the two documents in the request: every replaced or added sentence."""

    def respond(request: ModelRequest) -> Reply:
        user = _user(request)
        before, after = user.split("Document A (before):\n", 1)[1].split("\n\nDocument B (after):\n", 1)
        a, b = before.splitlines(), after.splitlines()
        changes = []
        section = ""
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b).get_opcodes():
            for line in b[:j2]:
                if line.startswith("#"):
                    section = line.lstrip("# ")
            if tag != "equal":
                changes.append({"section": section[:60], "before": " ".join(a[i1:i2])[:200],
                                "after": " ".join(b[j1:j2]).lstrip("# ")[:200], "impact": "material"})
        return Reply(parsed={"changes": changes[:8], "summary": f"{len(changes)} changes."})

    return respond


def planning_helper(items: list[dict]) -> Responder:
    def respond(request: ModelRequest) -> Reply:
        system, goal = _system(request), _user(request)
        item = _item(items, "goal", goal)
        if system.startswith("Decide whether"):
            can = item["expect"] == "plan"
            return Reply(parsed={"can_plan": can, "question": "" if can else "What should be done, and by when?"})
        days = item["deadline_days"] // 4
        return Reply(parsed={"goal": goal[:160], "risks": ["people are away"], "steps": [
            {"title": t, "detail": f"{t} for: {goal}"[:200], "days": days} for t in ("Scope", "Do", "Check")]})

    return respond


def code_review(items: list[dict]) -> Responder:
    def respond(request: ModelRequest) -> Reply:
        user = _user(request)
        item = _item(items, "diff", user)  # two items state one intent with different diffs
        assert "Sources:\n[1] " in user, "File search sent no sources from the repo collection"
        touched = re.findall(r"^\+\+\+ b/(\S+)", user, re.M)
        if item["expect"] == "approve":
            return Reply(parsed={"matches_intent": True, "verdict": "approve", "findings": [],
                                 "summary": "Does what the description says."})
        return Reply(parsed={"matches_intent": False, "verdict": "request_changes", "summary": "Not as described.",
                             "findings": [{"file": item["file"] if item["file"] in touched else touched[0],
                                           "severity": "major", "comment": "This is not what the description says."}]})

    return respond


RESPONDERS: dict[str, Callable[[list[dict]], Responder]] = {
    "customer-service": customer_service,
    "data-enrichment": data_enrichment,
    "knowledge-assistant": knowledge_assistant,
    "structured-data-qa": structured_data_qa,
    "document-comparison": document_comparison,
    "planning-helper": planning_helper,
    "code-review": code_review,
}


def dataset(eval_file: Path) -> list[dict[str, Any]]:
    import yaml

    spec = yaml.safe_load(eval_file.read_text())
    path = eval_file.parent / Path(spec["dataset"]).name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
