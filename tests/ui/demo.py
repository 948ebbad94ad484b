"""Demo data and a real server for the UI's browser tests and for ``scripts/ui_screenshots.py``.

- :func:`publish_demo` publishes three workflows on ``scripted:`` models: ``echo-bot``
  (answers with the user's message), ``order-helper`` (calls the ``lookup_order`` tool
  below, then answers) and ``refund`` (a Human approval node, then an answer);
- :func:`run_evals` makes two eval runs (a baseline and a candidate) over a small dataset,
  two models side by side;
- :func:`seed_traffic` writes an hour of access-log rows and model calls, for pictures;
- :class:`Server` serves an app with uvicorn on a free port of 127.0.0.1 in a thread, in
  this process, so tests can queue scripted replies (``keel.testing.get_script``).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from keel.store import ModelCallRecord, ModelCalls, SQLiteStore

ECHO = """
name: echo-bot
description: Answers with your own message (a scripted model), for trying the UI.
nodes:
  - {id: start, type: start}
  - {id: bot, type: agent, model: "scripted:echo", instructions: "Repeat the user's message."}
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
"""

HELPER = """
name: order-helper
description: Looks orders up with a tool and answers.
nodes:
  - {id: start, type: start}
  - {id: helper, type: agent, model: "scripted:helper", tools: ["tests.ui.demo:lookup_order"]}
  - {id: done, type: end}
edges:
  - {from: start, to: helper}
  - {from: helper, to: done}
"""

REFUND = """
name: refund
description: Asks a person before refunding.
nodes:
  - {id: start, type: start}
  - {id: ask, type: human_approval, message: "Refund order A-1001 ($42.50)?", timeout: 1209600}
  - {id: refunded, type: end, output: "'Refund sent: approved by ' + input.output_parsed.by"}
  - {id: declined, type: end, output: "'No refund: the request was rejected.'"}
  - {id: expired, type: end, output: "'No answer in time.'"}
edges:
  - {from: start, to: ask}
  - {from: ask, port: approved, to: refunded}
  - {from: ask, port: rejected, to: declined}
  - {from: ask, port: timeout, to: expired}
"""


def lookup_order(order_id: str) -> dict:
    """Look an order up by id."""
    return {"order_id": order_id, "status": "shipped", "carrier": "DHL", "eta": "Thursday"}


def publish_demo(store: SQLiteStore, tmp: Path) -> None:
    from keel.workflows import publish

    for name, text in (("echo", ECHO), ("helper", HELPER), ("refund", REFUND)):
        path = tmp / f"{name}.yaml"
        path.write_text(text)
        publish(path, store=store)


def queue_helper_replies(n: int = 1) -> None:
    """Queue ``n`` conversations for ``order-helper``: a tool call, then the answer."""
    from keel.testing import get_script

    model = get_script("helper")
    for _ in range(n):
        model.reply(tool_calls=[("lookup_order", {"order_id": "A-1001"})])
        model.reply("Order A-1001 has shipped with DHL and should arrive on Thursday.")


GRADERS = [
    {"type": "string_check", "name": "exact", "operation": "eq",
     "input": "{{sample.output_text}}", "reference": "{{item.answer}}"},
    {"type": "text_similarity", "name": "similar", "evaluation_metric": "fuzzy_match",
     "input": "{{sample.output_text}}", "reference": "{{item.answer}}", "pass_threshold": 0.8},
]

_CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
             ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Chile", "Santiago")]


def run_evals(store: SQLiteStore, tmp: Path) -> tuple[str, str]:
    """Two eval runs of the same dataset (baseline, candidate); returns their ids."""
    from keel.evals import parse_eval, run_eval
    from keel.testing import get_script

    data = tmp / "capitals.jsonl"
    data.write_text("".join(json.dumps({"country": c, "answer": a}) + "\n" for c, a in _CAPITALS))
    ids = []
    for run, wrong in enumerate(({"Kenya", "Chile", "Peru"}, {"Chile"})):
        for name, miss in (("small", wrong), ("large", set(list(wrong)[:1]) if run else {"Peru"})):
            model = get_script(f"eval-{name}")
            model.default = None
            for c, a in _CAPITALS:
                model.reply(a.lower() if c in miss else a)
        spec = parse_eval({
            "name": "capitals", "dataset": str(data), "graders": GRADERS, "concurrency": 1,
            "targets": [{"type": "model", "model": "scripted:eval-small", "name": "small",
                         "prompt": "Capital of {{item.country}}?"},
                        {"type": "model", "model": "scripted:eval-large", "name": "large",
                         "prompt": "Capital of {{item.country}}?"}]})
        ids.append(_in_thread(lambda spec=spec: asyncio.run(run_eval(store, spec))).run_id)
        time.sleep(0.01)
    return ids[0], ids[1]


def _in_thread(fn: Any) -> Any:
    """Run ``fn`` in a new thread (Playwright's sync API keeps an event loop in this one)."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    if not out:
        raise RuntimeError("the eval run failed; see the thread's traceback above")
    return out[0]


def seed_traffic(store: SQLiteStore, *, minutes: int = 60, seed: int = 7) -> None:
    """An hour of plausible traffic: access-log rows and model calls (for screenshots)."""
    rng = random.Random(seed)
    now = time.time()
    rows, calls = [], []
    for m in range(minutes):
        for _ in range(rng.randint(8, 16)):
            at = now - (minutes - m) * 60 + rng.random() * 60
            wf = rng.choice(["echo-bot", "echo-bot", "order-helper", "refund"])
            model = "helper" if wf == "order-helper" else "echo"
            latency = rng.lognormvariate(6.2 if wf == "order-helper" else 5.3, 0.45)
            status = 200 if rng.random() > 0.012 else rng.choice([500, 502, 429, 401])
            ttfb = latency * rng.uniform(0.2, 0.5)
            tin, tout = rng.randint(40, 400), rng.randint(20, 220)
            rows.append((uuid.uuid4().hex, at, "POST", "/v1/chat/completions", "/v1/chat/completions", wf, 1, None,
                         status, latency, ttfb, tin, tout, 1))
            calls.append(ModelCallRecord(
                provider="scripted", model=model, status="ok" if status < 500 else "error",
                latency_ms=latency * 0.8, ttft_ms=ttfb * 0.8, stream=True, input_tokens=tin, output_tokens=tout,
                http_status=status if status >= 500 else None, error_class="ProviderHTTPError" if status >= 500 else None,
                cost_usd=(tin * 0.15 + tout * 0.6) / 1e6, tags={"workflow": wf}, started_at=at))
    store.executemany(
        "INSERT INTO serve_requests (id, started_at, method, path, route, workflow, version, key_id, status, "
        "latency_ms, ttfb_ms, input_tokens, output_tokens, streamed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows)
    for c in calls:
        ModelCalls(store).record(c)


def make_app(store: SQLiteStore) -> Any:
    """The app to serve ``store`` with: ``keel serve``'s own (open mode: no keys exist, loopback
    only), in this process so tests can queue scripted replies; the UI-only app
    (:mod:`keel.operate.ui.app`) when the server package is not there."""
    try:
        from keel.operate.server.app import create_app
        from keel.operate.server.settings import ServeSettings
    except ImportError:
        from keel.operate.ui.app import create_app as ui_app

        return ui_app(store)
    return create_app(ServeSettings(mcp=False), store=store)


class Server:
    """``app`` served by uvicorn on 127.0.0.1 (a free port) in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the UI test server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
