"""Function tools importable by path (``tests.workflows.tools_for_tests:NAME``), as a real project's are."""

from __future__ import annotations

from keel.workflows import ToolContext

CALLS: list[tuple[str, dict]] = []


def lookup_order(order_id: int) -> dict:
    """Look an order up by id."""
    CALLS.append(("lookup_order", {"order_id": order_id}))
    return {"order_id": order_id, "total": 42.5, "status": "delivered"}


async def refund(order_id: int, amount: float, ctx: ToolContext) -> str:
    """Refund part of an order."""
    CALLS.append(("refund", {"order_id": order_id, "amount": amount, "key": ctx.idempotency_key}))
    return f"refunded {amount} on order {order_id}"


def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"tool exploded: {reason}")


SEEN_ON_DISK: list[int] = []


def count_model_calls_on_disk(ctx: ToolContext) -> str:
    """Count, from a separate connection, the model calls of this run already committed."""
    from keel.store import open_store

    other = open_store()  # a store object of its own: its own connection, on either backend
    try:
        n = other.query("SELECT COUNT(*) AS n FROM workflow_memos WHERE run_id = ? AND key LIKE '%:model:%'",
                        (ctx.run_id,))[0]["n"]
    finally:
        other.close()
    SEEN_ON_DISK.append(n)
    return str(n)


STORED_SEQ: list[int] = []


def stored_seq(ctx: ToolContext) -> str:
    """The run's stored step number, read from a separate connection (what a crash would resume from)."""
    from keel.store import open_store

    other = open_store()
    try:
        seq = other.query("SELECT seq FROM workflow_runs WHERE id = ?", (ctx.run_id,))[0]["seq"]
    finally:
        other.close()
    STORED_SEQ.append(seq)
    return str(seq)
