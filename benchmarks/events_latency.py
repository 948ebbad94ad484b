"""Cross-instance events (issue 17, decision 0019): how fast a follower in another process sees
a run's events, and what following costs the database.

    python benchmarks/events_latency.py [--events 400] [--followers 20]

One throwaway PostgreSQL (tests/pg.py). A writer publishes events of one run every 10 ms; the
delay is the follower's receive time minus the event's publish time (same machine clock):

- **table + NOTIFY payloads** (what Keel does, decision 0037): ``EventLog`` rows for replay, and the
  events themselves as the payloads of the commit's notifications; live followers take them from
  the payloads and read ``run_events`` only to start and on a gap (``keel.workflows.events.follow``).
  Before decision 0037 (run this file from an older checkout to compare) the notification only woke
  the followers, and each read the table;
- **table, polling only** (NOTIFY lost, or a store without it): the same, read every 1 s;
- **NOTIFY payloads**: the event itself as the payload, one ``pg_notify`` per event from a plain
  connection, received on a listening connection; the lower bound of that design.

DB load: statements the followers sent per event (from ``pg_stat_database.xact_commit``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]


def _pct(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms"


def table(url: str, n: int, followers: int, *, listen: bool) -> tuple[list[float], float]:
    import psycopg

    from keel.store import open_store
    from keel.workflows.engine import NodeEvent
    from keel.workflows.events import EventLog, follow
    from keel.workflows.wakeup import Wakeup

    writer_store, reader_store = open_store(url=url), open_store(url=url)
    log = EventLog(writer_store)
    delays: list[float] = []
    run_id = f"run-{listen}"

    async def main() -> None:
        wake = Wakeup(reader_store, poll=None if listen else 1.0)
        wake.listening = listen and wake.listening

        async def one() -> None:
            async for doc in follow(reader_store, run_id, wake):
                delays.append((time.time() - doc["at"]) * 1000)

        tasks = [asyncio.create_task(one()) for _ in range(followers)]
        await asyncio.sleep(1.0)
        for i in range(n):
            kind = "run_finished" if i == n - 1 else "text_delta"
            log.publish(NodeEvent(kind, run_id, node_id="bot", text=f"t{i}"))
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        wake.close()

    with psycopg.connect(url, autocommit=True) as pg:
        before = pg.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
        asyncio.run(main())
        time.sleep(0.6)
        pg.execute("SELECT pg_stat_clear_snapshot()")
        after = pg.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]
    writer_store.close()
    reader_store.close()
    return delays, (after - before) / n


def payloads(url: str, n: int, followers: int) -> list[float]:
    import psycopg

    delays: list[float] = []
    ready = threading.Barrier(followers + 1)

    def listener() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("LISTEN keel_bench")
            ready.wait()
            for got, note in enumerate(conn.notifies(), 1):
                delays.append((time.time() - json.loads(note.payload)["at"]) * 1000)
                if got == n:
                    return

    threads = [threading.Thread(target=listener) for _ in range(followers)]
    for t in threads:
        t.start()
    ready.wait()
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(n):
            doc = {"kind": "text_delta", "run_id": "r", "text": f"t{i}", "at": time.time()}
            conn.execute("SELECT pg_notify('keel_bench', %s)", (json.dumps(doc),))
            time.sleep(0.01)
    for t in threads:
        t.join()
    return delays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=400)
    ap.add_argument("--followers", type=int, default=20)
    args = ap.parse_args()
    from tests.pg import start_postgres

    pg = start_postgres()
    try:
        for listen in (True, False):
            delays, per_event = table(pg.create_database("ev"), args.events, args.followers, listen=listen)
            name = "table + NOTIFY" if listen else "table, polling 1 s"  # "+ NOTIFY": payloads since 0037
            print(f"{name:<20} {_pct(delays)}; {per_event:.1f} transactions per event "
                  f"({args.followers} followers)", flush=True)
        delays = payloads(pg.create_database("ev"), args.events, args.followers)
        print(f"{'NOTIFY payloads':<20} {_pct(delays)}; 1 transaction per event", flush=True)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
