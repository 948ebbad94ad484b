"""A scripted classifier that learns from demonstrations, for the few-shot tests.

- ``scripted:opt-kind`` labels ``Item: NAME`` as ``a`` or ``b``. It knows the label of the names in
  ``KNOWN`` and says ``a`` for every other name, unless its system message shows a demonstration
  answered ``b``: then it labels every item right (it "learned" that ``b`` exists).
- ``scripted:opt-shrug`` is a reflection model that always proposes new, useless instructions (a
  fresh text each time, inside fences), so every child is rejected on its minibatch and costs its
  rollouts: the budget goes on proposals unless the search holds some back.
"""

from __future__ import annotations

import json
import re

from keel.models.base import ModelRequest
from keel.models.scripted import get_script

SEED = "Classify the item."
LABELS = {f"n{i}": ("b" if i in (2, 4, 6, 9) else "a") for i in range(12)}
KNOWN = {"n6"}


def kind(request: ModelRequest) -> str:
    system = " ".join(m.content for m in request.messages if m.role == "system")
    name = re.search(r"Item: (\w+)", request.messages[-1].content).group(1)  # type: ignore[union-attr]
    if "Output:\nb" in system or name in KNOWN:
        return LABELS[name]
    return "a"


def shrug(request: ModelRequest) -> str:
    n = len(get_script("opt-shrug").calls)
    return f"Here you go:\n```\nClassify the item carefully (take {n}).\n```"


def install() -> None:
    get_script("opt-kind").default = kind
    get_script("opt-shrug").default = shrug


def write_eval(folder) -> str:
    (folder / "kinds.jsonl").write_text("".join(json.dumps({"name": n, "label": lab}) + "\n"
                                                for n, lab in LABELS.items()), encoding="utf-8")
    (folder / "kinds.yaml").write_text(
        "name: kinds\ndataset: kinds.jsonl\ngraders:\n"
        "  - {type: string_check, name: label, operation: eq, input: '{{sample.output_text}}', "
        "reference: '{{item.label}}'}\n"
        "targets:\n  - type: model\n    name: kinds\n    model: scripted:opt-kind\n    prompt:\n"
        f"      - {{role: system, content: '{SEED}'}}\n"
        "      - {role: user, content: 'Item: {{item.name}}'}\n", encoding="utf-8")
    return str(folder / "kinds.yaml")
