"""The python grader sandbox (issue 13, finding 10): a clean environment, no view of the parent's
environment or files under bubblewrap, and nothing a grader forks outlives its time limit.

Both modes run where they can: ``rlimits`` always, ``bubblewrap`` when ``bwrap`` works here
(CI installs it). What ``rlimits`` does not stop is asserted too, as docs/security.md says it."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.evals.graders import Graders, _sandbox, parse_grader

FAKE_KEY = "provEnv-5d2f8a1c7e3b9d4f6a0c"

BWRAP = pytest.mark.skipif(_sandbox._probe().mode != "bubblewrap", reason="bwrap does not work here")
MODES = ["rlimits", pytest.param("bubblewrap", marks=BWRAP)]

SNOOP = '''
def grade(sample, item):
    import os
    key = item["key"].encode()
    seen = []
    if item["key"] in str(dict(os.environ)):
        seen.append("os.environ")
    for pid in [p for p in os.listdir("/proc") if p.isdigit()] + [str(os.getppid())]:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if key in f.read():
                    seen.append(f"/proc/{pid}/environ")
        except OSError:
            pass
    try:
        with open(item["store"], "rb") as f:
            seen.append("store:" + f.read().decode())
    except OSError:
        pass
    raise ValueError("SEEN" + repr(sorted(set(seen))) + " ENV" + repr(sorted(os.environ)))
'''

RUN_SNOOP = """
import asyncio, json, sys
from keel.evals.graders import Graders, parse_grader

async def main():
    graders = Graders(python_workers=1)
    try:
        spec = parse_grader({"type": "python", "name": "snoop", "source": sys.argv[1]})
        r = await graders.grade(spec, item=json.loads(sys.argv[2]), sample={"output_text": ""})
    finally:
        await graders.aclose()
    print(getattr(r, "invalid", None) or r.error)

asyncio.run(main())
"""


def _snoop(tmp_path: Path, mode: str) -> tuple[list[str], list[str]]:
    """Run the snooping grader from a process (like ``keel eval``) that has a provider key in its
    environment from the start; what the grader saw, and its environment's names."""
    store = tmp_path / "keel.db"
    store.write_text("the store's bytes", encoding="utf-8")
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, _sandbox.ENV: mode}
    r = subprocess.run([sys.executable, "-c", RUN_SNOOP, SNOOP, json.dumps({"key": FAKE_KEY, "store": str(store)})],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    assert "SEEN" in out and " ENV" in out, out
    seen = ast.literal_eval(out[out.index("SEEN") + 4:out.index(" ENV")])
    names = ast.literal_eval(out[out.index(" ENV") + 4:].split(" (line")[0])
    return seen, names


@BWRAP
def test_under_bubblewrap_a_grader_sees_no_parent_environment_and_no_store(tmp_path: Path) -> None:
    seen, names = _snoop(tmp_path, "bubblewrap")
    assert seen == [], seen
    assert "OPENAI_API_KEY" not in names and "KEEL_HOME" not in names


def test_under_rlimits_the_environment_is_clean_but_the_parents_is_readable(tmp_path: Path) -> None:
    """What docs/security.md says the rlimits sandbox does not stop: the parent's /proc entry
    (its whole environment) and the user's files are readable."""
    seen, names = _snoop(tmp_path, "rlimits")
    assert "os.environ" not in seen and "OPENAI_API_KEY" not in names and "KEEL_HOME" not in names
    assert any(s.startswith("/proc/") for s in seen), seen
    assert "store:the store's bytes" in seen


FORK = '''
def grade(sample, item):
    import os, time
    if item.get("fork"):
        if os.fork() == 0:
            time.sleep(4)
            with open(item["late"], "w") as f:
                f.write("still alive after the time limit")
            os._exit(0)
        time.sleep(60)
    return 1.0
'''


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of ``pid``, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0]


