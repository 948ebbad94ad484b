"""Hostile workflow specs (issue 13, finding 7): an alias bomb or extreme nesting is refused at
the line it starts, quickly and without a traceback; ordinary aliases and merge keys still work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.workflows import SpecError, validate

BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keel", "workflows", "validate", str(path)], capture_output=True,
                          text=True, env={**os.environ}, timeout=120)


def test_a_billion_laughs_spec_is_refused_at_its_line_without_a_traceback(spec_file) -> None:
    path = spec_file("name: bomb\n" + BOMB + "nodes: []\nedges: []\n")
    assert path.stat().st_size < 600
    with pytest.raises(SpecError) as e:
        validate(path)
    [problem] = e.value.problems
    assert "aliases expand this document by more than 10,000 values" in problem.message
    assert problem.line == 6  # the first alias level past the budget (9**4 * 2 values)
    r = _validate(path)
    assert r.returncode == 2 and "aliases expand this document" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(("name", "text", "line"), [
    ("deep.yaml", "name: deep\nnodes:\n  - " + "[" * 20_000 + "]" * 20_000 + "\nedges: []\n", 3),
    ("deep.json", '{"name": "deep",\n"nodes": ' + "[" * 20_000 + "]" * 20_000 + ', "edges": []}', 2),
])
def test_a_deeply_nested_spec_is_refused_at_its_line(spec_file, name: str, text: str, line: int) -> None:
    path = spec_file(text, name)
    with pytest.raises(SpecError) as e:
        validate(path)
    [problem] = e.value.problems
    assert problem.message == "nested deeper than 100 levels" and problem.line == line
    r = _validate(path)
    assert r.returncode == 2 and "nested deeper than 100 levels" in r.stderr and "Traceback" not in r.stderr


def test_anchors_and_merge_keys_of_ordinary_size_still_work(spec_file) -> None:
    wf = validate(spec_file("""
        name: merged
        nodes:
          - {id: start, type: start}
          - &agent {id: first, type: agent, model: "scripted:a", instructions: "be brief"}
          - {<<: *agent, id: second, instructions: "be briefer"}
          - {id: done, type: end}
        edges:
          - {from: start, to: first}
          - {from: first, to: second}
          - {from: second, to: done}
    """))
    nodes = {n.id: n for n in wf.spec.nodes}
    assert nodes["first"].instructions == "be brief" and nodes["second"].instructions == "be briefer"


def test_a_deeply_nested_input_json_is_refused_without_a_traceback(spec_file) -> None:
    path = spec_file("name: x\nnodes: []\nedges: []\n")
    r = subprocess.run([sys.executable, "-m", "keel", "run", str(path), "--input-json", "[" * 5000 + "]" * 5000],
                       capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert r.returncode == 2 and "--input-json, line 1: nested deeper than 100 levels" in r.stderr
    assert "Traceback" not in r.stderr
