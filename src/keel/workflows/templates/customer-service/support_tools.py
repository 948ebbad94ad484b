"""Tools of the customer-service workflow. Replace the sample orders with calls to your shop.

Keel imports them by path (``support_tools:refund``) from the project directory, so a run that
resumes after a crash, or after a refund approval days later, finds them again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keel.workflows import ToolContext

ORDERS = {
    7: {"order_id": 7, "status": "delivered", "items": ["kettle"], "total": 42.5},
    8: {"order_id": 8, "status": "shipped", "items": ["teapot", "cups"], "total": 31.0},
    9: {"order_id": 9, "status": "processing", "items": ["tea sampler"], "total": 12.0},
}


def lookup_order(order_id: int) -> dict:
    """Look an order up by id: its status, items and total (in euros)."""
    return ORDERS.get(order_id, {"order_id": order_id, "error": "no such order"})


def refund(order_id: int, amount: float, ctx: ToolContext) -> str:
    """Refund an amount (in euros) on an order."""
    # A refund is a side effect: make it at most once per idempotency key, so a call repeated
    # after a crash does not pay twice. A real payment API takes the key as `Idempotency-Key`.
    log = Path(os.environ.get("SUPPORT_REFUNDS_FILE", "refunds.jsonl"))
    done = {json.loads(line)["key"] for line in log.read_text().splitlines()} if log.exists() else set()
    if ctx.idempotency_key not in done:
        with log.open("a") as f:
            f.write(json.dumps({"key": ctx.idempotency_key, "order_id": order_id, "amount": amount}) + "\n")
    return f"refunded {amount:.2f} euros on order {order_id}"
