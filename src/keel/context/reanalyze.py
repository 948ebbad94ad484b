"""Re-analysis: a collection indexed by an older analyzer gets terms under the current one.

BM25 terms are keyed by chunk hash *and* analyzer (the ``texts`` row keeps the terms
of the analyzer that first stored the text; the ``terms`` table holds any other
analyzer's), so re-analysing one collection never changes what another collection of
the same home reads, and nothing is deleted: the old terms stay where they were.

:func:`reanalyze` runs when :meth:`keel.context.Collection.open` finds a collection
recorded with another analyzer than this process's (an older Keel's, see
:data:`keel.context.lexical.LEGACY_ANALYZERS`): it rebuilds each chunk's indexed text
(its heading path or title on top of the stored text, exactly what ingest analysed),
analyses it, stores the terms in batches (an interrupted run keeps what it stored and
resumes on the next open), and then records the new analyzer in the collection. Large
collections show progress on standard error. Why the analyzer changed: decision 0034.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from keel.context.lexical import ANALYZER, analyze
from keel.errors import KeelError, StoreError

if TYPE_CHECKING:
    from keel.context._backend import ContextBackend

__all__ = ["PROGRESS_FROM", "reanalyze"]

PROGRESS_FROM = 2000
"""Chunk count from which re-analysis reports progress on standard error."""
_BATCH = 1000


def _indexed_text(hash_: str, text: str, title: str, heading_path: str, signature: str) -> str:
    """The text ingest analysed for this chunk (see :func:`keel.context.ingest.embed_text`)."""
    from keel.context.ingest import embed_text
    from keel.context.types import ChunkDraft, content_hash

    try:
        path = tuple(json.loads(heading_path or "[]"))
    except (ValueError, TypeError):
        path = ()
    full = embed_text(ChunkDraft(text=text, title=title or "", heading_path=path, signature=signature or ""))
    if full != text and content_hash(full) != hash_ and content_hash(text) == hash_:
        return text  # stored as it was indexed (a record, or a chunk with no context on top)
    return full


def reanalyze(backend: ContextBackend, name: str, *, progress: bool | None = None) -> int:
    """Store terms under this process's analyzer for every chunk of the collection lacking them,
    record the analyzer in the collection, and return how many texts were analysed.

    ``progress``: ``None`` reports on standard error from :data:`PROGRESS_FROM` chunks.
    """
    total = backend.count_stale(ANALYZER)
    show = progress if progress is not None else total >= PROGRESS_FROM
    started = last = time.monotonic()
    bar = None
    if show and total and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("chunks"),
                       TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        bar.start()
        task = bar.add_task(f"re-analysing {name} ({ANALYZER})", total=total)
    done = 0
    try:
        # a batch at a time from the store (a million chunks' text is never all in memory): each
        # batch's terms make its chunks current, so the next query starts after them
        previous = None
        while part := backend.stale_chunks(ANALYZER, limit=_BATCH):
            if part[0][0] == previous:  # the store did not keep the last batch: stop, never loop
                raise StoreError(f"re-analysing collection {name!r}: the terms of chunk {previous} were not stored",
                                 hint="check that the store is writable, then open the collection again")
            previous = part[0][0]
            backend.put_terms([(r[0], analyze(_indexed_text(*r))) for r in part], ANALYZER)
            done += len(part)
            if bar is not None:
                bar.update(task, completed=min(done, total))
            elif show and (time.monotonic() - last >= 0.5 or done >= total):
                last = time.monotonic()
                print(f"re-analysing {name} ({ANALYZER}): {done}/{total} chunks", file=sys.stderr, flush=True)
    except KeelError:
        raise
    except Exception as e:  # a read-only home or store: say what and how, no traceback (batches stored stay)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StoreError(f"cannot re-analyse collection {name!r} for the {ANALYZER!r} analyzer: {first}",
                         hint="an upgraded Keel writes new BM25 terms once per collection: open it once as a user"
                              " who can write to its store (KEEL_HOME or the PostgreSQL store)") from None
    finally:
        if bar is not None:
            bar.stop()
    backend.set_meta({"analyzer": ANALYZER})
    if show and done:
        print(f"re-analysed {done} chunks of {name} in {time.monotonic() - started:.1f} s", file=sys.stderr,
              flush=True)
    return done
