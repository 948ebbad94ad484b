"""A graded task for the distillation and router tests, with deterministic scripted models.

Items ask for a sum (``easy``: one digit, ``hard``: three digits) or carry personal data.
``scripted:g-strong`` always answers right; ``scripted:g-weak`` answers easy items right and hard
ones wrong. An eval run of both (a matrix) gives, per item, the two outcomes a router learns from
and pairs of graded answers for a preference set.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from keel.models.base import ModelRequest
from keel.models.scripted import get_script

EASY = [(a, b) for a, b in [(1, 2), (3, 4), (2, 2), (5, 1), (4, 4), (3, 3), (1, 1), (2, 5)]]
HARD = [(a, b) for a, b in [(123, 456), (512, 389), (777, 111), (250, 625), (901, 43), (333, 667), (808, 92),
                            (415, 415)]]


def _sum(request: ModelRequest) -> tuple[int, int]:
    m = re.search(r"(\d+) \+ (\d+)", request.messages[-1].content)
    assert m, request.messages[-1].content
    return int(m.group(1)), int(m.group(2))


def strong(request: ModelRequest) -> str:
    a, b = _sum(request)
    return str(a + b)


def weak(request: ModelRequest) -> str:
    a, b = _sum(request)
    return str(a + b) if a < 10 else str(a + b + 1)


def install() -> None:
    get_script("g-strong").default = strong
    get_script("g-weak").default = weak


def write_eval(folder: Path, *, models: tuple[str, ...] = ("scripted:g-strong", "scripted:g-weak"),
               pii: bool = False, name: str = "sums") -> Path:
    rows = [{"q": f"What is {a} + {b}?", "answer": str(a + b), "kind": "easy" if a < 10 else "hard"}
            for (a, b) in EASY + HARD]
    if pii:
        rows = [{**r, "q": f"Mail jane.doe@example.com the result. What is {r['q'][8:]}"} for r in rows]
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model_list = ", ".join(f"'{m}'" for m in models)
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\ndataset: {name}.jsonl\ngraders:\n"
        "  - {type: string_check, name: exact, operation: eq, input: '{{sample.output_text}}', "
        "reference: '{{item.answer}}'}\n"
        f"matrix:\n  models: [{model_list}]\n  prompts:\n"
        "    calc: [{role: system, content: 'Answer with the number only.'}, {role: user, content: '{{item.q}}'}]\n",
        encoding="utf-8")
    return folder / f"{name}.yaml"


def run_eval_file(path: Path) -> str:
    """Run the eval in this process (the scripted models live here); returns the run id."""
    from keel.evals import load_eval
    from keel.evals.runner import run_eval
    from keel.store import open_store

    install()
    summary = asyncio.run(run_eval(open_store(), load_eval(path)))
    return summary.run_id
