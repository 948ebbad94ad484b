"""``keel worker``: execute the runs that servers queued, on this machine or any other."""

from __future__ import annotations

import sys

import typer

EPILOG = """Examples:

\b
  keel serve --no-execute          # servers queue the runs they start ...
  keel worker --concurrency 32     # ... and workers, any number on any machine, run them
  KEEL_STORE_URL=postgresql://app@db/appdb keel worker   # all machines on one PostgreSQL

A worker and the servers must share the store: one PostgreSQL (KEEL_STORE_URL) across
machines, or the same KEEL_HOME on one machine. SIGTERM (or Ctrl-C) stops it gracefully:
no new runs, --grace seconds for those in flight, then the rest are left at their last
checkpoint for another worker. A worker killed outright loses its runs to the others
once their leases lapse (30 s; at once on the same machine). docs/workflows.md, "Workers"."""


def worker(concurrency: int = typer.Option(16, "--concurrency", "-c", min=1, max=10_000,
                                           help="Runs executed at once by this worker."),
           grace: float = typer.Option(30.0, "--grace", min=0,
                                       help="Seconds a stop waits for runs in flight before leaving them "
                                            "to other workers."),
           recover_every: float = typer.Option(5.0, "--recover-every", min=0.1,
                                               help="Seconds between looks for runs orphaned outside the "
                                                    "queue and approvals that timed out."),
           ) -> None:
    """Execute queued workflow runs until stopped (SIGTERM or Ctrl-C)."""
    import asyncio
    import logging
    import signal

    from keel.store import open_store
    from keel.workflows.worker import Worker

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    store = open_store()

    async def go() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        w = Worker(store, concurrency=concurrency, recover_every=recover_every)
        # What is alive now (modules, the store, the engines) lives as long as the process: keep it out
        # of the garbage collector's full collections, which otherwise walk it every time and, at 60
        # runs in flight, stalled every run of the worker for up to 0.5 s (decision 0036).
        import gc

        import keel.workflows.agent  # noqa: F401  (imported by the first Agent step otherwise)

        gc.collect()
        gc.freeze()
        print(f"keel worker: {w.owner}, up to {concurrency} runs at once; SIGTERM or Ctrl-C stops it",
              file=sys.stderr, flush=True)
        await w.run(stop, grace=grace)
        return w.finished

    finished = asyncio.run(go())
    print(f"keel worker: stopped after {finished} runs", file=sys.stderr, flush=True)
