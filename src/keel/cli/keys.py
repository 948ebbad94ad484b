"""``keel keys ...``: API keys of ``keel serve`` (stored hashed, scoped to workflows, revocable)."""

from __future__ import annotations

import json
import time

import typer

EPILOG = """Examples:

  keel keys create support-web --workflow support --daily-tokens 200000 --user-daily-tokens 20000

  keel keys create admin --workflow '*' --admin

  keel keys create refunds-desk --workflow refunds --approver

  keel keys list

  keel keys revoke a1b2c3d4"""

app = typer.Typer(help="Create, list and revoke API keys for `keel serve`.", no_args_is_help=True,
                  epilog=EPILOG)


def _keys():
    from keel.operate.server.keys import Keys
    from keel.store import open_store

    return Keys(open_store())


def _doc(k: object) -> dict:
    from dataclasses import asdict

    return asdict(k)  # type: ignore[call-overload]


@app.command("create", epilog=EPILOG)
def create(name: str = typer.Argument(..., help="A label for the key (who or what uses it)."),
           workflow: list[str] = typer.Option([], "--workflow", "-w",  # noqa: B008
                                              help="A workflow the key may call (repeatable; '*' for all)."),
           daily_tokens: int | None = typer.Option(None, "--daily-tokens", min=0,
                                                   help="Cap on tokens per UTC day for the whole key."),
           daily_cost: float | None = typer.Option(None, "--daily-cost", min=0,
                                                   help="Cap on cost (USD) per UTC day for the whole key."),
           user_daily_tokens: int | None = typer.Option(None, "--user-daily-tokens", min=0,
                                                        help="Cap on tokens per end user (X-Keel-User) per day."),
           user_daily_cost: float | None = typer.Option(None, "--user-daily-cost", min=0,
                                                        help="Cap on cost (USD) per end user per day."),
           approver: bool = typer.Option(False, "--approver",
                                         help="The key may decide approvals of its workflows (not of runs it "
                                              "started itself, unless the node allows requesters)."),
           admin: bool = typer.Option(False, "--admin",
                                      help="The key may read every caller's runs, traces, approvals and evals "
                                           "in its workflows, and decide approvals."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON (with the secret).")) -> None:
    """Create a key. Its secret is printed once and never stored: copy it now.

    Without a role a key runs its workflows and reads only the runs it started (those of the
    end user it names, when it names one)."""
    roles = [r for r, on in (("approver", approver), ("admin", admin)) if on]
    key, secret = _keys().create(name, scopes=workflow, daily_tokens=daily_tokens, daily_cost_usd=daily_cost,
                                 user_daily_tokens=user_daily_tokens, user_daily_cost_usd=user_daily_cost,
                                 roles=roles)
    if as_json:
        print(json.dumps({**_doc(key), "secret": secret}))
        return
    print(secret)
    role = f" as {' and '.join(key.roles)}" if key.roles else ""
    print(f"key {key.id} ({key.name}) for {', '.join(key.scopes)}{role}: send it as 'Authorization: Bearer <key>'. "
          "It is shown only once.", flush=True)


@app.command("list", epilog=EPILOG)
def list_(all_: bool = typer.Option(False, "--all", help="Include revoked keys."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List keys (never their secrets): id, name, scope, roles, caps, last use."""
    rows = _keys().list(include_revoked=all_)
    if as_json:
        print(json.dumps([_doc(k) for k in rows]))
        return
    if not rows:
        print("no API keys: the server answers only local clients (create one: `keel keys create NAME -w WORKFLOW`)")
    for k in rows:
        caps = [f"{label} {v}" for label, v in (("tokens/day", k.daily_tokens), ("$/day", k.daily_cost_usd),
                                                ("user tokens/day", k.user_daily_tokens),
                                                ("user $/day", k.user_daily_cost_usd)) if v is not None]
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.last_used_at)) if k.last_used_at else "never used"
        state = "  REVOKED" if k.revoked_at else ""
        print(f"{k.id}  {k.name}  workflows: {', '.join(k.scopes)}  roles: {', '.join(k.roles) or 'none'}  "
              f"caps: {', '.join(caps) or 'none'}  "
              f"{used}{state}")


@app.command("revoke", epilog=EPILOG)
def revoke(key_id: str = typer.Argument(..., help="The key's id (from `keel keys list`).")) -> None:
    """Revoke a key: requests with it get 401 from now on.

    Revoking the last active key does not reopen a running server: it keeps requiring
    keys until it restarts, and restarts in open mode (loopback only, no key)."""
    import sys

    keys = _keys()
    was_active = keys.get(key_id).revoked_at is None
    key = keys.revoke(key_id)
    print(f"revoked key {key.id} ({key.name})")
    if was_active and not keys.any_active():
        print("warning: that was the last active key. A running `keel serve` keeps requiring keys (every "
              "request now gets 401) until it restarts; restarted, it runs in open mode (no key needed, loopback "
              "only). Create a key with `keel keys create NAME --workflow '*'` to keep requiring one.",
              file=sys.stderr, flush=True)
