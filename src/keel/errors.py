"""Keel's exception tree.

Every error Keel raises on purpose is a :class:`KeelError`. Each one carries a
one-line ``message`` (what went wrong, and where) and a ``hint`` (what to do
next); the CLI prints both and exits with the class's ``exit_code``::

    KeelError
    ├── UserError                    you asked for something Keel cannot do (exit 2)
    │   ├── ConfigError              a setting, .env or keel.toml value is wrong
    │   ├── UnknownModelError        a model string names no provider
    │   ├── MissingCredentialsError  a provider needs a key that is not set
    │   ├── SchemaError              a JSON schema is malformed or cannot be enforced
    │   └── StoreError               the store cannot be opened or migrated
    ├── ProviderError                the model provider failed (exit 3)
    │   ├── ProviderUnreachableError connection refused, DNS, TLS
    │   ├── ProviderTimeoutError     no answer within the timeout
    │   ├── RateLimitedError         429 after all retries
    │   ├── ProviderAuthError        401/403: the key was refused
    │   └── ProviderHTTPError        any other HTTP error status
    ├── ModelBehaviorError           the model answered, but wrongly (exit 4)
    │   ├── StructuredOutputError    output not valid under the schema, even after a retry
    │   └── ToolCallError            a tool call names no tool or has invalid arguments
    └── ScriptError                  a scripted model ran out of replies or kept some (exit 5)

Callers may rely on the class, ``message``, ``hint`` and ``exit_code``; the
exact wording of messages may change.
"""

from __future__ import annotations

from keel.secrets import scrub

__all__ = [
    "ConfigError",
    "KeelError",
    "MissingCredentialsError",
    "ModelBehaviorError",
    "ProviderAuthError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderTimeoutError",
    "ProviderUnreachableError",
    "RateLimitedError",
    "SchemaError",
    "ScriptError",
    "StoreError",
    "StructuredOutputError",
    "ToolCallError",
    "UnknownModelError",
    "UserError",
]


class KeelError(Exception):
    """Base class of every error Keel raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


# --- you misused Keel ---------------------------------------------------------------


class UserError(KeelError):
    """The request cannot be served as asked: fix the input or the configuration."""

    exit_code = 2


class ConfigError(UserError):
    """A setting (environment, ``.env`` or ``keel.toml``) is invalid."""


class UnknownModelError(UserError):
    """A model string does not name a known provider, or is malformed."""


class MissingCredentialsError(UserError):
    """The provider needs an API key and none is configured."""


class SchemaError(UserError):
    """An output or tool schema is malformed, or the constraint engine cannot express it."""


class StoreError(UserError):
    """The embedded store cannot be opened, migrated or written."""


# --- the provider failed ----------------------------------------------------------


class ProviderError(KeelError):
    """The model provider failed to answer (network, HTTP status, timeout)."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        provider: str | None = None,
        status_code: int | None = None,
    ) -> None:
        # A provider's error may echo the key it was sent: scrubbed here, so that nothing
        # downstream (model_calls, spans, runs, API answers, logs) ever holds it.
        super().__init__(scrub(message), hint=scrub(hint) if hint else hint)
        self.provider = provider
        self.status_code = status_code


class ProviderUnreachableError(ProviderError):
    """The endpoint could not be reached (connection refused, DNS, TLS)."""


class ProviderTimeoutError(ProviderError):
    """The endpoint did not answer within the timeout."""


class RateLimitedError(ProviderError):
    """The endpoint kept answering 429 after every retry."""


class ProviderAuthError(ProviderError):
    """The endpoint refused the credentials (401/403)."""


class ProviderHTTPError(ProviderError):
    """Any other HTTP error status from the endpoint."""


# --- the model misbehaved ----------------------------------------------------------


class ModelBehaviorError(KeelError):
    """The model answered, but its answer breaks the contract asked of it."""

    exit_code = 4

    def __init__(self, message: str, *, hint: str | None = None, output: str | None = None) -> None:
        super().__init__(scrub(message), hint=hint)
        self.output = output


class StructuredOutputError(ModelBehaviorError):
    """The output is not valid under the requested JSON schema, even after one retry."""


class ToolCallError(ModelBehaviorError):
    """A tool call names an unknown tool or carries arguments invalid under its schema."""


# --- scripted models (tests) -------------------------------------------------------


class ScriptError(KeelError, AssertionError):
    """A scripted model was called more often than scripted, or kept unused replies.

    It is also an ``AssertionError`` so test runners report it as a failed test.
    """

    exit_code = 5
