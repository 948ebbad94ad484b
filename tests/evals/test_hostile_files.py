"""Hostile eval files (issue 13, findings 7 and 8): alias bombs and deep nesting in an eval spec
are refused with a clear error; dataset lines with invalid UTF-8, a lone surrogate or extreme
nesting are skipped with their line number while the rest import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from keel.evals import Datasets
from keel.store import open_store

BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + BOMB


def _keel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keel", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ}, timeout=120)


def test_an_alias_bomb_in_an_eval_spec_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    assert len(BOMB) < 600  # a billion "lol"s once expanded
    (tmp_path / "eval.yaml").write_text("name: bomb\ndataset: d.jsonl\n" + BOMB)
    r = _keel("eval", "run", "eval.yaml", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "eval.yaml, line" in r.stderr and "aliases expand this document by more than 10,000 values" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_deeply_nested_eval_spec_is_refused_not_a_recursion_error(tmp_path: Path) -> None:
    (tmp_path / "eval.json").write_text('{"name": "deep", "dataset": "d.jsonl",\n "x": ' + "[" * 50_000
                                        + "]" * 50_000 + "}")
    (tmp_path / "eval.yaml").write_text("name: deep\ndataset: d.jsonl\nx: " + "[" * 50_000 + "]" * 50_000 + "\n")
    for name, line in (("eval.json", 2), ("eval.yaml", 3)):
        r = _keel("eval", "run", name, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert f"{name}, line {line}: nested deeper than 100 levels" in r.stderr
        assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr


def test_dataset_lines_that_are_not_text_or_too_deep_are_skipped_and_the_rest_import(keel_home: Path,
                                                                                     tmp_path: Path) -> None:
    data = tmp_path / "items.jsonl"
    data.write_bytes(b"\n".join([
        json.dumps({"q": "first"}).encode(),
        b'{"q": "caf\xe9 in latin-1"}',  # line 2: not UTF-8
        b'{"q": "half a pair \\ud800"}',  # line 3: a lone surrogate, escaped
        b'{"q": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # line 4: past the recursion limit
        b'{"q": ' + b"[" * 150 + b"]" * 150 + b"}",  # line 5: past Keel's depth bound
        json.dumps({"q": "last", "nested": {"a": [1, [2]]}}).encode(),
    ]) + b"\n")
    store = open_store(keel_home)
    report = Datasets(store).import_file(data)
    assert report.dataset.item_count == 2
    assert [str(p) for p in report.problems] == [
        "line 2: not valid UTF-8 (byte 0xe9 at column 11)",
        "line 3: line.q holds a lone surrogate (a \\ud800-\\udfff escape alone), which is not text",
        "line 4: nested deeper than 100 levels",
        "line 5: nested deeper than 100 levels",
    ]
    assert [r.item["q"] for r in Datasets(store).rows(report.dataset.id)] == ["first", "last"]
    store.close()


def test_a_csv_row_that_is_not_utf8_is_skipped_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_bytes(b"question,answer\nfirst,1\ncaf\xe9,2\nlast,3\n")
    r = _keel("datasets", "import", "items.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "items.csv:3: skipped: not valid UTF-8 (byte 0xe9 at column 4) in column 'question'" in r.stderr
    assert "Traceback" not in r.stderr
