"""The deployment examples (deploy/, docs/deploy.md) name commands and options that exist.

Every `keel ...` command line in the compose file, the systemd units and the page's code
blocks is checked against the real CLI: the command resolves, and each `--option` it uses is
one that command accepts. A renamed option fails here instead of in a user's deployment.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main
import yaml

from keel.cli import app

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _command_lines() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, str) and command.startswith("keel "):
            found.append((f"compose.yaml:{name}", command))
    for unit in sorted(DEPLOY.glob("*.service")):
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                found.append((unit.name, re.sub(r"^\S*/keel\b", "keel", line.removeprefix("ExecStart="))))
    page = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for block in re.findall(r"```bash\n(.*?)```", page, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            for part in re.split(r"&&|;", line):
                part = part.strip()
                part = re.sub(r"^(docker compose exec \w+ )", "", part)
                if part.startswith("keel "):
                    found.append(("docs/deploy.md", part))
    return found


LINES = _command_lines()


def test_the_examples_have_command_lines_to_check() -> None:
    where = {w.split(":")[0] for w, _ in LINES}
    assert {"compose.yaml", "keel-serve.service", "keel-worker@.service", "docs/deploy.md"} <= where
    assert any("keel worker" in c for _, c in LINES) and any("--no-execute" in c for _, c in LINES)


@pytest.mark.parametrize(("where", "line"), LINES, ids=[f"{w}: {c}" for w, c in LINES])
def test_each_command_line_names_a_real_command_and_real_options(where: str, line: str) -> None:
    words = shlex.split(line)[1:]
    command = typer.main.get_command(app)
    while hasattr(command, "list_commands") and words and not words[0].startswith("-"):
        sub = command.get_command(command.context_class(command), words[0])
        assert sub is not None, f"{where}: `{line}`: no command {words[0]!r}"
        command, words = sub, words[1:]
    accepted = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    used = {w.split("=", 1)[0] for w in words if w.startswith("--")}
    assert used <= accepted, f"{where}: `{line}`: unknown options {sorted(used - accepted)}"
