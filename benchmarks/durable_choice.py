"""Durable execution: DBOS Transact on SQLite vs checkpoints written to Keel's own store.

Measures the cost a durable engine adds to a 3-step workflow (Start -> Transform -> End
with trivial steps), sequentially and with 60 runs in flight, on one SQLite file in WAL.

    pip install dbos
    python benchmarks/durable_choice.py [RUNS]

"keel-store baseline" is the floor a hand-written engine pays: one INSERT per
completed step plus a run row created and finished, through keel.store.SQLiteStore
(synchronous=NORMAL), which is what the workflows engine does.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _pcts(lat: list[float]) -> str:
    lat = sorted(lat)
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"


def _drive(run_one, runs: int, concurrency: int) -> str:
    lat: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t = time.perf_counter()
        run_one(i)
        with lock:
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    if concurrency == 1:
        for i in range(runs):
            one(i)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(runs)))
    wall = time.perf_counter() - t0
    return f"{runs / wall:7.0f} runs/s, {_pcts(lat)}"


def bench_dbos(tmp: Path, runs: int) -> None:
    from dbos import DBOS

    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{tmp / 'dbos.sqlite'}",
                 "run_admin_server": False})

    @DBOS.step()
    def start(x: str) -> str:
        return x

    @DBOS.step()
    def transform(x: str) -> dict:
        return {"text": x.upper()}

    @DBOS.step()
    def end(x: dict) -> dict:
        return x

    @DBOS.workflow()
    def graph(x: str) -> dict:
        return end(transform(start(x)))

    DBOS.launch()
    try:
        for conc in (1, 60):
            print(f"dbos (sqlite)        c={conc:<3}", _drive(lambda i: graph(f"hello {i}"), runs, conc))
    finally:
        DBOS.destroy()


def bench_keel_store(tmp: Path, runs: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from keel.store import SQLiteStore

    store = SQLiteStore(tmp / "keel.db", migrate=False)
    store.execute("CREATE TABLE r (id TEXT PRIMARY KEY, status TEXT, input TEXT, output TEXT, t DOUBLE PRECISION)")
    store.execute("CREATE TABLE s (run_id TEXT, seq BIGINT, output TEXT, PRIMARY KEY (run_id, seq))")

    def run_one(i: int) -> None:
        rid = uuid.uuid4().hex
        store.execute("INSERT INTO r VALUES (?, 'running', ?, NULL, ?)", (rid, f"hello {i}", time.time()))
        value: object = f"hello {i}"
        for seq, fn in enumerate((lambda x: x, lambda x: {"text": x.upper()}, lambda x: x)):
            value = fn(value)
            store.execute("INSERT INTO s VALUES (?, ?, ?)", (rid, seq, json.dumps(value)))
        store.execute("UPDATE r SET status='done', output=? WHERE id=?", (json.dumps(value), rid))

    for conc in (1, 60):
        print(f"keel-store baseline  c={conc:<3}", _drive(run_one, runs, conc))


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as d:
        print(f"{runs} runs each; python {sys.version.split()[0]}; {statistics.__name__} ok")
        bench_keel_store(Path(d), runs)
        bench_dbos(Path(d), runs)
