"""Time to install each extra of Keel from a clean virtual environment (issue 14).

Each extra is installed with ``pip install -e REPO[EXTRA]`` into a new venv with an empty
pip cache of its own (so downloads are cold, as on a newcomer's machine), with
``PIP_FIND_LINKS`` set as ``.ci/run`` sets it: the per-machine wheel cache
(``$KEEL_WHEEL_CACHE``, default ``~/.cache/keel-wheels``) before the machine's own
find-links. ``embeddings`` and ``all`` are installed with ``torch==2.13.0`` as the README
says. ``local (first build)`` times the one-time build of the portable llama-cpp-python
wheel (``scripts/build-local-wheel.sh`` into a temporary folder), what the first
``local`` install on a machine costs.

    python benchmarks/install_extras.py [EXTRA ...] [--build] [--repo PATH]

It prints one Markdown row per extra (seconds, and the machine's load average at the
start, as other work on a shared machine slows pip and compilers alike).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ["server", "context", "embeddings", "local", "otlp", "postgres"]
TORCH = "torch==2.13.0"


def _find_links() -> str:
    cache = os.environ.get("KEEL_WHEEL_CACHE") or str(Path.home() / ".cache" / "keel-wheels")
    machine = os.environ.get("PIP_FIND_LINKS", "")
    return " ".join(p for p in (cache, machine) if p)


def _timed(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, int]:
    start = time.perf_counter()
    with log.open("ab") as out:
        rc = subprocess.call(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return time.perf_counter() - start, rc


def install(extra: str, repo: Path, log: Path) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix=f"keel-install-{extra}-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.check_call([sys.executable, "-m", "venv", str(venv)])
        env = {**os.environ, "PIP_CACHE_DIR": str(Path(tmp) / "pip-cache"),
               "PIP_FIND_LINKS": _find_links(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        pkgs = ([TORCH] if extra in ("embeddings", "all") else []) + ["-e", f"{repo}[{extra}]"]
        return _timed([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *pkgs], env, log)


def build(repo: Path, log: Path) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="keel-build-local-") as tmp:
        env = {**os.environ, "KEEL_WHEEL_CACHE": tmp, "PIP_CACHE_DIR": str(Path(tmp) / "pip-cache")}
        return _timed(["bash", str(repo / "scripts" / "build-local-wheel.sh")], env, log)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("extras", nargs="*", default=EXTRAS)
    ap.add_argument("--build", action="store_true", help="also time the one-time llama-cpp-python build")
    ap.add_argument("--repo", type=Path, default=REPO)
    ap.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / "keel-install-extras.log")
    args = ap.parse_args()
    print(f"| extra | seconds | load average at start | pip exit |   (log: {args.log})")
    print("|---|---:|---:|---:|")
    runs = [(e, lambda e=e: install(e, args.repo, args.log)) for e in args.extras]
    if args.build:
        runs.append(("local (first build of llama-cpp-python)", lambda: build(args.repo, args.log)))
    for name, run in runs:
        load = os.getloadavg()[0]
        seconds, rc = run()
        print(f"| {name} | {seconds:.0f} | {load:.1f} | {rc} |", flush=True)


if __name__ == "__main__":
    main()
