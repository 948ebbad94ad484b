"""Providers: where a model lives and how to reach it (base URL, key, HTTP client).

The wire format is the model's concern (:mod:`keel.models.openai_compat`); a
provider only knows credentials and transport. Every OpenAI-compatible service
is one :class:`Provider` with a different base URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keel.errors import MissingCredentialsError

if TYPE_CHECKING:
    import httpx
    from openai import AsyncOpenAI

    from keel.config import Settings

__all__ = ["Provider", "provider_for"]


@dataclass
class Provider:
    """Credentials and transport for one OpenAI-compatible endpoint."""

    name: str
    """The model-string prefix, e.g. ``openai`` or ``ollama``."""
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    key_env: str | None = None
    """The environment variable that holds the key, named in errors."""
    key_required: bool = False
    timeout: float = 60.0
    supports_responses: bool = False
    """Whether the endpoint serves OpenAI's Responses API."""
    native_json_schema: bool = True
    """Whether ``response_format: json_schema`` is known to work (else Keel probes)."""
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)
    """Injected in tests to route requests anywhere; ``None`` is the real network."""
    _client: AsyncOpenAI | None = field(default=None, init=False, repr=False)

    def check_credentials(self) -> None:
        if self.key_required and not self.api_key:
            raise MissingCredentialsError(
                f"no API key for {self.name}",
                hint=f"set {self.key_env} (in the environment or .env), e.g. export {self.key_env}=...",
            )

    def client(self) -> AsyncOpenAI:
        """The provider's ``openai`` client, made on first use. Keel retries itself, so
        the client's own retries are off."""
        self.check_credentials()
        if self._client is None:
            import httpx
            from openai import AsyncOpenAI

            http_client = httpx.AsyncClient(transport=self.transport) if self.transport else None
            self._client = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key or "not-needed",
                max_retries=0,
                timeout=self.timeout,
                http_client=http_client,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def provider_for(prefix: str, settings: Settings, *, base_url: str | None = None) -> Provider:
    """The provider named by a model-string prefix, configured from ``settings``."""
    timeout = settings.timeout
    if prefix == "openai":
        return Provider(
            "openai", settings.openai_base_url or "https://api.openai.com/v1",
            api_key=_secret(settings.openai_api_key), key_env="OPENAI_API_KEY",
            key_required=settings.openai_base_url is None, timeout=timeout, supports_responses=True,
        )
    if prefix == "openrouter":
        return Provider(
            "openrouter", "https://openrouter.ai/api/v1",
            api_key=_secret(settings.openrouter_api_key), key_env="OPENROUTER_API_KEY",
            key_required=True, timeout=timeout,
        )
    if prefix == "ollama":
        host = settings.ollama_host.rstrip("/")
        if not host.startswith(("http://", "https://")):
            host = f"http://{host}"
        return Provider("ollama", f"{host}/v1", timeout=timeout)
    if prefix == "lmstudio":
        return Provider("lmstudio", settings.lmstudio_base_url, timeout=timeout)
    if prefix == "openai-compatible":
        assert base_url is not None
        return Provider(
            "openai-compatible", base_url,
            api_key=_secret(settings.openai_compatible_api_key),
            key_env="KEEL_OPENAI_COMPATIBLE_API_KEY", timeout=timeout, native_json_schema=False,
        )
    raise ValueError(prefix)  # pragma: no cover - the registry only passes known prefixes
