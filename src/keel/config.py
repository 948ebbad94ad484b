"""Settings: one home directory for all state, and where models come from.

Precedence, highest first:

1. environment variables (``KEEL_*``, plus the usual provider variables such as
   ``OPENAI_API_KEY``);
2. a ``.env`` file in the current directory;
3. ``keel.toml`` in the current directory (a project's settings);
4. ``$KEEL_HOME/keel.toml`` (a machine's settings);
5. defaults.

``KEEL_HOME`` defaults to the platform's user data directory
(``~/.local/share/keel`` on Linux, ``~/Library/Application Support/keel`` on
macOS). Secrets are :class:`pydantic.SecretStr`: they never appear in ``repr``,
logs or ``keel doctor`` output.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import platformdirs
from dotenv import dotenv_values
from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from keel.errors import ConfigError
from keel.safeload import load_toml
from keel.secrets import register

__all__ = ["Price", "Settings", "default_home", "get_settings"]


def default_home() -> Path:
    """Where Keel keeps its state when ``KEEL_HOME`` is not set."""
    return Path(platformdirs.user_data_dir("keel", appauthor=False))


class Price(BaseModel):
    """US dollars per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every setting Keel reads. Field names are also the ``keel.toml`` keys."""

    model_config = SettingsConfigDict(
        env_prefix="KEEL_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
    )

    home: Path = Field(default_factory=default_home)
    """All state lives here: the store, collections, logs (``KEEL_HOME``)."""

    default_model: str | None = Field(default=None, validation_alias=_env("KEEL_MODEL", "default_model"))
    """Model string used when a command needs a model and none is given (``KEEL_MODEL``)."""

    models: dict[str, str] = Field(default_factory=dict)
    """Aliases: ``[models] fast = "openai:gpt-4.1-mini"`` lets you write ``fast`` anywhere."""

    prices: dict[str, Price] = Field(default_factory=dict)
    """Per model string, overrides or extends the built-in price table."""

    timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for one model call attempt (``KEEL_TIMEOUT``)."""

    max_retries: int = Field(default=3, ge=0, le=10)
    """Retries after a transient provider failure (``KEEL_MAX_RETRIES``)."""

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("KEEL_OPENAI_API_KEY", "OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=_env("KEEL_OPENAI_BASE_URL", "OPENAI_BASE_URL", "openai_base_url")
    )
    openrouter_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_env("KEEL_OPENROUTER_API_KEY", "OPENROUTER_API_KEY", "openrouter_api_key"),
    )
    ollama_host: str = Field(
        default="http://localhost:11434", validation_alias=_env("KEEL_OLLAMA_HOST", "OLLAMA_HOST", "ollama_host")
    )
    lmstudio_base_url: str = Field(default="http://localhost:1234/v1")
    openai_compatible_api_key: SecretStr | None = None
    """Key sent to ``openai-compatible:`` endpoints (``KEEL_OPENAI_COMPATIBLE_API_KEY``)."""

    store: str | None = Field(default=None, validation_alias=_env("KEEL_STORE_URL", "store"))
    """Where the store lives (``KEEL_STORE_URL``, or ``store =`` in keel.toml): a
    ``postgresql://USER:PASSWORD@HOST:PORT/DATABASE`` URL for PostgreSQL; unset, an embedded
    SQLite file under ``home`` (docs/store.md)."""

    store_pool_size: int = Field(default=20, ge=1, le=1000)
    """Most connections one process keeps to a PostgreSQL store (``KEEL_STORE_POOL_SIZE``); the
    server's ``max_connections`` must cover every process's pool (docs/store.md)."""

    retention: str | None = Field(default=None, validation_alias=_env("KEEL_RETENTION", "retention"))
    """How long finished runs, their spans and model calls, and request logs are kept
    (``KEEL_RETENTION``, or ``retention = "30d"`` in keel.toml): ``keel serve`` prunes what is
    older every ``KEEL_PRUNE_INTERVAL`` seconds (an hour). Unset, nothing is pruned
    (``keel store prune`` does it by hand; docs/store.md, "Retention")."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=Path("keel.toml")),
            TomlConfigSettingsSource(settings_cls, toml_file=_home_before_settings() / "keel.toml"),
        )

    def resolve_alias(self, model: str) -> str:
        """The model string an alias stands for (or ``model`` itself)."""
        return self.models.get(model, model)


def _home_before_settings() -> Path:
    """KEEL_HOME as the environment or .env sets it, needed to find ``$KEEL_HOME/keel.toml``."""
    home = os.environ.get("KEEL_HOME")
    if not home and Path(".env").is_file():
        home = dotenv_values(".env").get("KEEL_HOME")
    return Path(home).expanduser() if home else default_home()


def _check_toml_files() -> None:
    for path in (Path("keel.toml"), _home_before_settings() / "keel.toml"):
        if not path.is_file():
            continue
        try:
            load_toml(path.read_text(encoding="utf-8"), where=str(path))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as e:
            raise ConfigError(f"{path}: {e}", hint="fix the TOML syntax (https://toml.io)") from None


def get_settings(**overrides: Any) -> Settings:
    """Read settings afresh (cheap: a few files). Invalid values raise :class:`ConfigError`."""
    _check_toml_files()
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise ConfigError(
            f"invalid setting {where}: {err['msg']}",
            hint="check the KEEL_* environment variables, .env and keel.toml (see docs/configuration.md)",
        ) from None
    settings.home = settings.home.expanduser()
    # Configured keys are secrets for this process: scrubbed from every error Keel stores or shows.
    register(*(k.get_secret_value() for k in (settings.openai_api_key, settings.openrouter_api_key,
                                              settings.openai_compatible_api_key) if k is not None))
    return settings
