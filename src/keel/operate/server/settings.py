"""How a ``keel serve`` deployment behaves: read from ``[serve]`` in ``keel.toml`` and
``KEEL_SERVE_*`` environment variables; ``keel serve`` options override both."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from keel.errors import ConfigError
from keel.safeload import load_toml

__all__ = ["ServeSettings", "is_loopback", "load_serve_settings"]


class ServeSettings(BaseSettings):
    """Every setting of the server. Field names are the keys of ``[serve]`` in ``keel.toml``."""

    model_config = SettingsConfigDict(env_prefix="KEEL_SERVE_", extra="ignore")

    host: str = "127.0.0.1"
    """Address to listen on. Anything but loopback needs at least one API key (``keel keys create``)."""
    port: int = Field(default=8000, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS, e.g. ``["https://app.example.com"]``; empty: no CORS headers."""
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    """Largest request body accepted; larger ones get 413."""
    run_timeout: float = Field(default=120.0, gt=0)
    """Seconds a synchronous run may take before the request answers (the run goes on)."""
    allow_provider_keys: bool = False
    """Whether a caller may send its own provider key (``X-Keel-Provider-Key``) for a request."""
    provider_key_providers: list[str] = Field(default_factory=lambda: ["openai", "openai-compatible"])
    """Providers a caller's own key is used for (never sent to any other provider)."""
    user_daily_tokens: int | None = Field(default=None, ge=0)
    """Default cap on tokens per end user per UTC day, for keys without their own (and open mode)."""
    user_daily_cost_usd: float | None = Field(default=None, ge=0)
    access_log: Path | None = None
    """Also append JSON access-log lines to this file (they always go to stderr)."""
    mcp: bool = True
    """Mount the MCP server (streamable HTTP) at ``/mcp``."""
    caller_system_messages: Literal["demote", "accept", "refuse"] = "demote"
    """What a caller's ``system``/``developer`` messages and Responses ``instructions`` become:
    ``demote`` user content prefixed ``[caller instructions]``, ``accept`` system messages,
    ``refuse`` a 400 naming the field (docs/security.md)."""
    execute: bool = True
    """Execute the runs this server starts (and approvals it answers). False: queue them for
    ``keel worker`` processes (docs/workflows.md, "Workers"); runs with a caller's own provider
    key still execute here (the key is never stored)."""
    share_events: bool | None = None
    """Write the events of runs executed here to the store, for clients following them through
    another server. Default: on when the store is PostgreSQL (servers behind a load balancer)."""
    key_requests_per_minute: int | None = Field(default=None, ge=1, le=2**31 - 1)
    """Runs and completions started per API key per minute, counted across every server sharing
    the store (429 with Retry-After past it). None: no limit."""
    user_requests_per_minute: int | None = Field(default=None, ge=1, le=2**31 - 1)
    """The same per end user (``X-Keel-User`` or the OpenAI ``user`` field)."""
    key_cache_seconds: float = Field(default=1.0, ge=0)
    """On PostgreSQL, how long a verified API key is answered from memory. A revocation reaches
    every server at once (a notification); this bounds how long one whose notification a server
    missed (its listening connection was down) goes unseen there. 0: read the key on every
    request. SQLite reads it every time (a local file)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_serve_settings(**overrides: Any) -> ServeSettings:
    """``[serve]`` from ./keel.toml, then the environment, then ``overrides`` (None values ignored)."""
    table: dict[str, Any] = {}
    path = Path("keel.toml")
    if path.is_file():
        try:
            table = load_toml(path.read_text(encoding="utf-8"), where=str(path)).get("serve", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: {e}", hint="fix the TOML syntax (https://toml.io)") from None
    try:
        env = ServeSettings()
        merged = {**table, **env.model_dump(exclude_unset=True),
                  **{k: v for k, v in overrides.items() if v is not None}}
        return ServeSettings(**merged)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "serve"
        raise ConfigError(f"invalid serve setting {where}: {err['msg']}",
                          hint="check [serve] in keel.toml and KEEL_SERVE_* variables (docs/serve.md)") from None
