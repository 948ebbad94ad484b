"""PII detectors: patterns, then validation, so a number is reported only when it could be real.

=============  =========================================================================
entity         found by / validated by
=============  =========================================================================
credit_card    13-19 digits (spaces or dashes allowed) / the Luhn checksum
iban           country code, 2 check digits, 11-30 letters or digits / the length for the
               country and the ISO 13616 mod-97 check
us_ssn         ``AAA-GG-SSSS`` / not area 000, 666 or 9xx, not group 00, not serial 0000
email          ``local@domain.tld`` / no empty or dotted-edge parts, a letters-only TLD
phone          ``+CC ...``, ``(AAA) ...`` or grouped digits / 10-15 digits (8-15 after ``+``)
ip_address     dotted quad / every part 0-255
=============  =========================================================================

Findings carry a *masked* value (``•••• 1111``), never the value itself, so they can be
stored in traces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Finding", "find_pii", "iban_ok", "luhn_ok", "ssn_ok"]


@dataclass(frozen=True)
class Finding:
    """One piece of personal data in a text."""

    entity: str
    start: int
    end: int
    masked: str

    def to_json(self) -> dict:
        return {"entity": self.entity, "start": self.start, "end": self.end, "masked": self.masked}


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# IBAN lengths of common countries (ISO 13616 registry); others must be 15-34 characters.
_IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "AE": 23, "SA": 24, "IL": 23, "BR": 29,
}


def iban_ok(iban: str) -> bool:
    """Length for its country and the mod-97 check (``iban`` without spaces, upper case)."""
    expected = _IBAN_LENGTHS.get(iban[:2])
    if (expected is not None and len(iban) != expected) or not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])")
_EMAIL = re.compile(r"(?<![\w.+-])([A-Za-z0-9._%+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.([A-Za-z]{2,24}))\b")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,5}){0,4}(?![\w])")
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def _tail(value: str, keep: int = 4) -> str:
    return "•••• " + re.sub(r"\W", "", value)[-keep:]


def find_pii(text: str, entities: list[str] | tuple[str, ...]) -> list[Finding]:
    """Validated PII of the given kinds in ``text``, in order of position."""
    found: list[Finding] = []

    def taken(start: int, end: int) -> bool:
        return any(f.start < end and start < f.end for f in found)

    def add(entity: str, m: re.Match, masked: str) -> None:
        if not taken(m.start(), m.end()):
            found.append(Finding(entity, m.start(), m.end(), masked))

    # Most specific first: a card or IBAN is not reported again as a phone number.
    if "iban" in entities:
        for m in _IBAN.finditer(text):
            if iban_ok(m.group().replace(" ", "")):
                add("iban", m, m.group()[:2] + " " + _tail(m.group()))
    if "credit_card" in entities:
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                add("credit_card", m, _tail(digits))
    if "us_ssn" in entities:
        for m in _SSN.finditer(text):
            if ssn_ok(m.group(1), m.group(3), m.group(4)):
                add("us_ssn", m, "•••-••-" + m.group(4))
    if "email" in entities:
        for m in _EMAIL.finditer(text):
            local, domain = m.group(1), m.group(2)
            if local.startswith(".") or local.endswith(".") or ".." in local \
                    or any(p.startswith("-") or p.endswith("-") for p in domain.split(".")):
                continue
            add("email", m, local[0] + "•••@" + domain)
    if "ip_address" in entities:
        for m in _IPV4.finditer(text):
            if all(int(g) <= 255 for g in m.groups()):
                add("ip_address", m, "•••." + m.group(4))
    if "phone" in entities:
        for m in _PHONE.finditer(text):
            value = m.group()
            digits = re.sub(r"\D", "", value)
            international = value.startswith("+")
            # Bare digit runs are ids and amounts far more often than phone numbers.
            shaped = international or "(" in value or len(re.findall(r"\d+", value)) >= 2
            if shaped and (8 if international else 10) <= len(digits) <= 15 and len(set(digits)) > 1:
                add("phone", m, _tail(digits))
    return sorted(found, key=lambda f: f.start)
