"""Where a python grader's worker runs: bubblewrap when it works here, resource limits always.

Two modes (``KEEL_GRADER_SANDBOX``: ``auto``, the default, ``bubblewrap`` or ``rlimits``):

- ``bubblewrap``: the worker runs under ``bwrap`` (Debian package ``bubblewrap``) in new
  user, PID, mount, network, IPC and UTS namespaces, with no capabilities. It sees the
  Python install (each prefix's ``lib``, the site-packages folders and the executable's
  folder; never a folder that is or contains ``$HOME`` or ``KEEL_HOME``) and the system's
  ``/usr`` read-only, a fresh ``/proc`` of its own PID
  namespace, a private ``/dev`` and an empty ``/tmp`` (its working directory): not the
  parent's environment or files, not ``KEEL_HOME``, not the network. When the worker is
  killed, the kernel kills everything else in its PID namespace.
- ``rlimits``: the worker runs as the user running Keel, with a clean environment, in a
  fresh temporary directory, in its own session and process group. It can read whatever
  that user can read, including ``/proc/<keel's pid>/environ`` and the store.

In both modes the worker limits itself before loading the grader (``RLIMIT_AS``,
``RLIMIT_CPU``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_NPROC``, no core files), and
at the time limit Keel kills the worker's whole process group. ``auto`` uses bubblewrap
when ``bwrap`` is on ``PATH`` and a probe run succeeds, else rlimits; ``bubblewrap`` refuses
to run graders without it. See docs/security.md, "Python graders sandbox".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from keel.errors import ConfigError

__all__ = ["ENV", "Sandbox", "clean_env", "command", "current", "limits"]

ENV = "KEEL_GRADER_SANDBOX"
_MODES = ("auto", "bubblewrap", "rlimits")
_PROBE_TIMEOUT = 20.0
_NPROC = 64
_NOFILE = 256
_INSIDE = "/keel"
"""Where the worker file is mounted under bubblewrap."""


@dataclass(frozen=True)
class Sandbox:
    mode: str
    """``bubblewrap`` or ``rlimits``: what graders run under."""
    why: str
    """One line for ``keel doctor`` and the docs: why this mode."""
    bwrap: str | None = None


_probed: dict[str, Sandbox] = {}


def current() -> Sandbox:
    """The sandbox python graders get in this process (``bwrap`` is probed once per process)."""
    want = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if want not in _MODES:
        raise ConfigError(f"{ENV}={want!r} is not a sandbox mode",
                          hint=f"set {ENV} to one of {', '.join(_MODES)} (or unset it for auto)")
    if want == "rlimits":
        return Sandbox("rlimits", f"{ENV}=rlimits")
    found = _probed.get(want)
    if found is None:
        found = _probed[want] = _probe()
    if want == "bubblewrap" and found.mode != "bubblewrap":
        raise ConfigError(f"{ENV}=bubblewrap, but {found.why}",
                          hint="install bubblewrap (apt-get install bubblewrap) where user namespaces are "
                               f"allowed, or set {ENV}=rlimits to accept the weaker sandbox")
    return found


def _probe() -> Sandbox:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Sandbox("rlimits", "bwrap is not installed (Debian package bubblewrap)")
    argv = [bwrap, *_bwrap_args(), sys.executable, "-I", "-c", "pass"]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=_PROBE_TIMEOUT, env=clean_env("/tmp"),
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Sandbox("rlimits", f"bwrap failed to start: {e}")
    if r.returncode != 0:
        said = r.stderr.decode(errors="replace").strip().splitlines()
        return Sandbox("rlimits", f"bwrap cannot run here ({said[-1] if said else f'exit {r.returncode}'})")
    return Sandbox("bubblewrap", f"bwrap at {bwrap} works here", bwrap)


def _private_dirs() -> list[str]:
    """Folders no bind may expose: the user's home, ``KEEL_HOME`` (the store's folder) and
    Keel's default home."""
    found = [str(Path.home())]
    home = os.environ.get("KEEL_HOME")
    if home:
        found.append(os.path.expanduser(home))
    try:
        import platformdirs

        found.append(platformdirs.user_data_dir("keel", appauthor=False))
    except ImportError:  # pragma: no cover - a dependency of keel
        pass
    return found


def _exposes(directory: str, private: list[str]) -> bool:
    """Whether binding ``directory`` shows one of ``private`` (it is one, or contains one)."""
    mine = {directory, os.path.realpath(directory)}
    for p in private:
        for q in {os.path.abspath(p), os.path.realpath(p)}:
            if any(q == d or q.startswith(d.rstrip("/") + "/") for d in mine):
                return True
    return False


def _python_dirs(*, prefixes: list[str] | None = None, executable: str | None = None,
                 site_dirs: list[str] | None = None, private: list[str] | None = None) -> list[str]:
    """What the interpreter needs, and no more: each prefix's ``lib``/``lib64`` and
    ``pyvenv.cfg``, the site-packages folders and the executable's folder (the link's and the
    real file's). Never ``/``, and never a folder that is or contains one of ``private``
    (default :func:`_private_dirs`): a Python installed under ``$HOME`` must not bring the
    home folder, or ``KEEL_HOME`` under it, into the sandbox. The arguments default to this
    interpreter's (tests pass fake ones)."""
    import site

    if prefixes is None:
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    executable = sys.executable if executable is None else executable
    site_dirs = site.getsitepackages() if site_dirs is None else site_dirs
    private = _private_dirs() if private is None else private
    wanted: set[str] = set()
    for prefix in {p for p in prefixes if p} | {os.path.realpath(p) for p in prefixes if p}:
        wanted.update(os.path.join(prefix, name) for name in ("lib", "lib64", "pyvenv.cfg"))
    wanted.update(site_dirs)
    if executable:
        wanted.update({os.path.dirname(executable), os.path.dirname(os.path.realpath(executable))})
    return sorted(d for d in wanted
                  if d and d != "/" and os.path.exists(d) and not _exposes(d, private))


def _bwrap_args() -> list[str]:
    args = ["--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]
    private = _private_dirs()
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top) and not _exposes(top, private):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for d in _python_dirs(private=private):
        args += ["--ro-bind", d, d]
    worker = Path(__file__).with_name("_python_worker.py")
    args += ["--ro-bind", str(worker), f"{_INSIDE}/worker.py",
             "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp"]
    return args


def clean_env(workdir: str) -> dict[str, str]:
    """The worker's whole environment: nothing of the parent's but ``PATH`` and the locale."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": workdir, "TMPDIR": workdir, "PYTHONHASHSEED": "0",
            # One thread each: numerical libraries would otherwise start a thread per core.
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(sandbox: Sandbox, worker: Path) -> tuple[list[str], bool]:
    """The worker's argv, and whether it runs in a private ``/tmp`` (else in a fresh host directory)."""
    if sandbox.mode == "bubblewrap":
        assert sandbox.bwrap is not None
        return [sandbox.bwrap, *_bwrap_args(), sys.executable, "-I", f"{_INSIDE}/worker.py"], True
    return [sys.executable, "-I", str(worker)], False


def limits(*, memory_mb: int, cpu_seconds: int) -> dict[str, int]:
    """The resource limits the worker sets on itself before it loads the grader."""
    return {"memory_mb": memory_mb, "cpu_seconds": cpu_seconds, "fsize_mb": memory_mb,
            "nofile": _NOFILE, "nproc": _NPROC}
