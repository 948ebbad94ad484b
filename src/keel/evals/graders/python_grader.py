"""Python graders: the user's ``grade(sample, item)`` in worker subprocesses with limits.

Each python grader gets a small pool of long-lived workers (starting Python per
item would cost more than most graders). A worker runs in a sandbox
(:mod:`keel.evals.graders._sandbox`: bubblewrap when it works, else resource
limits, a clean environment and a fresh directory), in its own process group,
under ``RLIMIT_AS`` (``memory_mb``); when one item takes longer than
``timeout_seconds`` the whole group is killed, processes the grader forked
included. A hang, a crash (even a segfault) or a memory blow-up becomes that
item's error, and a fresh worker takes the next item.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from keel.evals.errors import GraderFailure, GraderRaised
from keel.evals.graders import _sandbox
from keel.evals.graders.specs import PythonGrader

__all__ = ["PythonGraderPool"]

_WORKER = Path(__file__).with_name("_python_worker.py")
_STARTUP_TIMEOUT = 30.0


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process, stderr: Any, workdir: str, *, wrapped: bool) -> None:
        self.proc = proc
        self.stderr = stderr
        self.workdir = workdir
        self.wrapped = wrapped
        """Under bwrap, which exits 128 + N when the worker died of signal N."""

    async def exit_code(self) -> int:
        code = await self.proc.wait()
        return 128 - code if self.wrapped and code > 128 else code

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0)
            lines = [ln for ln in self.stderr.read().decode(errors="replace").splitlines() if ln.strip()]
            return lines[-1][:300] if lines else ""
        except (OSError, ValueError):
            return ""

    async def kill(self) -> None:
        # The worker leads its own process group: what the grader forked dies with it, even
        # after the worker itself has exited (a crash leaves its children behind).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class PythonGraderPool:
    """Workers for one python grader; :meth:`grade` is safe to call concurrently."""

    def __init__(self, spec: PythonGrader, *, size: int = 2) -> None:
        self.spec = spec
        self.size = max(1, size)
        self._idle: asyncio.Queue[_Worker] | None = None
        self._started = 0
        self._all: set[_Worker] = set()

    async def _spawn(self) -> _Worker:
        sandbox = _sandbox.current()
        argv, private_tmp = _sandbox.command(sandbox, _WORKER)
        workdir = tempfile.mkdtemp(prefix="keel-grader-")
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _Worker.kill
        cpu = int(self.spec.timeout_seconds * 4) + 10
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                env=_sandbox.clean_env("/tmp" if private_tmp else workdir), cwd=workdir,
                start_new_session=True, limit=16 * 1024 * 1024,
            )
        except BaseException:
            stderr.close()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        worker = _Worker(proc, stderr, workdir, wrapped=sandbox.mode == "bubblewrap")
        self._all.add(worker)
        assert proc.stdin is not None and proc.stdout is not None
        limits = _sandbox.limits(memory_mb=self.spec.memory_mb, cpu_seconds=cpu)
        proc.stdin.write((json.dumps({"source": self.spec.source, "limits": limits}) + "\n").encode())
        try:
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), _STARTUP_TIMEOUT)
        except (TimeoutError, ConnectionError):
            line = b""
        ready = json.loads(line) if line.strip() else {"fatal": f"the worker did not start: {worker.stderr_tail()}"}
        if "fatal" in ready:
            await self._discard(worker)
            raise GraderFailure(f"python grader {self.spec.name!r}: {ready['fatal']}")
        return worker

    async def _discard(self, worker: _Worker) -> None:
        self._all.discard(worker)
        await worker.kill()

    async def _acquire(self) -> _Worker:
        if self._idle is None:
            self._idle = asyncio.Queue()
        if self._idle.empty() and self._started < self.size:
            self._started += 1
            try:
                return await self._spawn()
            except BaseException:
                self._started -= 1
                raise
        return await self._idle.get()

    def _release(self, worker: _Worker | None) -> None:
        assert self._idle is not None
        if worker is None:
            self._started -= 1
        else:
            self._idle.put_nowait(worker)

    async def grade(self, sample: dict[str, Any], item: dict[str, Any]) -> float:
        """The grader's score for one item, or :class:`GraderFailure` with the reason
        (:class:`GraderRaised` when the grader's own code raised)."""
        worker = await self._acquire()
        keep: _Worker | None = worker
        try:
            proc = worker.proc
            assert proc.stdin is not None and proc.stdout is not None
            try:
                payload = json.dumps({"sample": sample, "item": item}, default=str)
                proc.stdin.write((payload + "\n").encode())
                await proc.stdin.drain()
                line = await asyncio.wait_for(proc.stdout.readline(), self.spec.timeout_seconds)
            except TimeoutError:
                keep = None
                await self._discard(worker)
                raise GraderFailure(
                    f"python grader {self.spec.name!r} timed out after {self.spec.timeout_seconds:g} s"
                ) from None
            except (ConnectionError, BrokenPipeError):
                line = b""
            if not line:
                keep = None
                code = await worker.exit_code()
                reason = _exit_reason(code, self.spec.memory_mb)
                tail = worker.stderr_tail()
                await self._discard(worker)
                raise GraderFailure(
                    f"python grader {self.spec.name!r} crashed ({reason})" + (f": {tail}" if tail else "")
                )
            answer = json.loads(line)
            if "error" in answer:
                failure = GraderRaised if answer.get("raised") else GraderFailure
                raise failure(f"python grader {self.spec.name!r}: {answer['error']}")
            return float(answer["score"])
        finally:
            self._release(keep)

    async def aclose(self) -> None:
        for worker in list(self._all):
            await self._discard(worker)


def _exit_reason(code: int | None, memory_mb: int) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        import signal

        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name in ("SIGKILL", "SIGSEGV", "SIGABRT"):
            return f"killed by {name}; it may have exceeded its {memory_mb} MB memory limit"
        return f"killed by {name}"
    return f"exit code {code}"
