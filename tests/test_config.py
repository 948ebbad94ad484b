from __future__ import annotations

from pathlib import Path

import pytest

from keel.config import get_settings
from keel.errors import ConfigError


def test_keel_home_from_environment(keel_home: Path) -> None:
    assert get_settings().home == keel_home


def test_precedence_env_over_dotenv_over_project_toml_over_home_toml(
    keel_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (keel_home / "keel.toml").write_text('default_model = "ollama:home"\ntimeout = 11\nmax_retries = 1\n')
    assert get_settings().default_model == "ollama:home"
    Path("keel.toml").write_text('default_model = "ollama:project"\ntimeout = 22\n[models]\nfast = "openai:gpt-4.1-mini"\n')
    s = get_settings()
    assert (s.default_model, s.timeout, s.max_retries) == ("ollama:project", 22, 1)
    assert s.resolve_alias("fast") == "openai:gpt-4.1-mini"
    Path(".env").write_text("KEEL_MODEL=ollama:dotenv\n")
    assert get_settings().default_model == "ollama:dotenv"
    monkeypatch.setenv("KEEL_MODEL", "ollama:env")
    assert get_settings().default_model == "ollama:env"


def test_secrets_never_appear_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    s = get_settings()
    assert s.openai_api_key is not None
    assert s.openai_api_key.get_secret_value() == "sk-very-secret-value"
    assert "sk-very-secret-value" not in repr(s) and "sk-very-secret-value" not in str(s)


def test_malformed_toml_names_the_file() -> None:
    Path("keel.toml").write_text("timeout = \n")
    with pytest.raises(ConfigError, match=r"keel\.toml"):
        get_settings()


def test_invalid_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_TIMEOUT", "-3")
    with pytest.raises(ConfigError, match="timeout"):
        get_settings()
