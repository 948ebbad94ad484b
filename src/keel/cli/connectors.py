"""``keel connectors ...``: the registry of MCP servers workflows may use, with their
credentials kept encrypted in the store (docs/connectors.md)."""

from __future__ import annotations

import json
import os
import re

import typer

EPILOG = """Examples:

  keel connectors add github --server 'stdio:github-mcp-server stdio' --env GITHUB_TOKEN --tool search_issues --approve 'search_issues=never' --workflow 'support-*'

  keel connectors add crm --server https://crm.example.com/mcp --header 'Authorization=Bearer ${CRM_TOKEN}'

  keel connectors add notes --server https://notes.example.com/mcp --oauth

  keel connectors login notes

  keel connectors add weather --http https://api.weather.example --header 'Authorization=Bearer ${WEATHER_TOKEN}'

  keel connectors test github

  keel connectors list

A spec then names it:  mcp: [{connector: github}]"""

app = typer.Typer(help="Manage connectors: named MCP servers with encrypted credentials, their tools, "
                       "approval policies and the workflows that may use them.",
                  no_args_is_help=True, epilog=EPILOG)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _registry():
    from keel.connectors import Connectors
    from keel.store import open_store

    return Connectors(open_store())


def _expand(text: str, what: str) -> str:
    from keel.connectors import ConnectorError

    def sub(m: re.Match) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            raise ConnectorError(f"{what} refers to ${{{m.group(1)}}}, which is not set in the environment",
                                 hint=f"export {m.group(1)}=... before running this command")
        return value
    return _VAR.sub(sub, text)


def _pairs(items: list[str], option: str, *, bare_from_env: bool) -> dict[str, str]:
    from keel.connectors import ConnectorError

    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not name:
            raise ConnectorError(f"{option} {item!r} names nothing", hint=f"write {option} NAME=VALUE")
        if not sep:
            if not bare_from_env:
                raise ConnectorError(f"{option} {item!r} has no value", hint=f"write {option} 'NAME=VALUE' "
                                     "(${VAR} takes a value from the environment)")
            value = os.environ.get(name)
            if value is None:
                raise ConnectorError(f"{option} {name} takes its value from the environment, where {name} is "
                                     "not set", hint=f"export {name}=... first, or write {option} {name}=VALUE")
        out[name] = _expand(value, f"{option} {name}")
    return out


