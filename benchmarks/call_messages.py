"""What storing an Agent node's call messages costs a run (issue 20, decision 0032): the extra
INSERT into ``model_call_messages`` in the transaction that already stores the call's span.

    nice -n 5 python benchmarks/call_messages.py [--runs 40] [--rounds 6] [--turns 1] [--postgres | --store-url URL]

One workflow, Start -> Agent -> End, whose Agent node has ~1 KB of instructions and one Python tool,
answered instantly by a scripted model (so the run is all Keel: engine, store, no model time).
``--turns N`` gives it N earlier user/assistant turns of history (a longer conversation: a bigger
row). Each round runs ``--runs`` runs with storing on and ``--runs`` with it off
(``KEEL_CALL_MESSAGES=off``, the peer), the two alternating run by run and the first arm switching
every round (A/B interleaved, CONTRIBUTING 18), in one event loop on a throwaway KEEL_HOME (SQLite;
PostgreSQL with ``--store-url``, or ``--postgres``: a throwaway server started by ``tests/pg.py``). Reports each arm's median and p90 run latency, the ratio of the
medians, and the bytes one stored row holds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

INSTRUCTIONS = ("You are the support desk's triage agent. Read the customer's message, decide which team "
                "owns it (billing, shipping, accounts or technical), and answer in two sentences: the team, "
                "and what the customer should expect next. Never promise refunds or dates. ") * 3
SPEC = """
name: bench-calls
nodes:
  - {{id: start, type: start}}
  - id: triage
    type: agent
    model: scripted:bench-calls
    instructions: {instructions!r}
    tools: ["benchmarks.call_messages:lookup_order"]
    approval: {{lookup_order: never}}
  - {{id: done, type: end}}
edges:
  - {{from: start, to: triage}}
  - {{from: triage, to: done}}
"""
ANSWER = ("Shipping owns this: your parcel left our warehouse and the carrier will update its tracking within "
          "a day. Reply here if it has not moved by then.")


def lookup_order(order: str) -> dict:
    """Look an order up by its number (offered to the model, never called: the answer is text)."""
    return {"order": order, "status": "in transit"}


def _input(i: int, turns: int) -> object:
    question = f"Order {1000 + i} has not arrived and the tracking page has not changed for a week. Where is it?"
    if not turns:
        return question
    history = []
    for t in range(turns):
        history += [{"role": "user", "content": f"Earlier question {t}: can I change the address of order {900 + t}?"},
                    {"role": "assistant", "content": "Accounts owns address changes: use the profile page, or "
                                                     "reply with the new address and we change it for you."}]
    return [*history, {"role": "user", "content": question}]


async def _bench(store, runs: int, rounds: int, turns: int) -> dict[str, list[float]]:
    from keel.workflows import arun

    times: dict[str, list[float]] = {"on": [], "off": []}
    ratios: list[float] = []
    i = 0
    for r in range(rounds):
        arms = ("on", "off") if r % 2 == 0 else ("off", "on")
        start = {arm: len(times[arm]) for arm in arms}
        for _ in range(runs):
            for arm in arms:
                os.environ["KEEL_CALL_MESSAGES"] = arm  # read by each call
                i += 1
                t = time.perf_counter()
                result = await arun("bench-calls", _input(i, turns), store=store)
                times[arm].append(time.perf_counter() - t)
                assert result.status == "succeeded", result.error
        ratios.append(statistics.median(times["on"][start["on"]:]) / statistics.median(times["off"][start["off"]:]))
        print(f"\rround {r + 1}/{rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    times["ratios"] = ratios
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="runs of each arm per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--turns", type=int, default=1, help="earlier user/assistant turns in each run's input")
    parser.add_argument("--store-url", default="", help="a PostgreSQL URL (default: SQLite in a temp KEEL_HOME)")
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL (tests/pg.py) for it")
    args = parser.parse_args()
    server = None
    if args.postgres:
        from tests.pg import start_postgres

        server = start_postgres()
        args.store_url = server.create_database("keel_bench")

    home = tempfile.mkdtemp(prefix="keel-bench-calls-")
    os.environ["KEEL_HOME"] = home
    from keel.models.scripted import get_script
    from keel.store import open_store
    from keel.workflows import publish

    get_script("bench-calls").default = lambda request: ANSWER
    store = open_store(home, url=args.store_url or None)
    try:
        spec = Path(home) / "bench-calls.yaml"
        spec.write_text(SPEC.format(instructions=INSTRUCTIONS), encoding="utf-8")
        publish(spec, store=store)
        asyncio.run(_bench(store, 5, 2, args.turns))  # warm up: imports, caches, the first pages of the file
        load = os.getloadavg()
        times = asyncio.run(_bench(store, args.runs, args.rounds, args.turns))
        load_after = os.getloadavg()
        rows = store.query("SELECT messages, tools, output FROM model_call_messages")
        size = statistics.mean(len(r["messages"]) + len(r["tools"] or "") + len(r["output"]) for r in rows)
    finally:
        store.close()
        import shutil

        shutil.rmtree(home, ignore_errors=True)
        if server is not None:
            server.stop()

    def p90(xs: list[float]) -> float:
        return sorted(xs)[int(0.9 * (len(xs) - 1))]

    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    backend = "PostgreSQL" if args.store_url else "SQLite"
    print(f"{backend}, {args.rounds} rounds x {args.runs} runs per arm, interleaved; {args.turns} earlier turn(s); "
          f"load {load[0]:.1f} -> {load_after[0]:.1f} (1 min)")
    print(f"stored row: {size:,.0f} bytes of JSON on average ({len(rows)} rows)")
    print("| arm | median run (ms) | p90 run (ms) |")
    print("|---|---|---|")
    print(f"| storing on (default) | {on * 1000:.2f} | {p90(times['on']) * 1000:.2f} |")
    print(f"| KEEL_CALL_MESSAGES=off | {off * 1000:.2f} | {p90(times['off']) * 1000:.2f} |")
    ratios = sorted(times["ratios"])
    print(f"on / off (median of all runs): {on / off:.3f}x; per round: median {statistics.median(ratios):.3f}x, "
          f"range {ratios[0]:.3f}-{ratios[-1]:.3f}x")


if __name__ == "__main__":
    main()
