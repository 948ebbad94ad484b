"""Connector session pooling (issue 21, decision 0030): what a run's MCP call costs when the
connector's session is pooled, against the same server named inline (a session per step).

    python benchmarks/connectors.py [--runs 20] [--rounds 5]

One stdio MCP server (tests/connectors/counting_mcp_server.py, a Python subprocess) behind an
MCP node, in a throwaway KEEL_HOME on SQLite. Each round runs ``--runs`` runs of each variant in
one event loop, the variants alternating within the round (A/B interleaved, CONTRIBUTING 18):

- **pooled** (what Keel does for ``connector:``): the session opened once per process and
  borrowed by every run;
- **per step** (the peer: an inline ``server:``, as every MCP entry worked before pooling): the
  server started and initialised for every run.

Reports the median run latency of each and the ratio, and how many server processes started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]
SERVER = REPO / "tests" / "connectors" / "counting_mcp_server.py"

SPEC = """
name: {name}
nodes:
  - {{id: start, type: start}}
  - {{id: ask, type: mcp, {target}, tool: whoami, arguments: {{note: "input_as_text"}}, approval: never}}
  - {{id: done, type: end, output: "string(input.output_parsed.calls)"}}
edges:
  - {{from: start, to: ask}}
  - {{from: ask, to: done}}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="runs of each variant per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-bench-connectors-") as tmp:  # CONTRIBUTING 21
        home = Path(tmp)
        os.environ["KEEL_HOME"] = str(home)
        from keel.connectors import Connector, Connectors
        from keel.store import open_store
        from keel.workflows import arun

        starts = home / "starts.txt"
        command = f"stdio:{shlex.quote(sys.executable)} {shlex.quote(str(SERVER))} {shlex.quote(str(starts))}"
        store = open_store(home)
        Connectors(store).add(Connector(name="counter", server=command, approval={"*": "never"}))
        pooled = home / "pooled.yaml"
        pooled.write_text(SPEC.format(name="pooled", target="connector: counter"))
        inline = home / "inline.yaml"
        inline.write_text(SPEC.format(name="inline", target=f"server: {shlex.quote(command)}"))
        times: dict[str, list[float]] = {"pooled": [], "per step": []}

        async def rounds() -> None:
            for _ in range(args.rounds):
                for _ in range(args.runs):
                    for label, spec in (("pooled", pooled), ("per step", inline)):
                        t = time.perf_counter()
                        r = await arun(spec, "x", store=store)
                        times[label].append((time.perf_counter() - t) * 1000)
                        assert r.status == "succeeded", r.error

        asyncio.run(rounds())
        store.close()
        started = len(starts.read_text().split())
    p, s = statistics.median(times["pooled"]), statistics.median(times["per step"])
    n = args.runs * args.rounds
    print(f"{n} runs each, interleaved; load: {os.getloadavg()[0]:.1f} (1 min)")
    print(f"pooled:   median {p:.1f} ms per run")
    print(f"per step: median {s:.1f} ms per run")
    print(f"per step / pooled: {s / p:.1f}x; server processes started: {started} (pooled 1, per step {n})")


if __name__ == "__main__":
    main()
