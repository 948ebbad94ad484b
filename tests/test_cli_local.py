"""`keel chat local:<tiny.gguf> ... --schema`: stdout is schema-valid JSON every time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp", reason="the `local` extra is not installed")
pytest.importorskip("llguidance", reason="the `local` extra is not installed")

from typer.testing import CliRunner

from keel.cli import app
from keel.models.structured import validate_instance
from keel.testing import write_tiny_gguf

SCHEMA = {
    "type": "object",
    "properties": {
        "mood": {"enum": ["happy", "sad", "neutral"]},
        "reason": {"type": "string", "maxLength": 24},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
    },
    "required": ["mood", "reason", "score", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_200_runs_at_temperature_1_all_print_valid_json(tiny: Path, tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(SCHEMA))
    runner = CliRunner()
    outputs = set()
    for i in range(200):
        result = runner.invoke(app, ["chat", f"local:{tiny}", "hi", "--schema", str(schema),
                                     "--temperature", "1", "--seed", str(i)])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert len(lines) == 1, result.stdout
        value = json.loads(lines[0])
        assert validate_instance(value, SCHEMA) is None, lines[0]
        outputs.add(lines[0])
    assert len(outputs) > 100, "temperature 1 should give varied outputs"


def test_real_subprocess(tiny: Path, tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(SCHEMA))
    r = subprocess.run([sys.executable, "-m", "keel", "chat", f"local:{tiny}", "hi", "--schema", str(schema),
                        "--temperature", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert validate_instance(json.loads(r.stdout), SCHEMA) is None


def test_schema_the_engine_cannot_express_is_one_clear_line(tiny: Path, tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}))
    r = subprocess.run([sys.executable, "-m", "keel", "chat", f"local:{tiny}", "hi", "--schema", str(schema)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    assert r.stdout == ""


def test_missing_model_file_is_one_clear_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "keel", "chat", f"local:{tmp_path}/nope.gguf", "hi"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "nope.gguf" in r.stderr
