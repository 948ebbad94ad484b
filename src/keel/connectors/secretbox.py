"""Encrypt connector credentials at rest (Fernet: AES-128-CBC + HMAC-SHA256, from ``cryptography``).

The key is never in the store, so a copy of the store file alone reveals no credential:

- ``KEEL_SECRET_KEY`` when set (any text; its SHA-256 becomes the Fernet key). Give every
  server and worker of a deployment the same value.
- else ``$KEEL_HOME/connectors.key``, made on first use with mode 0600.

Losing the key loses the credentials (``keel connectors add --replace`` stores them again).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from keel.errors import UserError

__all__ = ["KEY_FILE", "SecretBox"]

KEY_FILE = "connectors.key"
"""Name of the key file under ``KEEL_HOME`` when ``KEEL_SECRET_KEY`` is not set."""


class SecretBox:
    """Seal and open small JSON documents (a connector's credentials)."""

    def __init__(self, home: Path | None = None) -> None:
        self._home = home
        self._fernet = None

    def _key(self) -> bytes:
        env = os.environ.get("KEEL_SECRET_KEY")
        if env:
            return base64.urlsafe_b64encode(hashlib.sha256(env.encode()).digest())
        home = self._home
        if home is None:
            from keel.config import get_settings

            home = Path(get_settings().home)
        path = Path(home) / KEY_FILE
        if not path.exists():
            from cryptography.fernet import Fernet

            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL: two processes making the key at once keep one of them
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(Fernet.generate_key())
        return path.read_bytes().strip()

    def _f(self):
        if self._fernet is None:
            from cryptography.fernet import Fernet

            try:
                self._fernet = Fernet(self._key())
            except ValueError:
                raise UserError(f"the connector key file under KEEL_HOME ({KEY_FILE}) is not a Fernet key",
                                hint="restore it from a backup, or set KEEL_SECRET_KEY") from None
        return self._fernet

    def seal(self, doc: dict[str, dict[str, str]]) -> str:
        return self._f().encrypt(json.dumps(doc, sort_keys=True).encode()).decode()

    def open(self, token: str, *, connector: str) -> dict[str, dict[str, str]]:
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._f().decrypt(token.encode()))
        except InvalidToken:
            raise UserError(f"cannot decrypt the credentials of connector {connector!r}: the key differs from "
                            "the one they were stored with",
                            hint="set the KEEL_SECRET_KEY they were stored with (or restore "
                                 f"$KEEL_HOME/{KEY_FILE}), or store them again: keel connectors add "
                                 f"{connector} ... --replace") from None
