"""Fixtures for workflow tests: a real SQLite store under the test's KEEL_HOME, and specs on disk."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from keel.store import SQLiteStore, open_store


@pytest.fixture
def store(keel_home: Path) -> SQLiteStore:
    s = open_store(keel_home)
    yield s
    s.close()


@pytest.fixture
def spec_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write YAML (dedented) to a file and return its path."""

    def write(text: str, name: str = "wf.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).lstrip())
        return p

    return write
