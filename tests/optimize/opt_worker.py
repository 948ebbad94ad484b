"""Runs ``keel`` (the real CLI entry point) in a worker process with the scripted models of
:mod:`tests.optimize.scripted_task` installed: ``python -m tests.optimize.opt_worker optimize ...``."""

from __future__ import annotations

import sys

from tests.optimize.scripted_task import install

if __name__ == "__main__":
    install()
    from keel.cli import main

    sys.argv = ["keel", *sys.argv[1:]]
    main()
