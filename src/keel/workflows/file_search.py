"""The File search node: retrieval over a collection of Keel's context engine (:mod:`keel.context`).

Output: ``output_parsed`` is ``{"query": ..., "results": [{"index": 1, "text", "source", "anchor",
"title", "start_line", "end_line", "score"}, ...]}`` (best first), and ``output_text`` the passages numbered ``[1]``, ``[2]``...
so an Agent node can cite them and a Guardrails hallucination check can hold it to them
(``sources: nodes.<id>.output_parsed.results``).

The results are memoized for the step: a re-executed step (after a crash) sees the passages the
first execution saw, even if the collection changed meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from keel.errors import KeelError
from keel.workflows.nodes import NodeFailure, StepOutcome
from keel.workflows.spec import FileSearchNode
from keel.workflows.tracing import Span

if TYPE_CHECKING:
    from keel.workflows.engine import Engine, _ActiveRun

__all__ = ["run_file_search", "unavailable_reason"]


def unavailable_reason() -> str | None:
    """Why the context engine cannot be used here (a missing extra), or None."""
    try:
        import keel.context  # noqa: F401
    except ImportError as e:
        return f"{e}"
    return None


def _search(node: FileSearchNode, query: str) -> list[dict[str, Any]]:
    from keel.context import Collection

    with Collection.open(node.collection, create=False) as col:
        hits = col.search(query, k=node.max_results, mode=node.mode, where=node.where)
    return [{"index": i + 1, "text": h.text, "source": h.citation.source, "anchor": h.citation.anchor,
             "title": h.citation.title, "start_line": h.citation.start_line, "end_line": h.citation.end_line,
             "score": round(h.score, 6)} for i, h in enumerate(hits)]


def _as_text(results: list[dict[str, Any]]) -> str:
    parts = []
    for r in results:
        where = r["source"] + (f"#{r['anchor']}" if r.get("anchor") else "")
        parts.append(f"[{r['index']}] {where}\n{r['text']}")
    return "\n\n".join(parts)


async def run_file_search(engine: Engine, run: _ActiveRun, node: FileSearchNode, env: dict[str, Any],
                          node_span: Span) -> StepOutcome:
    key = f"{run.seq}:search"
    memo = engine.memo_get(run.id, key)
    if memo is not None:
        parsed = json.loads(memo)
    else:
        try:
            query = run.wf.expressions[(node.id, "query")].evaluate(env)
        except Exception as e:  # CelError: a variable missing at run time
            raise NodeFailure(f"cannot build the query: {e}", kind="cel") from None
        query = query if isinstance(query, str) else json.dumps(query, ensure_ascii=False)
        try:
            results = await asyncio.to_thread(_search, node, query)
        except KeelError as e:
            raise NodeFailure(f"file search in {node.collection!r} failed: {e.message}"
                              + (f" ({e.hint})" if e.hint else ""), kind="file_search") from None
        except Exception as e:  # e.g. an embedder whose extra is not installed here
            raise NodeFailure(f"file search in {node.collection!r} failed: {type(e).__name__}: {e}",
                              kind="file_search") from None
        parsed = {"query": query, "results": results}
        engine.memo_put(run.id, key, json.dumps(parsed))
    node_span.attributes.update({"keel.file_search.collection": node.collection,
                                 "keel.file_search.results": len(parsed["results"])})
    return StepOutcome("next", {"output_text": _as_text(parsed["results"]), "output_parsed": parsed})
