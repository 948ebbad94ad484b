"""Known secrets, and :func:`scrub`: text with every one of them replaced by ``[redacted]``.

Error text is where secrets leak: a provider that answers 401 may echo the key it
was sent, and that text becomes a ``model_calls`` row, a span, a run's and a
step's error, a ChatKit message and an API answer. Keel scrubs error text where
it is born (:class:`keel.errors.ProviderError`, the ``openai`` client's errors,
:class:`keel.workflows.nodes.NodeFailure`) and again where it is stored or
returned. What counts as a secret:

- every configured provider key (registered by :func:`keel.config.get_settings`);
- secrets held for the current task with :func:`holding` (the server holds a
  caller's ``X-Keel-Provider-Key`` for the run it starts, and for nothing else);
- secrets passed to :func:`scrub` directly (a provider scrubs its own key);
- anything shaped like a key: Keel keys (``keel_sk_...``), Keel client tokens
  (``keel_ct_...``), ``sk-...`` provider keys, and ``Bearer`` tokens.

Values shorter than :data:`MIN_LENGTH` are not treated as secrets (they would
redact ordinary words). :func:`scrub` is cheap but not free: call it on error
text, not on every answer.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["MIN_LENGTH", "PATTERNS", "REDACTED", "holding", "register", "scrub"]

REDACTED = "[redacted]"
MIN_LENGTH = 8

PATTERNS = (
    re.compile(r"keel_sk_[a-z0-9]{8}_[A-Za-z0-9_-]{20,}"),  # Keel API keys (keel.operate.server.keys)
    # Keel client tokens (keel.operate.server.client_tokens): payload, then "." and the signature;
    # a payload cut before its signature is still redacted.
    re.compile(r"keel_ct_[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)?"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),                 # OpenAI-style provider keys
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/\-]{8,}=*"),
)
"""Shapes of secrets; a group, when a pattern has one, is kept (``Bearer [redacted]``)."""

_ANY = re.compile(r"keel_sk_|keel_ct_|\bsk-|(?i:bearer\s)")
"""Whether any of :data:`PATTERNS` may match: most text has none, and this one pass is cheap."""

_MAX_REGISTERED = 64
_registered: OrderedDict[str, None] = OrderedDict()
"""Process-wide secrets, most recent last; bounded (a process sees a handful of configured keys)."""
_lock = threading.Lock()
_held: ContextVar[tuple[str, ...]] = ContextVar("keel_held_secrets", default=())


def register(*secrets: str | None) -> None:
    """Treat each of ``secrets`` as a secret in this process from now on (at most the 64 latest)."""
    with _lock:
        for secret in secrets:
            if secret and len(secret) >= MIN_LENGTH:
                _registered[secret] = None
                _registered.move_to_end(secret)
                while len(_registered) > _MAX_REGISTERED:
                    _registered.popitem(last=False)


@contextmanager
def holding(*secrets: str | None) -> Iterator[None]:
    """Treat ``secrets`` as secrets inside the block, in this task and the tasks it starts."""
    token = _held.set(_held.get() + tuple(s for s in secrets if s and len(s) >= MIN_LENGTH))
    try:
        yield
    finally:
        _held.reset(token)


def scrub(text: str, *also: str | None) -> str:
    """``text`` with every known secret (and ``also``) and every key-shaped string redacted.

    Scrub before truncating: a secret cut in two is no longer recognised."""
    if not text:
        return text
    for secret in (*also, *_held.get(), *tuple(_registered)):
        if secret and len(secret) >= MIN_LENGTH and secret in text:
            text = text.replace(secret, REDACTED)
    if _ANY.search(text) is None:
        return text
    for pattern in PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text
