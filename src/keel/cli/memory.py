"""``keel memory ...``: facts compacted from conversations (docs/memory.md)."""

from __future__ import annotations

import json
import time

import typer

EPILOG = """Examples:

  keel memory record assistant-memory --scope user:42 --thread thr_123

  keel memory compact assistant-memory --scope user:42 --model local:/path/to/SmolLM2-135M-Instruct.gguf

  keel memory show assistant-memory --scope user:42 --all

  keel memory show assistant-memory --scope user:42 --query "where does the user live?"

  keel memory forget assistant-memory --scope user:42 3f9a01c2

An Agent node recalls and records with:  memory: {collection: assistant-memory, scope: "user:{{ workflow.user_id }}"}"""

app = typer.Typer(help="Memory by compaction: conversations turned into dated, deduplicated facts an agent "
                       "searches on later turns. Record turns, compact them with a model, show and forget facts.",
                  no_args_is_help=True, epilog=EPILOG)

_SCOPE = typer.Option("default", "--scope", help="Whose memory (a user, a team): the scope an Agent node's "
                      "`memory.scope` gives.")


def _memory(collection: str, scope: str):
    from keel.context.memory import Memory

    return Memory.open(collection, scope=scope)


@app.command("show", epilog=EPILOG)
def show(collection: str = typer.Argument(..., help="The memory's collection (an Agent node's `memory.collection`)."),
         scope: str = _SCOPE,
         all_facts: bool = typer.Option(False, "--all", help="Superseded facts too, with the dates they held."),
         query: str = typer.Option(None, "--query", help="Only the facts an agent would recall for this text, "
                                   "best first."),
         k: int = typer.Option(8, "--k", min=1, max=1000, help="With --query: how many facts."),
         as_json: bool = typer.Option(False, "--json", help="One JSON document, with sources.")) -> None:
    """List the facts remembered for a scope: current ones (oldest first), or those a query recalls."""
    with _memory(collection, scope) as mem:
        facts = mem.search(query, k=k, include_superseded=all_facts) if query else mem.facts(
            include_superseded=all_facts)
        pending = mem.pending()
        if as_json:
            print(json.dumps({"collection": collection, "scope": scope, "pending_turns": pending,
                              "facts": [f.to_json() for f in facts]}, indent=2, ensure_ascii=False))
            return
        if not facts:
            scopes = [r["scope"] for r in mem.store.query(
                "SELECT DISTINCT scope FROM memory_facts WHERE collection = ? ORDER BY scope", (collection,))]
            others = f"; scopes with facts: {', '.join(scopes)}" if scopes else ""
            print(f"no facts for scope {scope!r} in memory {collection!r}{others}")
        for f in facts:
            src = ", ".join(f"{s.get('source')}#{s.get('position')}" for s in f.sources)
            print(f"{f.id[:12]}  {f.render()[2:]}  [{src}]")
        if pending:
            print(f"{pending} turns wait for compaction: keel memory compact {collection} --scope {scope} --model ...")


@app.command("forget", epilog=EPILOG)
def forget(collection: str = typer.Argument(..., help="The memory's collection."),
           fact_ids: list[str] = typer.Argument(None, help="Fact ids (8+ characters of them) from "  # noqa: B008
                                                "`keel memory show`."),
           scope: str = _SCOPE,
           everything: bool = typer.Option(False, "--everything", help="Forget every fact and recorded turn "
                                           "of the scope.")) -> None:
    """Delete facts (a fact it had superseded becomes current again), or a whole scope's memory."""
    from keel.context.memory import MemoryError

    if not fact_ids and not everything:
        raise MemoryError("name the facts to forget, or pass --everything",
                          hint=f"`keel memory show {collection} --scope {scope}` lists the fact ids")
    with _memory(collection, scope) as mem:
        n = mem.forget(fact_ids or (), everything=everything)
    print(f"forgot {n} fact{'s' if n != 1 else ''} of scope {scope!r}")


@app.command("record", epilog=EPILOG)
def record(collection: str = typer.Argument(..., help="The memory's collection."),
           scope: str = _SCOPE,
           thread: str = typer.Option(None, "--thread", help="A ChatKit thread id: its user and assistant messages."),
           run: str = typer.Option(None, "--run", help="A workflow run id: its conversation (every Agent node's "
                                   "turns).")) -> None:
    """Record a thread's or a run's turns for compaction (no model call; recording twice adds nothing)."""
    from keel.context.memory import MemoryError, run_turns, thread_turns

    if (thread is None) == (run is None):
        raise MemoryError("give one of --thread or --run", hint="e.g. keel memory record NAME --thread thr_123")
    with _memory(collection, scope) as mem:
        turns = thread_turns(mem.store, thread) if thread else run_turns(mem.store, run)
        n = mem.record(turns, source=f"thread:{thread}" if thread else f"run:{run}")
    print(f"recorded {n} new turns of {len(turns)} (scope {scope!r}); compact them with `keel memory compact`")


@app.command("compact", epilog=EPILOG)
def compact(collection: str = typer.Argument(..., help="The memory's collection."),
            scope: str = _SCOPE,
            model: str = typer.Option(..., "--model", help="Model that extracts the facts (strict structured "
                                      "output), e.g. local:/path/to/model.gguf or openai:gpt-4.1-mini."),
            batch: int = typer.Option(8, "--batch", min=1, max=200, help="Turns per model call."),
            roles: str = typer.Option("user", "--roles", help="Roles shown to the model, comma-separated."),
            watch: float = typer.Option(None, "--watch", min=1, help="Keep going: look for new turns every this "
                                        "many seconds (a background job; Ctrl-C stops it).")) -> None:
    """Turn the recorded turns not compacted yet into facts: dated, deduplicated by hash, the newest fact
    of a subject and attribute superseding older ones."""
    with _memory(collection, scope) as mem:
        while True:
            n = mem.compact(model, batch=batch, roles=[r.strip() for r in roles.split(",") if r.strip()])
            print(f"{n} new facts in scope {scope!r}; {len(mem.facts())} current", flush=True)
            if watch is None:
                return
            time.sleep(watch)
