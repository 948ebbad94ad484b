"""VAT by country, as a whole percentage."""

from __future__ import annotations

RATES = {"DE": 19, "FR": 20, "NL": 21}


def vat_rate(country: str) -> int:
    """The VAT percentage of ``country`` (an ISO code); an unknown country is an error."""
    try:
        return RATES[country]
    except KeyError:
        raise ValueError(f"no VAT rate for {country!r}") from None