def _workers_under(root: int) -> set[int]:
    """Live processes under ``root`` that run a grader worker (the worker and what it forked)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None and st[1] != "Z":
            parents[int(name)] = st[0]
    found = set()
    for pid in parents:
        p = pid
        while p in parents and p != root:
            p = parents[p]
        if p == root:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"worker.py" in f.read():
                        found.add(pid)
            except OSError:
                pass
    return found


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] != "Z"


@pytest.mark.parametrize("mode", MODES)
async def test_what_a_grader_forks_dies_at_the_time_limit(mode: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_sandbox.ENV, mode)
    late = tmp_path / "late.txt"
    graders = Graders(python_workers=1)
    spec = parse_grader({"type": "python", "name": "forker", "source": FORK, "timeout_seconds": 1})
    try:
        assert (await graders.grade(spec, item={}, sample={"output_text": ""})).score == 1.0
        before = _workers_under(os.getpid())
        assert before, "no worker process found"
        started = time.monotonic()
        grading = asyncio.ensure_future(graders.grade(spec, item={"fork": True, "late": str(late)},
                                                      sample={"output_text": ""}))
        forked: set[int] = set()
        while not grading.done() and not forked:  # the worker and its child, seen while it runs
            forked = _workers_under(os.getpid()) - before
            await asyncio.sleep(0.05)
        r = await grading
        assert "timed out after 1 s" in r.error
        assert forked, "the forked child was never seen"
        for _ in range(30):  # SIGKILL is delivered at once; reaping may take a moment
            if not any(_alive(p) for p in before | forked):
                break
            await asyncio.sleep(0.05)
        assert not any(_alive(p) for p in before | forked), "a grader process outlived the time limit"
        await asyncio.sleep(max(0.0, started + 5.5 - time.monotonic()))  # past the child's 4 s sleep
        assert not late.exists(), late.read_text()
    finally:
        await graders.aclose()


def test_an_unknown_sandbox_mode_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from keel.errors import ConfigError

    monkeypatch.setenv(_sandbox.ENV, "docker")
    with pytest.raises(ConfigError) as e:
        _sandbox.current()
    assert "KEEL_GRADER_SANDBOX" in e.value.hint


def _fake_python(root: Path) -> tuple[Path, Path]:
    """A Python installed with ``--prefix=$HOME`` (``root`` is the home folder): its binary,
    its site-packages, and a KEEL_HOME beside them. Returns (executable, site-packages)."""
    exe = root / "bin" / "python3.11"
    site_packages = root / "lib" / "python3.11" / "site-packages"
    for d in (exe.parent, site_packages, root / "include", root / ".keel"):
        d.mkdir(parents=True, exist_ok=True)
    exe.write_text("")
    return exe, site_packages


def test_a_python_under_home_does_not_bring_home_into_the_sandbox(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 review: binding two levels above the real Python bound ``$HOME`` itself when
    Python's prefix is the home folder, and KEEL_HOME with it."""
    home = tmp_path / "home"
    exe, site_packages = _fake_python(home)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KEEL_HOME", str(home / ".keel"))
    for name in ("prefix", "base_prefix", "exec_prefix", "base_exec_prefix"):
        monkeypatch.setattr(sys, name, str(home))
    monkeypatch.setattr(sys, "executable", str(exe))
    import site

    monkeypatch.setattr(site, "getsitepackages", lambda: [str(site_packages)])
    dirs = _sandbox._python_dirs()
    assert dirs == sorted([str(home / "bin"), str(home / "lib"), str(site_packages)])
    for d in dirs:
        assert not (home / ".keel").is_relative_to(d) and not home.is_relative_to(d), d
    args = _sandbox._bwrap_args()
    bound = {args[i + 1] for i, a in enumerate(args) if a in ("--ro-bind", "--bind", "--ro-bind-try")}
    assert str(home) not in bound and str(tmp_path) not in bound
    assert bound >= set(dirs)


def test_a_folder_holding_keel_home_or_home_is_never_bound(tmp_path: Path) -> None:
    """KEEL_HOME inside the Python install's lib folder, and a venv whose real Python lives in
    the home folder: the folders that hold them stay out; the narrower ones go in."""
    py = tmp_path / "opt" / "py"
    exe, site_packages = _fake_python(py)
    keel_home = py / "lib" / "keel-state"
    keel_home.mkdir()
    dirs = _sandbox._python_dirs(prefixes=[str(py)], executable=str(exe), site_dirs=[str(site_packages)],
                                 private=[str(tmp_path / "home"), str(keel_home)])
    assert str(py / "lib") not in dirs and str(py) not in dirs
    assert dirs == sorted([str(py / "bin"), str(site_packages)])

    home = tmp_path / "home"
    real_exe, _ = _fake_python(home / ".pyenv")
    venv = home / "proj" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {real_exe.parent}\n")
    (venv / "bin" / "python").symlink_to(real_exe)
    venv_site = venv / "lib" / "python3.11" / "site-packages"
    venv_site.mkdir(parents=True)
    dirs = _sandbox._python_dirs(prefixes=[str(venv), str(home / ".pyenv")], executable=str(venv / "bin" / "python"),
                                 site_dirs=[str(venv_site)], private=[str(home), str(home / ".keel")])
    assert dirs == sorted([str(venv / "bin"), str(venv / "lib"), str(venv / "pyvenv.cfg"), str(venv_site),
                           str(home / ".pyenv" / "bin"), str(home / ".pyenv" / "lib")])


SEE_PREFIX = '''
def grade(sample, item):
    import os
    raise ValueError("LISTED" + repr(sorted(os.listdir(item["prefix"]))))
'''


@BWRAP
async def test_under_bubblewrap_a_prefix_that_is_home_is_not_mounted_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real interpreter, with HOME pointed at its prefix: the grader still runs, and sees the
    prefix's lib and bin folders, not the rest of it (``include``, which the old bind showed)."""
    monkeypatch.setenv(_sandbox.ENV, "bubblewrap")
    real = os.path.realpath(sys.base_prefix)
    if not os.path.isdir(os.path.join(real, "include")) or real == "/usr":
        pytest.skip("this interpreter's prefix has no include folder of its own")
    monkeypatch.setenv("HOME", real)
    graders = Graders(python_workers=1)
    spec = parse_grader({"type": "python", "name": "see", "source": SEE_PREFIX})
    try:
        r = await graders.grade(spec, item={"prefix": real}, sample={"output_text": ""})
    finally:
        await graders.aclose()
    said = getattr(r, "invalid", None) or r.error
    listed = ast.literal_eval(said.split("LISTED", 1)[1].split("]")[0] + "]")
    assert "lib" in listed and "include" not in listed, listed
