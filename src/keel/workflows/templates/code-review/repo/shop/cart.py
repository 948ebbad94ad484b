"""Carts: lines of products; totals in integer cents, after discounts, with VAT."""

from __future__ import annotations

from dataclasses import dataclass, field

from shop.discounts import apply_discount
from shop.tax import vat_rate


@dataclass
class Line:
    sku: str
    unit_cents: int
    quantity: int = 1


@dataclass
class Cart:
    country: str
    lines: list[Line] = field(default_factory=list)
    code: str | None = None

    def add(self, sku: str, unit_cents: int, quantity: int = 1) -> None:
        """Add a line; quantity must be at least 1."""
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        self.lines.append(Line(sku, unit_cents, quantity))

    def subtotal(self) -> int:
        """Sum of the lines, in cents, before discounts and VAT."""
        return sum(line.unit_cents * line.quantity for line in self.lines)

    def total(self) -> int:
        """What the customer pays, in cents: subtotal, minus the discount, plus VAT (rounded half up)."""
        net = apply_discount(self.subtotal(), self.code)
        return net + (net * vat_rate(self.country) + 50) // 100