@app.command("add", epilog=EPILOG)
def add(name: str = typer.Argument(..., help="What specs write: mcp: [{connector: NAME}] (a-z, 0-9, -, _)."),
        server: str = typer.Option(None, "--server", help="`stdio:COMMAND ARGS` or an http(s):// streamable-HTTP URL."),
        http: str = typer.Option(None, "--http", help="Instead of --server: an HTTP API's base URL, for the built-in "
                                 "HTTP request tool (a spec writes http: {connector: NAME}); its --header "
                                 "credentials go with every call to --host."),
        host: list[str] = typer.Option([], "--host",  # noqa: B008
                                       help="With --http: a host the tool may call with these credentials "
                                       "(api.example.com, *.example.com, 127.0.0.1:8080; default: --http's "
                                       "host and port). Repeatable."),
        method: list[str] = typer.Option([], "--method",  # noqa: B008
                                         help="With --http: an HTTP method the tool may use (default: GET). "
                                         "Repeatable."),
        env: list[str] = typer.Option([], "--env",  # noqa: B008
                                       help="Environment variable for a stdio: server: NAME (value from "
                                       "your environment now) or NAME=VALUE; ${VAR} in VALUE is read from your "
                                       "environment. Stored encrypted. Repeatable."),
        header: list[str] = typer.Option([], "--header",  # noqa: B008
                                       help="Header for an HTTP server: NAME=VALUE, e.g. "
                                          "'Authorization=Bearer ${TOKEN}' (single quotes keep the token out of "
                                          "your shell history). Stored encrypted. Repeatable."),
        tool: list[str] = typer.Option([], "--tool",  # noqa: B008
                                       help="A tool workflows may call (default: every tool the "
                                        "server lists). Repeatable."),
        approve: list[str] = typer.Option([], "--approve",  # noqa: B008
                                       help="TOOL=always|never: whether a call needs a person's "
                                           "approval; '*=never' sets the others (default: always). Repeatable."),
        workflow: list[str] = typer.Option([], "--workflow",  # noqa: B008
                                       help="Workflow name or pattern (support-*) that may "
                                            "use it (default: every workflow). Repeatable."),
        key: list[str] = typer.Option([], "--key",  # noqa: B008
                                      help="API key (id or name, or a pattern) whose runs may use it (default: "
                                      "every key; runs started without a key always may). Repeatable."),
        timeout: float = typer.Option(60, "--timeout", min=0.001, help="Seconds one tool call may take."),
        oauth: bool = typer.Option(False, "--oauth", help="The HTTP server wants OAuth 2.1 (the MCP authorization "
                                   "spec): log in afterwards with `keel connectors login NAME`; Keel registers "
                                   "itself, keeps the tokens encrypted and refreshes them."),
        scope: str = typer.Option(None, "--scope", help="With --oauth: the scopes to ask for, space-separated "
                                  "(default: those the server's metadata names)."),
        replace: bool = typer.Option(False, "--replace", help="Replace a connector of that name.")) -> None:
    """Add (or with --replace, change) a connector. Credentials are encrypted with KEEL_SECRET_KEY, or a key
    file made under KEEL_HOME; nothing prints them back."""
    from pydantic import ValidationError

    from keel.connectors import Connector, ConnectorError, Credentials
    from keel.workflows.mcp_tools import check_server

    if (server is None) == (http is None):
        raise ConnectorError("give --server (an MCP server) or --http (an HTTP API for the http tool), one of them",
                             hint="e.g. --server 'stdio:python my_server.py', or --http https://api.example.com")
    if http is None and (host or method):
        raise ConnectorError("--host and --method are for an --http connector",
                             hint="an MCP server's tools are limited with --tool")
    kind = "mcp"
    if http is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(http)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectorError(f"--http {http!r} is not an http(s):// URL", hint="e.g. --http https://api.example.com")
        bad_methods = [m for m in method if m.upper() not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")]
        if bad_methods:
            raise ConnectorError(f"--method {bad_methods[0]} is not an HTTP method the tool can use",
                                 hint="use GET, HEAD, POST, PUT, PATCH or DELETE")
        if env or oauth or tool or approve:
            raise ConnectorError("--env, --oauth, --tool and --approve are for MCP servers",
                                 hint="give an --http connector --header credentials, --host and --method; its "
                                      "approval is the node's (approval: {http_request: always})")
        kind, server = "http", http
        host = host or [f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname]
    problem = None if kind == "http" else check_server(server)
    if problem:
        raise ConnectorError(f"--server: {problem}",
                             hint="e.g. --server 'stdio:python my_server.py' or --server http://127.0.0.1:8000/mcp")
    approval = _pairs(approve, "--approve", bare_from_env=False)
    bad = {t: p for t, p in approval.items() if p not in ("always", "never")}
    if bad:
        raise ConnectorError(f"--approve {next(iter(bad))}={next(iter(bad.values()))}: the policy is neither "
                             "always nor never", hint="write --approve TOOL=always or --approve TOOL=never")
    if server.startswith("stdio:") and header:
        raise ConnectorError("--header is for an HTTP server, and this one is stdio:",
                             hint="give a stdio: server its credentials with --env NAME")
    if not server.startswith("stdio:") and env:
        raise ConnectorError("--env is for a stdio: server, and this one is an HTTP URL",
                             hint="give an HTTP server its credentials with --header NAME=VALUE")
    if (oauth or scope) and server.startswith("stdio:"):
        raise ConnectorError("--oauth is for an HTTP server, and this one is stdio:",
                             hint="give a stdio: server its credentials with --env NAME")
    if scope and not oauth:
        raise ConnectorError("--scope is for an OAuth connector", hint="add --oauth")
    from keel.connectors.registry import OAuthSettings

    try:
        c = Connector(name=name, server=server, kind=kind, hosts=host if kind == "http" else [],
                      methods=[m.upper() for m in method] or ["GET"], tools=tool or None, approval=approval,
                      workflows=workflow or ["*"], keys=key or ["*"], timeout=timeout,
                      oauth=OAuthSettings(scope=scope) if oauth else None,
                      credentials=Credentials(env=_pairs(env, "--env", bare_from_env=True),
                                              headers=_pairs(header, "--header", bare_from_env=False)))
    except ValidationError as e:
        raise ConnectorError(f"connector name {name!r} is not allowed: {e.errors()[0]['msg']}",
                             hint="use lower-case letters, digits, - and _ (at most 64)") from None
    registry = _registry()
    existed = replace and registry.find(name) is not None
    if existed and oauth:  # the login survives a change of allow-list or policy, not of server
        old = registry.get(name, secrets=True)
        if old.server == server and old.oauth is not None:
            c.credentials.oauth = old.credentials.oauth
    registry.add(c, replace=replace)
    what = ", ".join(f"{k} {', '.join(v)}" for k, v in (("env", sorted(c.credentials.env)),
                                                         ("headers", sorted(c.credentials.headers))) if v)
    typer.echo(f"{'changed' if existed else 'added'} connector {name}" + (f" (credentials: {what}, encrypted)"
                                                                          if what else ""))
    if oauth and not c.credentials.oauth.get("tokens"):
        typer.echo(f"log in: keel connectors login {name}")
    else:
        typer.echo(f"check it: keel connectors test {name}")


@app.command("login")
def login(name: str = typer.Argument(..., help="Connector name (added with --oauth)."),
          port: int = typer.Option(0, "--port", min=0, max=65535, help="Port on 127.0.0.1 for the redirect "
                                   "(default: any free one)."),
          browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the URL in a browser "
                                       "(it is printed either way)."),
          timeout: float = typer.Option(300, "--timeout", min=0.001, help="Seconds to wait for the login.")) -> None:
    """Log an OAuth connector in: Keel finds the server's authorization server, registers itself, prints the
    login URL (and opens it), takes the answer on a listener on 127.0.0.1 and keeps the tokens encrypted.
    Run it again when a run says the login expired or was revoked."""
    import asyncio

    from keel.connectors.oauth import login as do_login

    def show(url: str) -> None:
        typer.echo(f"open this URL to log connector {name} in:\n{url}", err=False)

    count = asyncio.run(do_login(_registry(), name, port=port, timeout=timeout, show_url=show,
                                 open_browser=browser))
    typer.echo(f"logged in connector {name} ({count} tools); tokens stored encrypted")
    typer.echo(f"check it: keel connectors test {name}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List connectors: server, tools allowed, workflows allowed, and the names (never values) of credentials."""
    connectors = _registry().list()
    if as_json:
        typer.echo(json.dumps([c.public() for c in connectors], indent=2))
        return
    if not connectors:
        typer.echo("no connectors (add one: keel connectors add NAME --server ...)")
        return
    for c in connectors:
        d = c.public()
        names = d["env"] + d["headers"]
        if c.oauth is not None:
            names.append("OAuth (" + ("logged in" if c.oauth_status.get("logged_in") else "not logged in") + ")")
        creds = ", ".join(names) or "none"
        what = (f"http tool: {', '.join(c.hosts)} {'/'.join(c.methods)}" if c.kind == "http"
                else f"tools: {', '.join(c.tools) if c.tools else 'all'}")
        typer.echo(f"{c.name}\t{c.server}\t{what}\t"
                   f"workflows: {', '.join(c.workflows)}\tkeys: {', '.join(c.keys)}\tcredentials: {creds}")


@app.command("show")
def show(name: str = typer.Argument(..., help="Connector name.")) -> None:
    """Show one connector as JSON, credentials by name only."""
    typer.echo(json.dumps(_registry().get(name).public(), indent=2))


@app.command("test")
def test(name: str = typer.Argument(..., help="Connector name."),
         timeout: float = typer.Option(30, "--timeout", min=0.001, help="Seconds to wait for the server.")) -> None:
    """Start (stdio) or reach (HTTP) the connector's server with its credentials and list its tools: which ones
    workflows may call, and which need approval. Fails with the server's own error when it will not start or
    refuses the credentials."""
    import asyncio

    from keel.connectors.probe import probe

    registry = _registry()
    c = registry.get(name, secrets=True)
    if c.kind == "http":
        from keel.connectors.probe import probe_http

        status = asyncio.run(probe_http(c, timeout=timeout))
        typer.echo(f"connector {name}: ok, {c.server} answered HTTP {status}; the http tool may call "
                   f"{', '.join(c.hosts)} with {', '.join(c.methods)}")
        return
    tools = asyncio.run(probe(c, timeout=timeout, registry=registry))
    typer.echo(f"connector {name}: ok, {len(tools)} tools")
    for t in tools:
        state = ("allowed" if t.allowed else "not allowed") + (", needs approval" if t.policy == "always" else "")
        typer.echo(f"  {t.name}\t{state}\t{t.description.splitlines()[0] if t.description else ''}")


@app.command("remove")
def remove(name: str = typer.Argument(..., help="Connector name.")) -> None:
    """Remove a connector and its credentials. Published workflows that name it fail at that node."""
    _registry().remove(name)
    typer.echo(f"removed connector {name}")
