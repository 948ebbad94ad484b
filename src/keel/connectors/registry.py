"""The connector registry: named MCP servers an admin configures once, with credentials.

A connector is an MCP server (``stdio:COMMAND ARGS`` or a streamable-HTTP URL), the tools it
may expose (allow-list), their approval policies, the workflows that may use it (name
patterns) and its credentials: environment variables for a ``stdio:`` server, headers for an
HTTP one. Credentials are sealed with :class:`~keel.connectors.secretbox.SecretBox` before they
reach the store (table ``connectors``, migration ``0312_connectors``); :meth:`Connector.public`
is what ``list``/``show`` print, names of credentials only.
"""

from __future__ import annotations

import fnmatch
import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.connectors.secretbox import SecretBox
from keel.errors import UserError

__all__ = ["NAME_PATTERN", "Connector", "ConnectorError", "Connectors", "Credentials", "OAuthSettings"]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class ConnectorError(UserError):
    """A connector is unknown, forbidden, misconfigured, or its server refused to work.
    Its text is scrubbed (a server's error may echo the credentials it was sent)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        from keel.secrets import scrub

        super().__init__(scrub(message), hint=scrub(hint) if hint else hint)


class Credentials(BaseModel):
    """A connector's secrets (only ever stored sealed)."""

    model_config = ConfigDict(extra="forbid")

    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables given to a ``stdio:`` server (e.g. ``GITHUB_TOKEN``)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent to an HTTP server with every request (e.g. ``Authorization: Bearer ...``)."""
    oauth: dict[str, Any] = Field(default_factory=dict)
    """OAuth state (``keel connectors login``): ``client`` (the dynamic registration),
    ``tokens`` and ``expires_at`` (:mod:`keel.connectors.oauth`)."""

    def values(self) -> list[str]:
        tokens = self.oauth.get("tokens") or {}
        client = self.oauth.get("client") or {}
        return [*self.env.values(), *self.headers.values(),
                *(v for v in (tokens.get("access_token"), tokens.get("refresh_token"), client.get("client_secret"))
                  if v)]


class OAuthSettings(BaseModel):
    """A connector whose HTTP server wants OAuth 2.1 (the MCP authorization spec)."""

    model_config = ConfigDict(extra="forbid")

    scope: str | None = None
    """Scopes to ask for (default: what the server's metadata names)."""


class Connector(BaseModel):
    """One named connector. Fields other than ``credentials`` are not secret."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    """What specs write: ``mcp: [{connector: NAME}]`` (or ``http: {connector: NAME}``)."""
    server: str
    """``stdio:COMMAND ARGS`` or an ``http(s)://`` streamable-HTTP URL; for ``kind: http``, the
    API's base URL (``keel connectors test`` sends it a GET)."""
    kind: Literal["mcp", "http"] = "mcp"
    """``mcp``: an MCP server; ``http``: credentials and hosts for the built-in HTTP request tool
    (an Agent node's ``http: {connector: NAME}``)."""
    hosts: list[str] = Field(default_factory=list)
    """``kind: http``: hosts the tool may call with these credentials (as ``http.allow_hosts``)."""
    methods: list[Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]] = Field(default_factory=lambda: ["GET"])
    """``kind: http``: methods the tool may use."""
    tools: list[str] | None = None
    """Tools workflows may call (None: every tool the server lists)."""
    approval: dict[str, Literal["always", "never"]] = Field(default_factory=dict)
    """Tool name -> policy, ``*`` for the others (default ``always``); a spec may make a tool
    stricter (``always``), never looser."""
    workflows: list[str] = Field(default_factory=lambda: ["*"])
    """Workflow names (shell patterns, ``support-*``) that may use the connector."""
    keys: list[str] = Field(default_factory=lambda: ["*"])
    """API keys (ids or names, shell patterns) whose runs may use it; runs started without a key
    (the CLI, ``keel serve`` in open mode on loopback) always may."""
    timeout: float = Field(default=60, gt=0)
    """Seconds one tool call may take."""
    oauth: OAuthSettings | None = None
    """OAuth 2.1 instead of (or besides) fixed headers; tokens come from ``keel connectors login``."""
    credentials: Credentials = Field(default_factory=Credentials)
    created_at: float = 0
    updated_at: float = 0

    def allows(self, workflow: str) -> bool:
        return any(fnmatch.fnmatchcase(workflow, p) for p in self.workflows)

    def allows_key(self, key: tuple[str, str] | None) -> bool:
        """Whether a run started with API key ``(id, name)`` (None: no key) may use it."""
        return key is None or any(fnmatch.fnmatchcase(k, p) for p in self.keys for k in key if k)

    def public(self) -> dict[str, Any]:
        """Everything but the secrets: credentials appear as the names of variables/headers."""
        doc = self.model_dump(exclude={"credentials"})
        doc["env"] = sorted(self.credentials.env)
        doc["headers"] = sorted(self.credentials.headers)
        if self.oauth is not None:
            doc["oauth"] = {**self.oauth.model_dump(), **self.oauth_status}
        return doc

    oauth_status: dict[str, Any] = Field(default_factory=dict, exclude=True)
    """Not secret: ``logged_in`` and ``expires_at`` of the OAuth tokens (kept beside the config)."""


