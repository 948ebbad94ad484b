"""Engine overhead without a model: a durable Start -> Transform -> End workflow.

Runs 2,000 runs at concurrency 1 and 60 through Keel's engine (every step
checkpointed in SQLite, WAL, synchronous=NORMAL), and — in the same process, for
reference — the same 3-node graph in LangGraph with its SQLite checkpointer
(sync saver at concurrency 1, async saver at 60), if LangGraph is installed.

    pip install langgraph langgraph-checkpoint-sqlite aiosqlite   # for the peer
    python benchmarks/workflows.py [RUNS]

Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

SPEC = """
name: bench
nodes:
  - {id: start, type: start}
  - {id: shape, type: transform, fields: {text: "input_as_text.upperAscii()", n: "size(input_as_text)"}}
  - {id: done, type: end}
edges:
  - {from: start, to: shape}
  - {from: shape, to: done}
"""


def _stats(name: str, conc: int, lat: list[float], wall: float) -> dict:
    lat = sorted(lat)
    return {"engine": name, "concurrency": conc, "runs": len(lat), "runs_per_s": len(lat) / wall,
            "p50_ms": statistics.median(lat) * 1000, "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)] * 1000}


async def _drive(one, runs: int, conc: int) -> tuple[list[float], float]:
    """``conc`` clients, each sending its next run as soon as the previous one returns;
    latency is from the client's request to its result (waiting in the event loop included)."""
    lat: list[float] = []
    todo = iter(range(runs))

    async def client() -> None:
        for i in todo:
            t = time.perf_counter()
            await one(i)
            lat.append(time.perf_counter() - t)
            await asyncio.sleep(0)  # a client's next request arrives as a new event

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(conc)))
    return lat, time.perf_counter() - t0


async def bench_keel(tmp: Path, runs: int, conc: int) -> dict:
    from keel.store import SQLiteStore
    from keel.workflows import Engine, Versions
    from keel.workflows.loader import parse_spec

    store = SQLiteStore(tmp / f"keel-{conc}.db")
    version, _ = Versions(store).publish(parse_spec(SPEC))
    engine = Engine(store)

    async def one(i: int) -> None:
        result = await engine.start(version, f"hello {i}")
        assert result.status == "succeeded", result

    await _drive(one, 50, conc)  # warm up (compile, connections)
    lat, wall = await _drive(one, runs, conc)
    store.close()
    return _stats("keel", conc, lat, wall)


def _langgraph_graph():
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        input: str
        text: str
        n: int

    def start(s: State) -> State:
        return {"input": s["input"]}

    def shape(s: State) -> State:
        return {"text": s["input"].upper(), "n": len(s["input"])}

    def done(s: State) -> State:
        return {}

    g = StateGraph(State)
    g.add_node("start_node", start)
    g.add_node("shape", shape)
    g.add_node("done", done)
    g.add_edge(START, "start_node")
    g.add_edge("start_node", "shape")
    g.add_edge("shape", "done")
    g.add_edge("done", END)
    return g


async def bench_langgraph(tmp: Path, runs: int, conc: int, *, wal: bool) -> dict | None:
    """LangGraph with its SQLite checkpointer: as shipped (rollback journal, fsync per commit), or with
    ``wal`` set to the same WAL + synchronous=NORMAL settings Keel's store uses."""
    try:
        import langgraph  # noqa: F401
    except ImportError:
        return None
    g = _langgraph_graph()
    tag = ", WAL+NORMAL" if wal else ""
    if conc == 1:
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(tmp / f"lg-sync-{wal}.db", check_same_thread=False)
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        app = g.compile(checkpointer=SqliteSaver(conn))

        async def one(i: int) -> None:
            app.invoke({"input": f"hello {i}"}, {"configurable": {"thread_id": f"t{i}-{time.time_ns()}"}})

        await _drive(one, 50, 1)
        lat, wall = await _drive(one, runs, 1)
        conn.close()
        return _stats(f"langgraph (SqliteSaver{tag})", conc, lat, wall)
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(tmp / f"lg-async-{wal}.db")) as saver:
        if wal:
            await saver.conn.execute("PRAGMA journal_mode=WAL")
            await saver.conn.execute("PRAGMA synchronous=NORMAL")
        app = g.compile(checkpointer=saver)

        async def one(i: int) -> None:
            await app.ainvoke({"input": f"hello {i}"}, {"configurable": {"thread_id": f"t{i}-{time.time_ns()}"}})

        await _drive(one, 50, conc)
        lat, wall = await _drive(one, runs, conc)
    return _stats(f"langgraph (AsyncSqliteSaver{tag})", conc, lat, wall)


async def main(runs: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for conc in (1, 60):
            rows.append(await bench_keel(Path(d), runs, conc))
            for wal in (False, True):
                peer = await bench_langgraph(Path(d), runs, conc, wal=wal)
                if peer:
                    rows.append(peer)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end {load:.2f}; {runs} runs per row; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}\n")
    print("| engine | concurrency | runs/s | p50 ms | p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['engine']} | {r['concurrency']} | {r['runs_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
