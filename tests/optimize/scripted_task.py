"""Deterministic scripted models for the optimization tests (in process and in worker processes).

- ``scripted:opt-task`` answers the item's city; in UPPERCASE when its system message says
  ``UPPERCASE``, else in lowercase. The graders want uppercase, so the seed scores 0.
- ``scripted:opt-reflect`` proposes ``Answer with the city in UPPERCASE.`` when the feedback it
  reads says what the output should have equalled; ``scripted:opt-garbage`` rambles without fences.

``KEEL_TEST_CALL_LOG`` names a file each call appends a line to (flushed), so a test can count
the calls a killed process made; ``KEEL_TEST_CALL_DELAY`` slows each call (seconds) so a kill
lands mid-run.
"""

from __future__ import annotations

import os
import re
import time

from keel.models.base import ModelRequest
from keel.models.scripted import get_script

PROPOSAL = "Answer with the city in UPPERCASE."
SEED = "Answer with the city."


def _log(kind: str) -> None:
    path = os.environ.get("KEEL_TEST_CALL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(kind + "\n")
            f.flush()
            os.fsync(f.fileno())
    delay = float(os.environ.get("KEEL_TEST_CALL_DELAY", "0") or 0)
    if delay:
        time.sleep(delay)


def task(request: ModelRequest) -> str:
    _log("task")
    system = " ".join(m.content for m in request.messages if m.role == "system")
    user = request.messages[-1].content
    m = re.search(r"City: (\w+)", user)
    city = m.group(1) if m else user
    return city.upper() if "UPPERCASE" in system else city.lower()


def reflect(request: ModelRequest) -> str:
    _log("reflect")
    text = request.messages[-1].content
    if "expected the output to equal" in text:
        return f"The answers must be capitalised.\n```\n{PROPOSAL}\n```"
    return "```\nAnswer.\n```"


def garbage(request: ModelRequest) -> str:
    _log("reflect")
    return "Honestly, the instructions look fine to me. Maybe be nicer?"


def install() -> None:
    get_script("opt-task").default = task
    get_script("opt-reflect").default = reflect
    get_script("opt-garbage").default = garbage


CITIES = ["paris", "rome", "oslo", "lima", "cairo", "tokyo", "quito", "delhi"]


def write_eval(folder, *, rows: int = 8, reflect_model: str = "opt-reflect", workflow: str | None = None) -> str:
    """An eval file and its dataset in ``folder``; returns the eval's path."""
    import json

    (folder / "cities.jsonl").write_text(
        "".join(json.dumps({"city": c, "expected": c.upper()}) + "\n" for c in (CITIES * 4)[:rows]),
        encoding="utf-8")
    if workflow:
        target = f"  - {{type: workflow, workflow: '{workflow}', input: 'City: {{{{item.city}}}}'}}\n"
    else:
        target = ("  - type: model\n    name: cities\n    model: scripted:opt-task\n    prompt:\n"
                  f"      - {{role: system, content: '{SEED}'}}\n"
                  "      - {role: user, content: 'City: {{item.city}}'}\n")
    (folder / "cities.yaml").write_text(
        "name: cities\ndataset: cities.jsonl\ngraders:\n"
        "  - {type: string_check, name: exact, operation: eq, input: '{{sample.output_text}}', "
        "reference: '{{item.expected}}'}\n"
        f"targets:\n{target}", encoding="utf-8")
    return str(folder / "cities.yaml")
