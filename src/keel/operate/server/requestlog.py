"""Where each answered request goes: a JSON access-log line and a ``serve_requests`` row.

Neither happens on the event loop. The access-log middleware hands a finished
request's record to :meth:`RequestLog.put` (a lock-free queue append); a daemon
thread wakes every ``interval`` seconds, writes the log lines and inserts the rows
in one transaction (with each key's ``last_used_at``). :meth:`stop` (the app's shutdown) flushes what is left, so a
clean shutdown loses nothing; a crash loses at most the last ``interval``.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from keel import jsontext
from keel.store import SQLiteStore

__all__ = ["COLUMNS", "RequestLog"]

COLUMNS = ("id", "started_at", "method", "path", "route", "workflow", "version", "key_id", "status",
           "latency_ms", "ttfb_ms", "input_tokens", "output_tokens", "streamed", "run_id", "run_status")
"""The ``serve_requests`` columns, in the order :meth:`RequestLog.put` records carry them. ``run_id``
and ``run_status`` are the run the request ran and how it ended, when it ended within the request."""

_INSERT = f"INSERT INTO serve_requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_MAX_BATCH = 5000
_ROWS_PER_COMMIT = 100


class RequestLog:
    """Batching writer of access-log lines and ``serve_requests`` rows."""

    def __init__(self, store: SQLiteStore, logger: logging.Logger, *, interval: float = 0.5) -> None:
        self.store, self.log, self.interval = store, logger, interval
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        """Rows that could not be written (the store failed); the log lines still went out."""

    def put(self, line: dict[str, Any], row: tuple[Any, ...]) -> None:
        """Queue one request: ``line`` for the access log, ``row`` (see :data:`COLUMNS`) for the table."""
        self._queue.put((line, row))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="keel-requestlog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write everything still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> int:
        """Write what is queued now; the number of requests written."""
        written = 0
        while True:
            batch: list[tuple[dict[str, Any], tuple[Any, ...]]] = []
            with_rows = []
            try:
                while len(batch) < _MAX_BATCH:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            if not batch:
                return written
            for line, row in batch:
                self.log.info(jsontext.dumps(line, default=str))
                with_rows.append(row)
            last_used: dict[str, float] = {}
            for row in with_rows:
                if row[7] is not None:
                    last_used[row[7]] = max(row[1], last_used.get(row[7], 0.0))
            # Short transactions: the event loop's commits wait for the writer lock meanwhile.
            for i in range(0, len(with_rows), _ROWS_PER_COMMIT):
                rows = with_rows[i:i + _ROWS_PER_COMMIT]
                try:
                    with self.store.transaction():
                        self.store.executemany(_INSERT, rows)
                        if i + _ROWS_PER_COMMIT >= len(with_rows):
                            # `keel keys list` shows when each key was last used.
                            self.store.executemany("UPDATE serve_keys SET last_used_at = ? WHERE id = ?",
                                                   [(at, key_id) for key_id, at in last_used.items()])
                except Exception:
                    self.dropped += len(rows)
                    logging.getLogger("keel.serve").warning("could not record %d requests in serve_requests",
                                                            len(rows))
            written += len(batch)
