"""``keel version``."""

from __future__ import annotations

import platform

import typer

from keel._version import __version__


def version(verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print Python and platform.")) -> None:
    """Print Keel's version."""
    print(f"keel {__version__}")
    if verbose:
        print(f"python {platform.python_version()} ({platform.python_implementation()})")
        print(f"platform {platform.platform()}")
