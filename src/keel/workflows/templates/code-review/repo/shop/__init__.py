"""A small shop back end: carts, discounts and VAT."""
