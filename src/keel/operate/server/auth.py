"""Who is calling: an API key (``Authorization: Bearer keel_sk_...`` or ``X-API-Key``),
the end user it acts for (``X-Keel-User``), and an optional provider key of its own.

With no active key in the store the server is *open*, and then only to clients on
loopback: ``keel serve`` refuses a non-loopback ``--host`` until a key exists, and
each request from a non-loopback address is refused too (belt and braces behind a
proxy). Once one key exists, every request needs one, until the server restarts even
if the last key is revoked (:meth:`~keel.operate.server.keys.Keys.required`). In open mode
a bearer token that is not a Keel key (an OpenAI SDK's placeholder) is ignored.

A browser gets no key but a client token (``Authorization: Bearer keel_ct_...``, see
:mod:`~keel.operate.server.client_tokens`): the caller is then the minting key, narrowed to
the token's workflow and without roles, acting for exactly the token's user.

**Who may read and decide what** is decided here, by :class:`Caller`, and nowhere else:

- :meth:`Caller.may_read_run` (a run, its trace, events, steps, and cancelling it): the key
  that started it (when the caller acts for an end user, only that user's runs), or an
  ``admin`` key of its workflow; in open mode (no keys, loopback) everyone. A route that
  gets False answers 404, as for an unknown id, so run ids do not leak.
- :meth:`Caller.may_read_approval`: who may read its run, or an ``approver`` key of its workflow.
- :func:`authorize_decision` (approve / reject): ``approver`` or ``admin`` keys of the
  workflow, never the key that started the run unless the node says ``allow_requester: true``
  (then that key, for that end user, may) or the run is a canvas preview of a draft (version 0,
  which only admin keys start: that admin may answer its approvals); raises 404 / 403.
- :meth:`Caller.run_filter` / :meth:`Caller.approval_filter`: the ``workflows`` / ``key_id`` /
  ``end_user`` arguments that make :meth:`keel.workflows.Runs.list` / ``approvals`` list only
  what the caller may read, in SQL (before ``LIMIT``: filtering after it made a scoped key's
  list come back short, or empty, behind newer runs of other workflows).
- :meth:`Caller.may_read_eval`: admin keys of every workflow the eval runs (``*`` for evals
  with no workflow target).
- :meth:`Caller.identity`: who decided, as recorded with a decision (from the credential,
  never from the request body).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from keel.operate.server.client_tokens import PREFIX as CLIENT_TOKEN_PREFIX
from keel.operate.server.errors import ApiError
from keel.operate.server.keys import ApiKey
from keel.operate.server.settings import is_loopback

__all__ = ["PROVIDER_KEY_HEADER", "USER_HEADER", "Caller", "authenticate", "authorize_decision", "caller",
           "check_open_client"]

USER_HEADER = "X-Keel-User"
PROVIDER_KEY_HEADER = "X-Keel-Provider-Key"
_MAX_USER = 200


@dataclass(frozen=True)
class Caller:
    key: ApiKey | None
    """None in open mode (no keys exist, loopback only)."""
    end_user: str | None = None
    provider_key: str | None = None
    via_token: bool = False
    """The request carried a client token: ``end_user`` is the token's user and ``key`` the
    minting key, narrowed to the token's workflow and without roles."""

    def allow(self, workflow: str) -> None:
        """Raise 403 unless this caller may use ``workflow``."""
        if self.key is not None and not self.key.allows(workflow):
            raise ApiError(403, f"API key {self.key.id} ({self.key.name}) is not scoped to workflow {workflow!r}",
                           type="permission_error", code="scope",
                           hint=f"use a key whose scope includes it: keel keys create NAME --workflow {workflow}")

    def may_see(self, workflow: str) -> bool:
        return self.key is None or self.key.allows(workflow)

    def with_user(self, user: str | None) -> Caller:
        """The same caller acting for ``user`` (an OpenAI ``user`` field), unless a header named one."""
        if user is None or self.end_user is not None:
            return self
        return dataclasses.replace(self, end_user=_check_user(user, "user"))

    def has_role(self, role: str, workflow: str) -> bool:
        """Whether the key has ``role`` (``admin`` includes ``approver``) for ``workflow``; open mode: yes."""
        if self.key is None:
            return True
        return self.key.allows(workflow) and (role in self.key.roles or "admin" in self.key.roles)

    def owns(self, key_id: str | None, end_user: str | None) -> bool:
        """Whether a run started by ``key_id`` for ``end_user`` is this caller's."""
        if self.key is None:
            return True
        return key_id == self.key.id and (self.end_user is None or self.end_user == end_user)

    def may_read_run(self, run: Any) -> bool:
        """Whether this caller may read (or cancel) ``run`` (anything with ``workflow``,
        ``key_id`` and ``end_user``, e.g. a :class:`~keel.workflows.RunRecord`)."""
        return self.may_see(run.workflow) and (self.has_role("admin", run.workflow)
                                               or self.owns(run.key_id, run.end_user))

    def may_read_approval(self, approval: Any, run: Any | None) -> bool:
        """Whether this caller may see ``approval`` (of ``run``, None if it is gone)."""
        if self.has_role("approver", approval.workflow):
            return True
        return run is not None and self.may_read_run(run)

    def _workflows(self) -> tuple[str, ...] | None:
        """The workflows this key may see (None: all, and in open mode)."""
        if self.key is None or "*" in self.key.scopes:
            return None
        return tuple(self.key.scopes)

    def run_filter(self) -> dict[str, Any]:
        """Arguments of :meth:`keel.workflows.Runs.list` (and of
        :func:`keel.workflows.runs.scope_sql`) that keep, in SQL and so before ``LIMIT``, to
        exactly the runs :meth:`may_read_run` allows: of the key's workflows, and unless it is an
        admin key, started by it (for its end user)."""
        if self.key is None:
            return {}
        if "admin" in self.key.roles:
            return {"workflows": self._workflows()}
        return {"workflows": self._workflows(), "key_id": self.key.id, "end_user": self.end_user}

    def approval_filter(self) -> dict[str, Any]:
        """Arguments of :meth:`keel.workflows.Runs.approvals` that keep to what this caller may
        see: approver and admin keys every approval of their workflows, others their own runs'."""
        if self.key is not None and ("approver" in self.key.roles or "admin" in self.key.roles):
            return {"workflows": self._workflows()}
        return self.run_filter()

    def may_read_eval(self, workflows: Iterable[str]) -> bool:
        """Whether this caller may read an eval whose workflow targets are ``workflows``: an admin
        key of each (of ``*`` when there are none); open mode: yes."""
        if self.key is None:
            return True
        names = list(workflows)
        if "admin" not in self.key.roles:
            return False
        return all(self.key.allows(w) for w in names) if names else "*" in self.key.scopes

    def identity(self, default: str) -> str:
        """Who this caller is, as a decision records it: ``key:<id> (<name>)``, then ``for <end
        user>`` (and ``via client token``); ``default`` in open mode."""
        if self.key is None:
            return default
        who = f"key:{self.key.id} ({self.key.name})"
        if self.end_user is not None:
            who += f" for {self.end_user}"
        return who + (" via client token" if self.via_token else "")

    def check_decide(self, approval: Any, run: Any | None, *, allow_requester: bool) -> None:
        """Raise 403 unless this caller may approve or reject ``approval`` (of ``run``)."""
        if self.key is None:
            return
        if run is not None and run.key_id == self.key.id:
            if allow_requester and (self.end_user is None or self.end_user == run.end_user):
                return
            raise ApiError(403, f"approval {approval.id} is for a run that API key {self.key.id} ({self.key.name}) "
                                "started, and the requester may not decide it",
                           type="permission_error", code="requester_cannot_decide",
                           hint=f"decide it with another key that has the approver role (keel keys create NAME "
                                f"--workflow {approval.workflow} --approver), or set allow_requester: true on "
                                f"node {approval.node_id!r} if the requester should confirm it")
        if not self.has_role("approver", approval.workflow):
            raise ApiError(403, f"API key {self.key.id} ({self.key.name}) may not decide approvals of workflow "
                                f"{approval.workflow!r}", type="permission_error", code="not_an_approver",
                           hint=f"use a key with the approver role: keel keys create NAME --workflow "
                                f"{approval.workflow} --approver")


