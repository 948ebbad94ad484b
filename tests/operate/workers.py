"""Helpers for the worker tests: ``keel worker`` subprocesses (``worker_proc.py``) next to
``keel serve --no-execute`` ones, on the store under one KEEL_HOME or on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.operate.conftest import server_env

REPO = Path(__file__).resolve().parents[2]
PROC = Path(__file__).with_name("worker_proc.py")

PAY = """
name: pay
nodes:
  - {id: start, type: start}
  - id: bot
    type: agent
    model: scripted:pay
    instructions: Charge the order.
    tools: ["tests.operate.worker_proc:charge"]
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
"""

PAY_APPROVED = """
name: pay_approved
nodes:
  - {id: start, type: start}
  - {id: ask, type: human_approval, message: "Charge order {{ input_as_text }}?"}
  - id: bot
    type: agent
    model: scripted:pay
    instructions: "Charge order {{ input_as_text }}."
    tools: ["tests.operate.worker_proc:charge"]
  - {id: done, type: end}
  - {id: nope, type: end, output: "'rejected'"}
edges:
  - {from: start, to: ask}
  - {from: ask, port: approved, to: bot}
  - {from: ask, port: rejected, to: nope}
  - {from: bot, to: done}
"""

SLOW = """
name: slow
nodes:
  - {id: start, type: start}
  - {id: bot, type: agent, model: scripted:slow, instructions: Count.}
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
"""


def env(home: Path, tmp: Path, extra: dict[str, str] | None = None, *, url: str | None = None) -> dict[str, str]:
    """The environment of servers and workers: the repo importable (tools by path), the effects file,
    and ``KEEL_STORE_URL`` when the store is PostgreSQL (``url``)."""
    return server_env(home, {"PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
                             "WORKER_EFFECTS": str(tmp / "effects.db"), "WORKER_GATE": str(tmp / "gate"),
                             **({"KEEL_STORE_URL": url} if url else {}), **(extra or {})})


def publish_to(home: Path, spec: str, name: str, *, url: str | None) -> None:
    """Publish ``spec`` into the store of ``home`` (SQLite) or at ``url`` (PostgreSQL)."""
    from keel.store import open_store
    from keel.workflows import publish as publish_spec

    path = home / f"{name}.yaml"
    path.write_text(spec, encoding="utf-8")
    store = open_store(home, url=url or "")
    try:
        publish_spec(path, store=store)
    finally:
        store.close()


@dataclass
class WorkerProc:
    proc: subprocess.Popen
    log: Path

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_worker(home: Path, environ: dict[str, str], *args: str, name: str = "worker") -> WorkerProc:
    log = home / f"{name}-{time.monotonic_ns()}.log"
    out = log.open("w", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(PROC), "--recover-every", "0.5", *args], stdout=out,
                            stderr=subprocess.STDOUT, env=environ, cwd=home)
    return WorkerProc(proc, log)


def wait_for(check, *, timeout: float = 120, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def invocations(tmp: Path) -> list[str]:
    log = tmp / "effects.db.log"
    return log.read_text().splitlines() if log.exists() else []


def effects(tmp: Path) -> list[tuple[str, str]]:
    import sqlite3

    if not (tmp / "effects.db").exists():
        return []
    conn = sqlite3.connect(tmp / "effects.db")
    try:
        return conn.execute("SELECT key, run_id FROM effects").fetchall()
    finally:
        conn.close()