def _status(state: dict[str, Any]) -> dict[str, Any]:
    if not state.get("tokens"):
        return {"logged_in": False}
    return {"logged_in": True, "expires_at": state.get("expires_at"),
            "refreshable": bool(state["tokens"].get("refresh_token"))}


class Connectors:
    """Add, read and remove connectors in a store."""

    def __init__(self, store: Any, *, box: SecretBox | None = None) -> None:
        self.store = store
        self.box = box if box is not None else SecretBox()

    def add(self, connector: Connector, *, replace: bool = False) -> Connector:
        now = time.time()
        config = connector.model_dump(exclude={"credentials", "name", "created_at", "updated_at"})
        # The names of the credentials (not their values), so list/show need not decrypt.
        config["_names"] = {"env": sorted(connector.credentials.env), "headers": sorted(connector.credentials.headers)}
        config["_oauth"] = _status(connector.credentials.oauth)
        sealed = self.box.seal(connector.credentials.model_dump())
        with self.store.transaction():
            old = self.store.query("SELECT created_at FROM connectors WHERE name = ?", (connector.name,))
            if old and not replace:
                raise ConnectorError(f"connector {connector.name!r} exists already",
                                     hint=f"add --replace to change it, or `keel connectors remove {connector.name}`")
            created = old[0]["created_at"] if old else now
            self.store.execute("DELETE FROM connectors WHERE name = ?", (connector.name,))
            self.store.execute(
                "INSERT INTO connectors (name, config, credentials, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (connector.name, json.dumps(config), sealed, created, now))
        return connector.model_copy(update={"created_at": created, "updated_at": now})

    def _row(self, row: dict[str, Any], *, secrets: bool) -> Connector:
        config = json.loads(row["config"])
        names = config.pop("_names", {})
        status = config.pop("_oauth", {})
        if secrets:
            creds = Credentials(**self.box.open(row["credentials"], connector=row["name"]))
        else:  # names only, with empty values: enough for public()
            creds = Credentials(env=dict.fromkeys(names.get("env", []), ""),
                                headers=dict.fromkeys(names.get("headers", []), ""))
        return Connector(name=row["name"], **config, credentials=creds, created_at=row["created_at"],
                         updated_at=row["updated_at"], oauth_status=status)

    def save_oauth(self, name: str, state: dict[str, Any]) -> None:
        """Replace connector ``name``'s OAuth state (tokens from a login or a refresh), sealed."""
        with self.store.transaction():
            rows = self.store.query("SELECT * FROM connectors WHERE name = ?", (name,))
            if not rows:
                raise ConnectorError(f"connector {name!r} was removed while it was logging in",
                                     hint=f"add it again: keel connectors add {name} --server ... --oauth")
            creds = self.box.open(rows[0]["credentials"], connector=name)
            creds["oauth"] = state
            config = json.loads(rows[0]["config"])
            config["_oauth"] = _status(state)
            self.store.execute("UPDATE connectors SET credentials = ?, config = ? WHERE name = ?",
                               (self.box.seal(creds), json.dumps(config), name))

    def claim_refresh(self, name: str, owner: str, *, ttl: float) -> bool:
        """Take the lease on refreshing connector ``name``'s OAuth tokens for ``ttl`` seconds, if
        nobody holds an unexpired one (compare-and-swap on its row: one winner on SQLite and
        PostgreSQL alike). True when ``owner`` now holds it."""
        now = time.time()
        return self.store.execute(
            "UPDATE connectors SET refresh_owner = ?, refresh_until = ? WHERE name = ? AND "
            "(refresh_owner IS NULL OR refresh_until IS NULL OR refresh_until < ?)",
            (owner, now + ttl, name, now)) == 1

    def release_refresh(self, name: str, owner: str) -> None:
        """Give the lease of :meth:`claim_refresh` back (only ``owner``'s own)."""
        self.store.execute("UPDATE connectors SET refresh_owner = NULL, refresh_until = NULL "
                           "WHERE name = ? AND refresh_owner = ?", (name, owner))

    def get(self, name: str, *, secrets: bool = False) -> Connector:
        """The connector ``name``; with ``secrets``, its credentials decrypted (for building a client)."""
        rows = self.store.query("SELECT * FROM connectors WHERE name = ?", (name,))
        if not rows:
            known = [r["name"] for r in self.store.query("SELECT name FROM connectors ORDER BY name")]
            raise ConnectorError(f"no connector named {name!r}" + (f" (known: {', '.join(known)})" if known else ""),
                                 hint="add it: keel connectors add NAME --server ...")
        return self._row(rows[0], secrets=secrets)

    def find(self, name: str) -> Connector | None:
        rows = self.store.query("SELECT * FROM connectors WHERE name = ?", (name,))
        return self._row(rows[0], secrets=False) if rows else None

    def list(self) -> list[Connector]:
        return [self._row(r, secrets=False) for r in self.store.query("SELECT * FROM connectors ORDER BY name")]

    def remove(self, name: str) -> None:
        self.get(name)
        self.store.execute("DELETE FROM connectors WHERE name = ?", (name,))
