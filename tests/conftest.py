"""Shared fixtures: every test gets its own KEEL_HOME and working directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openai_stub import OpenAIStub
from tests.pg import TEST_STORE, PostgresUnavailable, TestPostgres, session_server

_PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY", "OLLAMA_HOST", "KEEL_MODEL")


if TEST_STORE not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"KEEL_TEST_STORE={TEST_STORE!r}: use sqlite or postgresql")


@pytest.fixture(autouse=True)
def keel_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
              request: pytest.FixtureRequest) -> Path:
    """A fresh, empty KEEL_HOME and cwd; no provider keys leak in from the machine. Under
    ``KEEL_TEST_STORE=postgresql``, KEEL_STORE_URL also names a fresh PostgreSQL database."""
    home = tmp_path_factory.mktemp("keel-home")
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.setenv("KEEL_HOME", str(home))
    for name in _PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in [k for k in os.environ if k.startswith("KEEL_") and k != "KEEL_HOME"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(cwd)
    if TEST_STORE == "postgresql":
        server = request.getfixturevalue("pg_server")
        url = server.create_database("keel_home", migrated=True)
        request.addfinalizer(lambda: server.drop_database(url))
        monkeypatch.setenv("KEEL_STORE_URL", url)
    return home


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestPostgres]:
    """One real PostgreSQL server for the test session (skips, saying why, if none can start)."""
    try:
        server = session_server()
    except PostgresUnavailable as e:
        if TEST_STORE == "postgresql" or os.environ.get("KEEL_REQUIRE_POSTGRES") == "1":
            # CI sets KEEL_REQUIRE_POSTGRES (.ci/run): there the PostgreSQL tests must run, never skip.
            pytest.fail(f"PostgreSQL is required here but cannot start: {e}")
        pytest.skip(f"PostgreSQL cannot start here: {e}")
    yield server  # stopped at exit: subprocess helpers (tests.pg.use_postgres_for) share it


@pytest.fixture
def pg_url(pg_server: TestPostgres) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL; dropped after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    """A real HTTP server on 127.0.0.1 speaking OpenAI's wire format, with scripted answers."""
    stub = OpenAIStub()
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``KEEL_TEST_STORE=postgresql`` (the README's second pass), leave out the tests that
    name their backend themselves (``[sqlite]``, ``[postgresql]``): the first pass ran them on
    both already, and running them again only cost CI minutes."""
    if TEST_STORE != "postgresql":
        return

    def names_its_backend(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        return callspec is not None and any(v in ("sqlite", "postgresql") for v in callspec.params.values()
                                            if isinstance(v, str))

    keep = [item for item in items if not names_its_backend(item)]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if names_its_backend(item)])
        items[:] = keep
