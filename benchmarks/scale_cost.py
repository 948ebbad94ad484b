"""What one run costs PostgreSQL (issue 17, docs/scaling.md): statements, transactions, rows,
WAL bytes and stored bytes per run, for runs queued by a server and executed by a worker.

    python benchmarks/scale_cost.py [--runs 300]

Runs ``Start -> Transform -> End`` and ``Start -> Agent (scripted:echo) -> End`` through the
queue (as ``keel serve --no-execute`` queues them) and an in-process :class:`Worker` whose store
counts every statement it sends; PostgreSQL's own counters (``pg_stat_database``, the WAL
position, the database size) give the rest. With and without the events a follower reads
(``run_events``): a server that shares events writes them for every run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from benchmarks.scale import AGENT, TRANSFORM  # noqa: E402


class Counting:
    """Wraps a store: counts statements (a batch counts once, its rows apart)."""

    def __init__(self, store) -> None:
        self._store = store
        self.statements = 0
        self.batch_rows = 0

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def execute(self, sql, params=()):
        self.statements += 1
        return self._store.execute(sql, params)

    def executemany(self, sql, rows):
        self.statements += 1
        self.batch_rows += len(rows)
        return self._store.executemany(sql, rows)

    def query(self, sql, params=()):
        self.statements += 1
        return self._store.query(sql, params)

    def transaction(self):
        self.statements += 2  # BEGIN, COMMIT
        return self._store.transaction()

    def commit_group(self):
        from keel.store.group import CommitGroup

        loop = asyncio.get_running_loop()
        group = getattr(self, "_group", None)
        if group is None or group.loop is not loop:
            group = self._group = CommitGroup(self, loop)
        return group


def measure(url: str, spec: str, runs: int, *, events: bool) -> dict:
    import psycopg

    from keel.store import open_store
    from keel.workflows import Engine, publish
    from keel.workflows.queue import RunQueue
    from keel.workflows.worker import Worker

    store = open_store(url=url)
    path = Path(tempfile.mkdtemp()) / "shape.yaml"
    path.write_text(spec, encoding="utf-8")
    version = publish(path, store=store)
    engine, queue = Engine(store), RunQueue(store)
    with psycopg.connect(url, autocommit=True) as pg:
        def stats() -> tuple:
            row = pg.execute("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, pg_database_size(current_database()),"
                             " pg_current_wal_lsn() FROM pg_stat_database WHERE datname = current_database()").fetchone()
            return row

        pg.execute("SELECT pg_stat_clear_snapshot()")
        before = stats()
        for _ in range(runs):  # queued as a --no-execute server does
            run = engine.create(version, "hello", _defer=True)
            with store.transaction():
                engine.queue_rows(run)  # as keel serve --no-execute queues it
                queue.add(run.id)
        counting = Counting(store)

        async def work() -> None:
            worker = Worker(counting, concurrency=60, recover_every=3600)
            if not events:
                worker.engine.on_event = worker.streaming.on_event = None
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop, grace=30))
            while store.query("SELECT COUNT(*) AS n FROM workflow_runs WHERE status = 'running'")[0]["n"]:
                await asyncio.sleep(0.1)
            stop.set()
            await task

        t0 = time.perf_counter()
        asyncio.run(work())
        took = time.perf_counter() - t0
        time.sleep(0.6)  # pg_stat_database is updated by the backends about every 0.5 s
        pg.execute("SELECT pg_stat_clear_snapshot()")
        after = stats()
        wal = pg.execute("SELECT pg_wal_lsn_diff(%s, %s)", (after[5], before[5])).fetchone()[0]
    store.close()
    return {"worker statements/run": counting.statements / runs, "batched rows/run": counting.batch_rows / runs,
            "commits/run (all)": (after[0] - before[0]) / runs,
            "rows written/run": (after[1] + after[2] + after[3] - before[1] - before[2] - before[3]) / runs,
            "WAL bytes/run": float(wal) / runs, "stored bytes/run": (after[4] - before[4]) / runs,
            "worker s": took}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    from tests.pg import start_postgres

    pg = start_postgres()
    try:
        for name, spec in (("Start->Transform->End", TRANSFORM), ("Start->Agent->End", AGENT)):
            for events in (True, False):
                r = measure(pg.create_database("cost"), spec, args.runs, events=events)
                print(f"{name:<22} events={'yes' if events else 'no ':<3} " +
                      "  ".join(f"{k} {v:,.1f}" for k, v in r.items()), flush=True)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
