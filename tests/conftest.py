"""Shared fixtures: every test gets its own KEEL_HOME and working directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openai_stub import OpenAIStub

_PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY", "OLLAMA_HOST", "KEEL_MODEL")


@pytest.fixture(autouse=True)
def keel_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty KEEL_HOME and cwd; no provider keys leak in from the machine."""
    home = tmp_path_factory.mktemp("keel-home")
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.setenv("KEEL_HOME", str(home))
    for name in _PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in [k for k in os.environ if k.startswith("KEEL_") and k != "KEEL_HOME"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(cwd)
    return home


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    """A real HTTP server on 127.0.0.1 speaking OpenAI's wire format, with scripted answers."""
    stub = OpenAIStub()
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()
