"""A provider error that echoes the key it was sent (a careless 401) is stored nowhere with the key:
not in model_calls, spans, the run's or the step's error (issue 13, finding 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel import secrets
from keel.errors import ProviderAuthError
from keel.workflows import run
from tests.openai_stub import OpenAIStub
from tests.operate.conftest import agent_workflow
from tests.pg import store_files_text

# Neither key is shaped like one (no sk-, no Bearer after scrubbing): only knowing it finds it.
CONFIGURED_KEY = "provCfg-7f3a9c1e2d5b8a4f6e0c"
HELD_KEY = "callerOwn-8e2b4d6f1a9c3e5b7d0f"


def _store_bytes(home: Path) -> str:
    return "".join(store_files_text(home).values())  # the file's bytes, or every row on PostgreSQL


def test_a_configured_key_echoed_by_the_provider_is_stored_nowhere(
        openai_stub: OpenAIStub, keel_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_stub.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", CONFIGURED_KEY)
    spec = keel_home / "bot.yaml"
    spec.write_text(agent_workflow("bot", "openai:gpt-4.1-mini", "Be brief.", "A bot."), encoding="utf-8")
    openai_stub.refuse_key(401)

    result = run(spec, "hi")

    assert openai_stub.requests[-1].headers["authorization"] == f"Bearer {CONFIGURED_KEY}"
    assert result.status == "failed"
    assert "refused the API key (401)" in result.error and "[redacted]" in result.error, result.error
    assert CONFIGURED_KEY not in result.error
    stored = _store_bytes(keel_home)
    assert "refused the API key" in stored  # the error is stored, as it should be ...
    assert CONFIGURED_KEY not in stored      # ... without the key (model_calls, spans, runs, steps)


def test_a_held_key_is_scrubbed_from_errors_of_its_task_only(
        openai_stub: OpenAIStub, keel_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server holds a caller's provider key for the run it starts: an error text born in that
    run loses it, wherever it is made (here a ProviderError not made by the openai client)."""
    with secrets.holding(HELD_KEY):
        inside = ProviderAuthError(f"refused {HELD_KEY}", hint=f"key {HELD_KEY}")
    outside = ProviderAuthError(f"refused {HELD_KEY}")
    assert HELD_KEY not in str(inside) and "refused [redacted]" in inside.message
    assert HELD_KEY in outside.message  # not a secret of this process: held keys do not linger


def test_scrub_knows_key_shapes_and_registered_keys() -> None:
    secrets.register("registered-0123456789")
    text = ("a registered-0123456789 b sk-proj-abcdef123456 c Authorization: Bearer tok.en-123456789 "
            "d keel_sk_abcd1234_ABCDEFGHIJKLMNOPQRSTUVWX e short1")
    clean = secrets.scrub(text)
    for leaked in ("registered-0123456789", "sk-proj-abcdef123456", "tok.en-123456789", "ABCDEFGHIJKLMNOPQRSTUVWX"):
        assert leaked not in clean, clean
    assert "Bearer [redacted]" in clean and clean.endswith("e short1")


def test_a_client_token_is_scrubbed_from_error_text_and_log_records(tmp_path: Path) -> None:
    """Issue 13 review: ``keel_ct_...`` client tokens (a browser's credential for one end user)
    were not among the key shapes, so error text and log lines kept them whole."""
    import logging

    from keel.operate.server.client_tokens import ClientTokens
    from keel.operate.server.hygiene import RedactingFilter
    from keel.store import open_store

    token, _ = ClientTokens(open_store(tmp_path)).mint(key_id="abcd1234", user="user-42", workflow="support", ttl=600)
    payload, signature = token.removeprefix("keel_ct_").split(".")
    text = f"token {token} refused; cut short: {token[:30]} end"
    clean = secrets.scrub(text)
    assert clean == "token [redacted] refused; cut short: [redacted] end", clean
    assert payload not in clean and signature not in clean

    record = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, "bad credential %s", (token,), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "bad credential [redacted]"
