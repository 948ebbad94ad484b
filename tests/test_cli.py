"""The ``keel`` command as a user runs it: a real subprocess, real exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel._version import __version__
from tests.openai_stub import OpenAIStub


def keel(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})}, input=input,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str], *, code: int, says: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert says in result.stderr
    assert result.stderr.startswith("error: ")
    assert "fix: " in result.stderr


def test_version() -> None:
    r = keel("version")
    assert r.returncode == 0 and r.stdout.strip() == f"keel {__version__}"


def test_help_teaches() -> None:
    r = keel("--help")
    assert r.returncode == 0
    for word in ("KEEL_HOME", "doctor", "chat", "version"):
        assert word in r.stdout
    chat_help = keel("chat", "--help").stdout
    assert "--schema" in chat_help and "Examples" in chat_help


def test_doctor_on_a_fresh_machine_explains_how_to_configure_a_model(keel_home: Path) -> None:
    r = keel("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no model configured" in r.stdout
    for example in ("OPENAI_API_KEY", "ollama:", "local:", ".gguf"):
        assert example in r.stdout
    assert (keel_home / "keel.db").is_file()


def test_doctor_fails_with_the_fix_for_a_broken_model(openai_stub: OpenAIStub) -> None:
    r = keel("doctor", env={"KEEL_MODEL": "gpt-4"})
    assert r.returncode == 1
    assert "has no provider prefix" in r.stdout and "PROVIDER:MODEL" in r.stdout
    r = keel("doctor", env={"KEEL_MODEL": "openrouter:meta/llama"})
    assert r.returncode == 1 and "OPENROUTER_API_KEY" in r.stdout
    r = keel("doctor", env={"KEEL_MODEL": f"openai-compatible:{openai_stub.base_url}#stub-model"})
    assert r.returncode == 0, r.stdout
    assert "reachable" in r.stdout


def test_doctor_never_prints_secrets(openai_stub: OpenAIStub) -> None:
    secret = "sk-this-must-never-be-printed"
    r = keel("doctor", env={"OPENAI_API_KEY": secret, "OPENAI_BASE_URL": openai_stub.base_url,
                            "KEEL_MODEL": "openai:stub-model"})
    assert secret not in r.stdout + r.stderr
    assert r.returncode == 0, r.stdout


def test_unknown_model_string() -> None:
    r = keel("chat", "opneai:gpt-4.1-mini", "hi")
    assert_clean_failure(r, code=2, says="unknown provider 'opneai'")
    assert "did you mean openai:gpt-4.1-mini" in r.stderr


def test_an_undefined_alias_says_how_to_define_it() -> None:
    """Issue 14: an alias missing from [models] said only "no provider prefix"."""
    r = keel("chat", "kb-answer", "hi")
    assert_clean_failure(r, code=2, says="no alias 'kb-answer' is defined under [models]")
    assert '[models] kb-answer = "openai:gpt-4.1-mini"' in r.stderr.split("fix: ", 1)[1]


def test_missing_key() -> None:
    assert_clean_failure(keel("chat", "openai:gpt-4.1-mini", "hi"), code=2, says="no API key for openai")


def test_unreachable_endpoint() -> None:
    r = keel("chat", "openai-compatible:http://127.0.0.1:9/v1#m", "hi", env={"KEEL_MAX_RETRIES": "0"})
    assert_clean_failure(r, code=3, says="cannot reach")


def test_malformed_schema_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "object",\n "properties": }')
    assert_clean_failure(keel("chat", "scripted:echo", "hi", "--schema", str(bad)), code=2, says="bad.json:2")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"type": "objekt"}')
    assert_clean_failure(keel("chat", "scripted:echo", "hi", "--schema", str(wrong)), code=2,
                         says="not a valid JSON Schema")
    assert_clean_failure(keel("chat", "scripted:echo", "hi", "--schema", str(tmp_path / "none.json")), code=2,
                         says="does not exist")


def test_malformed_keel_toml() -> None:
    Path("keel.toml").write_text("default_model = \n")
    assert_clean_failure(keel("chat", "scripted:echo", "hi"), code=2, says="keel.toml")


def test_chat_prints_the_reply(openai_stub: OpenAIStub) -> None:
    openai_stub.answer("Bonjour!")
    r = keel("chat", f"openai-compatible:{openai_stub.base_url}#stub-model", "hi", "--system", "Be French")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Bonjour!\n"
    assert openai_stub.requests[0].body["messages"][0] == {"role": "system", "content": "Be French"}


def test_chat_streams(openai_stub: OpenAIStub) -> None:
    openai_stub.answer("one two three four five six")
    r = keel("chat", f"openai-compatible:{openai_stub.base_url}#stub-model", "hi", "--stream")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "one two three four five six\n"
    assert openai_stub.requests[0].body["stream"] is True


def test_chat_with_schema_prints_exactly_one_json_document(openai_stub: OpenAIStub, tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integer", "maximum": 9}},
                                  "required": ["n"], "additionalProperties": False}))
    openai_stub.answer('{"n": 99}').answer('{"n": 7}')  # the first breaks the schema; Keel retries
    r = keel("chat", f"openai-compatible:{openai_stub.base_url}#stub-model", "pick", "--schema", str(schema))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"n": 7}
    assert r.stdout.count("\n") == 1


def test_chat_reads_the_message_from_stdin() -> None:
    r = keel("chat", "scripted:echo", "-", input="from stdin")
    assert r.stdout.strip() == "from stdin"


def test_chat_reads_piped_stdin_when_no_message_is_given() -> None:
    """Issue 14: `keel chat --help` showed `... < notes.txt` but stdin was silently ignored."""
    r = keel("chat", "scripted:echo", "--system", "Summarise", input="notes from a file")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "notes from a file"
    assert_clean_failure(keel("chat", "scripted:echo", input="  \n"), code=2,
                         says="no message: standard input was empty")


@pytest.mark.parametrize("args", [["chat"], ["chat", "scripted:echo"], ["nope"]])
def test_usage_errors_exit_2_without_traceback(args: list[str]) -> None:
    r = keel(*args, input="")  # stdin closed and empty: nothing to read, never a hang
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_cli_reference_is_up_to_date() -> None:
    """docs/cli.md is generated from --help; regenerate with `python scripts/gen_cli_docs.py`."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("gen_cli_docs", root / "scripts" / "gen_cli_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (root / "docs" / "cli.md").read_text() == module.render(), "run python scripts/gen_cli_docs.py"


def test_commands_named_in_the_docs_and_the_ui_exist() -> None:
    """Issue 14: the UI and docs/ui.md said `keel evals run`; the command is `keel eval run`."""
    import re

    import typer

    from keel.cli import app

    commands = set(typer.main.get_command(app).commands)
    root = Path(__file__).resolve().parents[1]
    files = [root / "README.md", *(root / "docs").glob("*.md"), *(root / "src/keel/operate/ui/static").rglob("*.js"),
             *(root / "src/keel/operate/ui/static").rglob("*.html"), *(root / "src/keel/cli").glob("*.py")]
    wrong = set()
    for f in files:
        for m in re.finditer(r"(?<![\w.])(?<!from )keel ([a-z][a-z-]+)", f.read_text(encoding="utf-8")):
            if m.group(1) not in commands and m.group(1) not in ("in", "from"):  # prose: "run keel from ..."
                wrong.add(f"{f.relative_to(root)}: keel {m.group(1)}")
    assert not wrong, sorted(wrong)
