"""The ``keel`` command line. Each command lives in its own module; this one wires them up
and turns Keel's errors into one clear line and an exit code (never a traceback)."""

from __future__ import annotations

import sys

import typer

from keel.cli import approvals, chat, context, doctor, run, runs, version, workflows
from keel.cli import connectors as connectors_cli
from keel.cli import datasets as datasets_cli
from keel.cli import distill as distill_cli
from keel.cli import evals as evals_cli
from keel.cli import init as init_cli
from keel.cli import keys as keys_cli
from keel.cli import mcp as mcp_cli
from keel.cli import memory as memory_cli
from keel.cli import models as models_cli
from keel.cli import optimize as optimize_cli
from keel.cli import router as router_cli
from keel.cli import serve as serve_cli
from keel.cli import store as store_cli
from keel.cli import up as up_cli
from keel.cli import worker as worker_cli
from keel.errors import KeelError

__all__ = ["app", "main"]

app = typer.Typer(
    name="keel",
    help=(
        "Keel: build, run, evaluate and operate AI agents on your own machines, with any model.\n\n"
        "State lives in KEEL_HOME (default: ~/.local/share/keel). Configure models with "
        "environment variables (OPENAI_API_KEY, OLLAMA_HOST, ...), a .env file or keel.toml; "
        "run `keel doctor` to check everything."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("version")(version.version)
app.command("doctor")(doctor.doctor)
app.command("chat", epilog=chat.EPILOG)(chat.chat)
app.command("run", epilog=run.EPILOG)(run.run)
app.command("init", epilog=init_cli.EPILOG)(init_cli.init)
app.add_typer(workflows.app, name="workflows")
app.add_typer(runs.app, name="runs")
app.add_typer(approvals.app, name="approvals")
app.add_typer(context.app, name="context")
app.add_typer(datasets_cli.app, name="datasets")
app.add_typer(evals_cli.app, name="eval")
app.add_typer(optimize_cli.app, name="optimize")
app.add_typer(distill_cli.app, name="distill")
app.add_typer(router_cli.app, name="router")
app.command("serve", epilog=serve_cli.EPILOG)(serve_cli.serve)
app.add_typer(keys_cli.app, name="keys")
app.add_typer(connectors_cli.app, name="connectors")
app.add_typer(store_cli.app, name="store")
app.add_typer(memory_cli.app, name="memory")
app.add_typer(models_cli.app, name="models")
app.command("mcp", epilog=mcp_cli.EPILOG)(mcp_cli.mcp)
app.command("up", epilog=up_cli.EPILOG)(up_cli.up)
app.command("worker", epilog=worker_cli.EPILOG)(worker_cli.worker)


def main() -> None:
    """Entry point of the ``keel`` script."""
    try:
        app()
    except KeelError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  fix: {e.hint}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