def check_open_client(host: str | None) -> None:
    """Raise the 403 an open server (no keys) answers a client ``host`` that is not on loopback
    (None: no peer address known, refused too). ``keel serve`` and the UI-only app both use it."""
    if not is_loopback(host or ""):
        raise ApiError(403, "this server has no API keys, so it answers only on loopback",
                       type="permission_error", code="open_mode_loopback_only",
                       hint="create a key with `keel keys create NAME --workflow WORKFLOW` and send it")


def _check_user(user: str, field: str) -> str:
    if not user or len(user) > _MAX_USER:
        raise ApiError(400, f"{field} must be 1 to {_MAX_USER} characters", field=field,
                       hint="send a stable, opaque id of your end user (not an email)")
    return user


def authorize_decision(caller: Caller, approval: Any, runs: Any, versions: Any) -> None:
    """Raise 404 unless ``caller`` may see ``approval``, 403 unless it may decide it
    (:meth:`Caller.check_decide`); ``runs`` / ``versions`` are the store's
    :class:`~keel.workflows.Runs` and :class:`~keel.workflows.Versions`."""
    from keel.workflows import RunNotFoundError

    try:
        run = runs.get(approval.run_id)
    except RunNotFoundError:
        run = None
    if not caller.may_see(approval.workflow) or not caller.may_read_approval(approval, run):
        raise ApiError(404, f"no approval with id {approval.id!r}", type="not_found_error",
                       field="path.approval_id", hint="list the approvals you may see with GET /v1/approvals")
    allow = False
    if run is not None:
        try:
            node = versions.get(run.workflow, run.version).spec.node(approval.node_id)
            allow = approval.key == "" and bool(getattr(node, "allow_requester", False))
        except Exception:  # a version or node that is gone: no exception to the rule
            allow = False
        from keel.workflows.drafts import PREVIEW_VERSION

        if run.version == PREVIEW_VERSION:  # a canvas preview: its editor (an admin) tries it out
            allow = caller.has_role("admin", run.workflow)
    caller.check_decide(approval, run, allow_requester=allow)


