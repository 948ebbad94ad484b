"""Tools made with ``@keel.tool``, importable by path (``tests.workflows.decorated_tools:NAME``)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel

import keel

SEEN: list[dict] = []


class Line(BaseModel):
    sku: str
    quantity: int = 1


@keel.tool
def convert(amount: float, currency: Literal["EUR", "USD"], on: date | None = None) -> str:
    """Convert an amount to another currency.

    Args:
        amount: the amount, in the source currency
        currency: the currency to convert to
        on: the day of the rate
            (default: today)

    Returns:
        the converted amount, as text
    """
    SEEN.append({"amount": amount, "currency": currency, "on": on})
    return f"{amount * 1.1:.2f} {currency}"


@keel.tool(name="place_order")
def order(lines: list[Line], note: str = "") -> str:
    """Place an order.

    :param lines: what to order, one line per product
    :param note: a note for the warehouse
    """
    SEEN.append({"lines": lines, "note": note})
    return f"ordered {sum(line.quantity for line in lines)} items"


@keel.tool
def search_logs(query: str) -> str:
    """Search the logs; returns every matching line (often far too many)."""
    return "\n".join(f"2025-01-01T00:00:{i % 60:02d} error {query} in worker {i}" for i in range(2000))
