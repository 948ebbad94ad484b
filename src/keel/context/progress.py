"""What an ingest shows while it works, on standard error.

- ``"bar"``: a rich progress bar (files done of files found, chunks indexed,
  chunks embedded, elapsed time and ETA), for a terminal;
- ``"lines"``: one plain line at most every half second, and a last one at the
  end (``indexing into docs: 12/40 files, 96 chunks, 64 embedded``), for logs
  and pipes (``keel context add --progress`` when standard error is not a terminal);
- ``False``: nothing. ``True`` picks the bar on a terminal and lines otherwise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

__all__ = ["IngestProgress", "ProgressMode", "progress"]

ProgressMode = bool | Literal["bar", "lines"]


class IngestProgress:
    """Counters of an ingest; this base class shows nothing."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total = what, total
        self.files = self.chunks = self.embedded_chunks = 0

    def advance(self, files: int = 1, chunks: int = 0) -> None:
        """``files`` more files are done (indexed, unchanged or skipped), with ``chunks`` chunks indexed."""
        self.files += files
        self.chunks += chunks
        self.show()

    def embedded(self, n: int) -> None:
        """``n`` more chunks were embedded (and their vectors kept)."""
        self.embedded_chunks += n
        self.show()

    def show(self, final: bool = False) -> None: ...

    def line(self) -> str:
        return (f"{self.what}: {self.files}/{self.total} files, {self.chunks} chunks, "
                f"{self.embedded_chunks} embedded")


class _Lines(IngestProgress):
    def __init__(self, what: str, total: int) -> None:
        super().__init__(what, total)
        self._last = 0.0

    def show(self, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._last >= 0.5:
            self._last = now
            print(self.line(), file=sys.stderr, flush=True)


class _Bar(IngestProgress):
    def __init__(self, what: str, total: int, bar: Any) -> None:
        super().__init__(what, total)
        self._bar = bar
        self._task = bar.add_task(what, total=total, counts="")

    def show(self, final: bool = False) -> None:
        self._bar.update(self._task, completed=self.files,
                         counts=f"{self.chunks} chunks, {self.embedded_chunks} embedded")


@contextmanager
def progress(mode: ProgressMode, total: int, what: str) -> Iterator[IngestProgress]:
    """The progress display ``mode`` names, for ``total`` files."""
    if mode is True:
        mode = "bar" if sys.stderr.isatty() else "lines"
    if mode == "lines":
        shown = _Lines(what, total)
        try:
            yield shown
        finally:
            shown.show(final=True)
        return
    if mode != "bar":
        yield IngestProgress(what, total)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("files,"),
               TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        yield _Bar(what, total, bar)
