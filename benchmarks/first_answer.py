"""From `keel up` to the first answer (issue 14): what a newcomer waits for.

Each run starts `keel up demo --port 0` as a subprocess in an empty folder of a fresh
KEEL_HOME (create the project from the template, ingest its docs with the default embedder,
publish, serve), then asks the demo a question over `/v1/chat/completions` with the OpenAI
SDK's placeholder key, and stops the server. Timed from the launch of the command:

- "up": until the server answers `/healthz` (the URLs are printed just before);
- "first answer": until the first answer has come back (the model's latency included).

Models: `openai` is tests/openai_stub.py (a real HTTP server speaking OpenAI's format, which
answers at once: Keel's own time, without a remote model's); `local` is the tiny GGUF of
keel.testing.write_tiny_gguf run by llama.cpp in-process (model load included). "again" runs
`keel up demo` a second time in the same folder (the project is reused, nothing to ingest).

    python benchmarks/first_answer.py [--runs 3] [--models openai,local]

Prints a Markdown table of medians (and min-max) for docs/benchmarks.md ("First hour").
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.openai_stub import OpenAIStub  # noqa: E402
from tests.operate.conftest import server_env  # noqa: E402

ANSWER = "Full-time employees have 27 days of paid holiday a year, plus public holidays [1]."


def one(cwd: Path, home: Path, env: dict[str, str], model_args: list[str]) -> tuple[float, float]:
    log = cwd / "up.log"
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "keel", "up", "demo", "--port", "0", *model_args],
                                cwd=cwd, env=server_env(home, env), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        url = None
        while url is None:
            found = re.search(r"UI\s+(http://127\.0\.0\.1:\d+)/ui", log.read_text(errors="replace"))
            if found:
                try:
                    if httpx.get(f"{found.group(1)}/healthz", timeout=5).status_code == 200:
                        url = found.group(1)
                except httpx.TransportError:
                    pass
            if proc.poll() is not None:
                raise SystemExit(f"keel up exited with {proc.returncode}:\n{log.read_text()}")
            time.sleep(0.05)
        up = time.perf_counter() - start
        r = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": "Bearer placeholder"}, timeout=600,
                       json={"model": "demo", "messages": [{"role": "user", "content": "How many holiday days?"}]})
        answered = time.perf_counter() - start
        if r.status_code != 200:
            raise SystemExit(f"the first question got {r.status_code}: {r.text}")
        return up, answered
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--models", default="openai,local")
    args = ap.parse_args()
    stub = OpenAIStub()
    stub.start()
    rows = []
    try:
        for model in args.models.split(","):
            first: dict[str, list[float]] = {"up": [], "answer": []}
            again: dict[str, list[float]] = {"up": [], "answer": []}
            for _ in range(args.runs):
                tmp = Path(tempfile.mkdtemp(prefix="keel-first-answer-"))
                try:
                    home, cwd = tmp / "home", tmp / "work"
                    home.mkdir()
                    cwd.mkdir()
                    env: dict[str, str] = {}
                    model_args: list[str] = []
                    if model == "openai":
                        env = {"OPENAI_API_KEY": "sk-test-not-real", "OPENAI_BASE_URL": stub.base_url}
                    else:
                        from keel.testing import write_tiny_gguf

                        model_args = ["--model", f"local:{write_tiny_gguf(tmp / 'tiny.gguf')}"]
                    for into in (first, again):
                        stub.answer(ANSWER)
                        up, answered = one(cwd, home, env, model_args)
                        into["up"].append(up)
                        into["answer"].append(answered)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)  # CONTRIBUTING rule 21
            rows.append((model, "new folder", first))
            rows.append((model, "again (project exists)", again))
    finally:
        stub.stop()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; seconds, median (min-max) of {args.runs} runs")
    print("| model | keel up | up (healthz) s | first answer s |")
    print("|---|---|---:|---:|")
    for model, when, xs in rows:
        print(f"| {model} | {when} | {_fmt(xs['up'])} | {_fmt(xs['answer'])} |")


if __name__ == "__main__":
    main()
