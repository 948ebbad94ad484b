"""Read SMART-format test collections (Cranfield, ADI, CACM, ...).

A SMART file is a sequence of records, each opening with ``.I <id>`` and holding
fields that open with a dot-letter line: ``.T`` title, ``.A`` authors, ``.B``
bibliographic data, ``.W`` text. Queries use the same format (``.I``, ``.W``).
Judgments are whitespace-separated ``query doc [grade ...]`` rows.

:func:`load_smart` finds the three files in a folder by their usual names, so
``keel context bench --dataset ../shared/datasets/cranfield`` needs no flags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from keel.errors import UserError

__all__ = ["SmartCollection", "SmartDoc", "load_smart", "parse_smart_records"]


class DatasetError(UserError):
    """A benchmark dataset folder is missing files or cannot be parsed."""


@dataclass(frozen=True)
class SmartDoc:
    """One record of a SMART file."""

    id: str
    """The ``.I`` id, as written (leading zeros stripped)."""
    title: str = ""
    text: str = ""
    """The ``.W`` field."""


@dataclass
class SmartCollection:
    """Documents, queries and graded judgments of one test collection."""

    name: str
    docs: list[SmartDoc]
    queries: list[SmartDoc]
    """Query ids are renumbered 1..n in file order (Cranfield's judgments use that order)."""
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    """``query id -> doc id -> gain`` (higher is more relevant; only gains > 0 are kept)."""


_FIELD = re.compile(r"^\.([A-Z])\s*(.*)$")


def parse_smart_records(text: str) -> list[SmartDoc]:
    """Every record in ``text``, in file order."""
    records: list[SmartDoc] = []
    current: dict[str, list[str]] | None = None
    current_id = ""
    key = ""

    def flush() -> None:
        if current is not None:
            records.append(
                SmartDoc(
                    id=current_id,
                    title=" ".join(" ".join(current.get("T", [])).split()),
                    text=" ".join(" ".join(current.get("W", [])).split()),
                )
            )

    for line in text.splitlines():
        m = _FIELD.match(line)
        if m and m.group(1) == "I":
            flush()
            current, current_id, key = {}, m.group(2).strip().lstrip("0") or "0", ""
        elif m and current is not None and len(line.split()[0]) == 2:
            key = m.group(1)
            current.setdefault(key, [])
            if m.group(2).strip():
                current[key].append(m.group(2))
        elif current is not None and key:
            current[key].append(line)
    flush()
    return records


def _find(folder: Path, patterns: tuple[str, ...], what: str) -> Path:
    for pattern in patterns:
        hits = sorted(p for p in folder.iterdir() if p.is_file() and re.fullmatch(pattern, p.name, re.I))
        if hits:
            return hits[0]
    raise DatasetError(
        f"{folder}: no {what} file found (looked for {', '.join(patterns)})",
        hint="point --dataset at a SMART collection folder, e.g. ../shared/datasets/adi",
    )


def load_smart(folder: str | Path) -> SmartCollection:
    """Load a SMART collection folder: documents (``*.all*``), queries (``*.qry``) and
    judgments (``*qrel*`` or ``*.rel``).

    Gains: a third column in 1..4 is a Cranfield-style grade where 1 is best, mapped
    to gain ``5 - grade``; grades outside 1..4 (Cranfield's ``-1``) are not relevant.
    With no usable third column (ADI's ``0``), every listed pair has gain 1.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder {folder} does not exist", hint="check the --dataset path")
    docs_path = _find(folder, (r".*\.all(\.\d+)?",), "documents (*.ALL)")
    qry_path = _find(folder, (r".*\.qry",), "queries (*.QRY)")
    rel_path = _find(folder, (r".*qrel.*(?<!readme)", r".*\.rel"), "judgments (*qrel*, *.REL)")
    read = lambda p: p.read_text(encoding="utf-8", errors="replace")  # noqa: E731
    docs = parse_smart_records(read(docs_path))
    raw_queries = parse_smart_records(read(qry_path))
    queries = [SmartDoc(id=str(i), title=q.title, text=q.text) for i, q in enumerate(raw_queries, 1)]
    if not docs or not queries:
        raise DatasetError(f"{folder}: no records parsed", hint="is this a SMART-format collection?")
    qrels: dict[str, dict[str, int]] = {}
    for n, line in enumerate(read(rel_path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DatasetError(f"{rel_path}:{n}: expected 'query doc [grade]', got {line!r}")
        q, d = parts[0].lstrip("0") or "0", parts[1].lstrip("0") or "0"
        gain = 1
        if len(parts) >= 3:
            try:
                grade = int(float(parts[2]))
            except ValueError:
                grade = 0
            if grade in (1, 2, 3, 4):
                gain = 5 - grade
            elif grade != 0:
                continue  # e.g. Cranfield's -1: not relevant
        qrels.setdefault(q, {})[d] = gain
    return SmartCollection(name=folder.name, docs=docs, queries=queries, qrels=qrels)