def _client_token(services: Any, token: str) -> tuple[ApiKey, str]:
    """The key a client token acts with (narrowed, no roles) and its user; 401 if invalid."""
    claims = services.client_tokens.verify(token) if services.client_tokens is not None else None
    key = services.keys.active(claims.key_id) if claims is not None else None
    if claims is None or key is None:
        raise ApiError(401, "the client token is invalid, expired, or its API key was revoked",
                       type="authentication_error", field="header.Authorization", code="invalid_client_token",
                       hint="ask your app's backend for a new one (POST /v1/chatkit/sessions with its API key)")
    scopes = key.scopes if claims.workflow is None else ((claims.workflow,) if key.allows(claims.workflow) else ())
    return dataclasses.replace(key, scopes=scopes, roles=()), claims.user


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "the Authorization header is not 'Bearer <key>'", type="authentication_error",
                           field="header.Authorization", hint="send Authorization: Bearer keel_sk_...")
        return value.strip()
    return request.headers.get("x-api-key") or None


def authenticate(request: Request) -> Caller:
    """The :class:`Caller` of ``request``, or a 401/403 :class:`ApiError`."""
    services = request.app.state.keel
    token = _token(request)
    if token is not None and not token.startswith("keel_") and not services.keys.required():
        token = None  # open mode: an OpenAI SDK's placeholder api_key ("any string", docs/serve.md)
    key, token_user = None, None
    if token is not None:
        if token.startswith(CLIENT_TOKEN_PREFIX):
            key, token_user = _client_token(services, token)
        else:
            key = services.keys.verify(token)
        if key is None:
            raise ApiError(401, "the API key is unknown or revoked", type="authentication_error",
                           field="header.Authorization", code="invalid_api_key",
                           hint="create one with `keel keys create NAME --workflow WORKFLOW`")
        request.state.key_id = key.id
    elif services.keys.required():  # sticky: revoking the last key does not reopen a running server
        raise ApiError(401, "this server needs an API key", type="authentication_error",
                       field="header.Authorization", code="missing_api_key",
                       hint="send Authorization: Bearer keel_sk_... (create keys with `keel keys create`)")
    else:
        check_open_client(request.client.host if request.client else None)
    user = request.headers.get(USER_HEADER)
    if token_user is not None:
        if user is not None and user != token_user:
            raise ApiError(403, f"a client token acts for the user it was minted for; {USER_HEADER} names another",
                           type="permission_error", field=f"header.{USER_HEADER}", code="user_mismatch",
                           hint=f"drop the {USER_HEADER} header (the token names the user)")
        user = token_user
        request.state.end_user = user
    elif user is not None:
        user = _check_user(user, f"header.{USER_HEADER}")
        request.state.end_user = user
    provider_key = request.headers.get(PROVIDER_KEY_HEADER) or None
    if provider_key is not None and not services.settings.allow_provider_keys:
        raise ApiError(400, "this deployment does not accept callers' own provider keys",
                       field=f"header.{PROVIDER_KEY_HEADER}",
                       hint="drop the header, or set allow_provider_keys = true under [serve] in keel.toml")
    return Caller(key, user, provider_key, via_token=token_user is not None)


async def caller(request: Request) -> Caller:
    """:func:`authenticate` as an async dependency: on SQLite run on the event loop (one indexed
    read of a local file), not in the thread pool FastAPI uses for sync dependencies; on PostgreSQL
    on a thread (the read is a round trip, which would stall every other request of the loop),
    unless the key is cached (:meth:`~keel.operate.server.keys.Keys.cached`): then on the loop,
    with no read at all."""
    services = request.app.state.keel
    if services.store.dialect == "sqlite" or _cached(services, request):
        return authenticate(request)
    return await asyncio.to_thread(authenticate, request)


def _cached(services: Any, request: Request) -> bool:
    """Whether ``request``'s API key is in the keys' cache (authenticate then reads nothing)."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else None
    else:
        token = request.headers.get("x-api-key")
    return bool(token) and services.keys.cached(token) is not None
