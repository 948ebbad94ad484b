"""Discount codes: each gives a percentage off the subtotal. Codes never combine."""

from __future__ import annotations

CODES = {"WELCOME10": 10, "SPRING15": 15}
"""Code -> percentage off."""


def apply_discount(subtotal_cents: int, code: str | None) -> int:
    """The subtotal after ``code``'s discount, in cents (rounded down); unknown codes give nothing off."""
    percent = CODES.get(code or "", 0)
    return subtotal_cents - subtotal_cents * percent // 100
