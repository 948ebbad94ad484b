"""Datasets: versioned sets of items, imported from CSV or JSONL into Keel's store.

Each import of a name adds a new immutable version (unless the content is
identical to the latest, which is then reused). A malformed row is reported with
its line number and skipped; the rest is imported. JSONL lines in OpenAI's
format, ``{"item": {...}, "sample": {...}}``, keep their ``sample`` (a
precomputed output) apart from the item.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.evals.errors import DatasetError
from keel.safeload import InputLimitError, load_json
from keel.store import SQLiteStore
from keel.textcheck import lone_surrogate_at

__all__ = ["DatasetInfo", "DatasetRow", "Datasets", "ImportReport", "RowProblem", "read_rows"]

_BATCH = 1000


@dataclass(frozen=True)
class DatasetInfo:
    """One version of a dataset."""

    id: str
    name: str
    version: int
    source: str | None
    """The file it was imported from."""
    item_count: int
    digest: str
    """SHA-256 of the items, so identical imports are recognised."""
    created_at: float

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class DatasetRow:
    """One item of a dataset."""

    idx: int
    """Position in the dataset, from 0."""
    item: dict[str, Any]
    """The fields templates reach as ``{{item.field}}``."""
    sample: dict[str, Any] | None = None
    """A precomputed sample (OpenAI's ``{"item", "sample"}`` lines), if the file had one."""
    line: int | None = None
    """Line in the source file (CSV: the physical line the row starts on)."""


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    dataset: DatasetInfo
    problems: list[RowProblem] = field(default_factory=list)
    unchanged: bool = False
    """True when the content equalled the latest version, which was reused."""


def _format_of(path: Path, fmt: str | None) -> str:
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if fmt in ("csv", "tsv"):
        return fmt
    raise DatasetError(f"{path}: cannot tell the format from {path.suffix!r}", hint="pass --format csv or --format jsonl")


def read_rows(path: str | Path, *, format: str | None = None, problems: list[RowProblem] | None = None) -> Iterator[DatasetRow]:
    """Stream the rows of a CSV or JSONL file; malformed rows go to ``problems``."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"dataset file {p} does not exist", hint="check the path")
    fmt = _format_of(p, format)
    problems = problems if problems is not None else []
    idx = 0
    # Bytes that are not UTF-8 are kept as lone surrogates (surrogateescape), so a bad line
    # is reported and skipped instead of stopping the whole import.
    with p.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        if fmt == "jsonl":
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                bad = _not_utf8(line)
                if bad:
                    problems.append(RowProblem(line_no, bad))
                    continue
                try:
                    value = load_json(line)
                except json.JSONDecodeError as e:
                    problems.append(RowProblem(line_no, f"not valid JSON: {e.msg} (column {e.colno})"))
                    continue
                except InputLimitError as e:
                    problems.append(RowProblem(line_no, e.reason))
                    continue
                surrogate = lone_surrogate_at(value, "line")
                if surrogate:
                    problems.append(RowProblem(line_no, f"{surrogate} holds a lone surrogate (a \\ud800-\\udfff "
                                                        "escape alone), which is not text"))
                    continue
                if not isinstance(value, dict):
                    problems.append(RowProblem(line_no, f"expected a JSON object, got {type(value).__name__}"))
                    continue
                sample = None
                if isinstance(value.get("item"), dict) and set(value) <= {"item", "sample"}:
                    sample = value.get("sample")
                    if sample is not None and not isinstance(sample, dict):
                        problems.append(RowProblem(line_no, "\"sample\" must be an object"))
                        continue
                    value = value["item"]
                yield DatasetRow(idx, value, sample, line_no)
                idx += 1
        else:
            reader = csv.reader(f, delimiter="\t" if fmt == "tsv" else ",")
            try:
                header = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise DatasetError(f"{p}:1: cannot read the header: {e}") from None
            if not header or any(not h.strip() for h in header) or len(set(header)) != len(header):
                raise DatasetError(f"{p}:1: the header needs unique, non-empty column names (got {header})")
            if _not_utf8(",".join(header)):
                raise DatasetError(f"{p}:1: the header is {_not_utf8(','.join(header))}",
                                   hint="save the file as UTF-8")
            while True:
                line_no = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    problems.append(RowProblem(line_no, f"malformed CSV: {e}"))
                    continue
                if not row:
                    continue
                bad = next((f"{reason} in column {name!r}" for name, cell in zip(header, row, strict=False)
                            if (reason := _not_utf8(cell))), None)
                if bad:
                    problems.append(RowProblem(line_no, bad))
                    continue
                if len(row) != len(header):
                    problems.append(RowProblem(line_no, f"{len(row)} fields, but the header has {len(header)}"))
                    continue
                yield DatasetRow(idx, dict(zip(header, row, strict=True)), None, line_no)
                idx += 1


def _not_utf8(text: str) -> str | None:
    """Why ``text`` (read with surrogateescape) is not UTF-8, or None when it is."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as e:
        byte = ord(text[e.start]) - 0xDC00
        what = f"byte 0x{byte:02x}" if 0x80 <= byte <= 0xFF else "a lone surrogate"
        return f"not valid UTF-8 ({what} at column {e.start + 1})"


class _Rollback(Exception):
    pass


class Datasets:
    """Datasets in a Keel store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def import_file(self, path: str | Path, *, name: str | None = None, format: str | None = None) -> ImportReport:
        """Import a CSV/TSV/JSONL file as the next version of ``name`` (default: the file's stem)."""
        p = Path(path)
        problems: list[RowProblem] = []
        info, unchanged = self._import(name or p.stem, read_rows(p, format=format, problems=problems), str(p))
        return ImportReport(dataset=info, problems=problems, unchanged=unchanged)

    def import_rows(self, name: str, rows: Iterable[DatasetRow], *, source: str | None = None) -> DatasetInfo:
        """Store ``rows`` as the next version of ``name``; the same content reuses the latest."""
        return self._import(name, rows, source)[0]

    def _import(self, name: str, rows: Iterable[DatasetRow], source: str | None) -> tuple[DatasetInfo, bool]:
        if not name or any(c in name for c in "@/ "):
            raise DatasetError(f"invalid dataset name {name!r}", hint="use letters, digits, - and _ (no @, / or spaces)")
        latest = self._latest(name)
        dataset_id = uuid.uuid4().hex
        digest = hashlib.sha256()
        count = 0
        try:
            with self.store.transaction():
                batch: list[tuple[Any, ...]] = []
                for row in rows:
                    item = json.dumps(row.item, ensure_ascii=False, sort_keys=True)
                    sample = json.dumps(row.sample, ensure_ascii=False, sort_keys=True) if row.sample is not None else None
                    digest.update(item.encode())
                    digest.update(b"\x00" + (sample or "").encode() + b"\x01")
                    batch.append((dataset_id, count, row.line, item, sample))
                    count += 1
                    if len(batch) >= _BATCH:
                        self._insert(batch)
                        batch.clear()
                if batch:
                    self._insert(batch)
                hexdigest = digest.hexdigest()
                if latest is not None and latest.digest == hexdigest:
                    raise _Rollback
                version = (latest.version + 1) if latest else 1
                now = time.time()
                self.store.execute(
                    "INSERT INTO eval_datasets (id, name, version, source, item_count, digest, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (dataset_id, name, version, source, count, hexdigest, now),
                )
        except _Rollback:
            assert latest is not None
            return latest, True
        return DatasetInfo(dataset_id, name, version, source, count, hexdigest, now), False

    def _insert(self, batch: list[tuple[Any, ...]]) -> None:
        self.store.executemany(
            "INSERT INTO eval_dataset_items (dataset_id, idx, line, item, sample) VALUES (?, ?, ?, ?, ?)", batch
        )

    @staticmethod
    def _info(row: dict[str, Any]) -> DatasetInfo:
        return DatasetInfo(row["id"], row["name"], int(row["version"]), row["source"], int(row["item_count"]),
                           row["digest"], float(row["created_at"]))

    def _latest(self, name: str) -> DatasetInfo | None:
        rows = self.store.query("SELECT * FROM eval_datasets WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
        return self._info(rows[0]) if rows else None

    def list(self) -> list[DatasetInfo]:
        """Every version of every dataset, by name then version."""
        return [self._info(r) for r in self.store.query("SELECT * FROM eval_datasets ORDER BY name, version")]

    def get(self, ref: str) -> DatasetInfo:
        """``name`` (latest version), ``name@N``, or a dataset id."""
        name, _, version = ref.partition("@")
        if version:
            if not version.isdigit():
                raise DatasetError(f"invalid dataset version in {ref!r}", hint="write NAME@VERSION, e.g. qa@2")
            rows = self.store.query("SELECT * FROM eval_datasets WHERE name = ? AND version = ?", (name, int(version)))
        else:
            rows = self.store.query(
                "SELECT * FROM eval_datasets WHERE name = ? OR id = ? ORDER BY version DESC LIMIT 1", (name, name)
            )
        if not rows:
            known = sorted({d.name for d in self.list()})
            raise DatasetError(
                f"no dataset {ref!r}",
                hint=(f"datasets: {', '.join(known)}" if known else "import one with `keel datasets import FILE`"),
            )
        return self._info(rows[0])

    def rows(self, dataset_id: str, *, start: int = 0, limit: int | None = None, page: int = 500) -> Iterator[DatasetRow]:
        """Stream items in order, a page at a time (memory stays flat for any size)."""
        end = None if limit is None else start + limit
        idx = start
        while end is None or idx < end:
            n = page if end is None else min(page, end - idx)
            batch = self.store.query(
                "SELECT idx, line, item, sample FROM eval_dataset_items WHERE dataset_id = ? AND idx >= ?"
                " ORDER BY idx LIMIT ?",
                (dataset_id, idx, n),
            )
            if not batch:
                return
            for r in batch:
                yield DatasetRow(int(r["idx"]), json.loads(r["item"]),
                                 json.loads(r["sample"]) if r["sample"] else None, r["line"])
            idx = int(batch[-1]["idx"]) + 1
