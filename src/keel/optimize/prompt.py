"""``keel optimize prompt``: run (or resume) a prompt optimization and keep its result.

:func:`optimize_prompt` checks everything before it writes anything (the eval, its rows, the
target, the budget), then records the run and runs :class:`~keel.optimize.gepa.Search`. When it
finishes, the result (:mod:`keel.optimize.report`) is stored with the run and, for a workflow
target, the best instructions become the workflow's **draft** (nothing is published:
:func:`publish` does that when the user says so). A run that stops (killed, interrupted,
failed) keeps its memoized calls; :func:`resume_prompt` replays it to where it stopped.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from keel.evals.datasets import DatasetRow, Datasets
from keel.evals.spec import EvalSpec, load_eval, parse_eval
from keel.optimize.errors import OptimizeError
from keel.optimize.gepa import Options, Search, split_rows
from keel.optimize.report import build_report
from keel.optimize.state import CallLog, OptimizeRun, get_run
from keel.optimize.targets import OptTarget, WorkflowAgent, resolve_target
from keel.store import SQLiteStore

__all__ = ["optimize_prompt", "publish", "resume_prompt"]


def _is_file(spec: EvalSpec) -> bool:
    path = Path(spec.dataset)
    return path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson") and path.is_file()


def _rows(store: SQLiteStore, spec: EvalSpec) -> list[DatasetRow]:
    """The eval's rows; a dataset file is read, not imported (nothing is written before the checks)."""
    if _is_file(spec):
        from keel.evals.datasets import read_rows

        return list(read_rows(spec.dataset))
    datasets = Datasets(store)
    return list(datasets.rows(datasets.get(spec.dataset).id))


def _pinned(store: SQLiteStore, spec: EvalSpec) -> EvalSpec:
    """The spec with its dataset pinned to a stored version (a file is imported), so a resumed run
    reads the rows it started with even if the file changed since."""
    if _is_file(spec):
        return spec.model_copy(update={"dataset": Datasets(store).import_file(spec.dataset).dataset.ref})
    if "@" not in spec.dataset:
        return spec.model_copy(update={"dataset": Datasets(store).get(spec.dataset).ref})
    return spec


def _prepare(store: SQLiteStore, spec: EvalSpec, target_name: str, options: Options) -> tuple[OptTarget, list[DatasetRow]]:
    target = resolve_target(store, spec, target_name)
    rows = _rows(store, spec)
    split_rows(rows, fraction=options.val_fraction, seed=options.seed)  # TooFewRows before any write
    return target, rows


async def optimize_prompt(store: SQLiteStore, eval_path: str | Path, *, target: str, options: Options,
                          log: Any = None, run_id: str | None = None) -> OptimizeRun:
    """Start an optimization of ``target``'s instructions on the eval at ``eval_path``."""
    spec = load_eval(eval_path)
    opt_target, rows = _prepare(store, spec, target, options)
    if not options.reflection_model:
        options = replace(options, reflection_model=opt_target.model_string)
    # the budget check runs in Search's constructor: build it before the run row exists
    run_id = run_id or time.strftime("opt-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    search = Search(spec=spec, target=opt_target, rows=rows, options=options,
                    calls=CallLog(store, run_id, options.budget), run_id=run_id, log=log)
    spec = _pinned(store, spec)
    now = time.time()
    store.execute(
        "INSERT INTO optimize_runs (id, eval_path, eval_spec, target, options, status, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, 'running', ?, ?)",
        (run_id, str(Path(eval_path).resolve()), spec.model_dump_json(by_alias=False), target,
         json.dumps(options.__dict__), now, now))
    return await _execute(store, run_id, search, opt_target)


async def resume_prompt(store: SQLiteStore, run_id: str, *, log: Any = None) -> OptimizeRun:
    """Go on with a run that stopped; calls it already made are answered from the store."""
    run = get_run(store, run_id)
    if run.status == "finished":
        return run
    spec = parse_eval(run.eval_spec, where=f"optimization run {run.id}")
    options = Options(**run.options)
    opt_target, rows = _prepare(store, spec, run.target, options)
    search = Search(spec=spec, target=opt_target, rows=rows, options=options,
                    calls=CallLog(store, run.id, options.budget), run_id=run.id, log=log)
    store.execute("UPDATE optimize_runs SET status = 'running', error = NULL, updated_at = ? WHERE id = ?",
                  (time.time(), run.id))
    return await _execute(store, run.id, search, opt_target)


async def _execute(store: SQLiteStore, run_id: str, search: Search, target: OptTarget) -> OptimizeRun:
    try:
        await search.run()
        result = build_report(search)
        if isinstance(target, WorkflowAgent):
            result["draft"] = _save_draft(store, target, result)
    except OptimizeError as e:
        store.execute("UPDATE optimize_runs SET status = 'failed', error = ?, updated_at = ? WHERE id = ?",
                      (e.message, time.time(), run_id))
        raise
    finally:
        await search.aclose()
    store.execute("UPDATE optimize_runs SET status = 'finished', result = ?, updated_at = ? WHERE id = ?",
                  (json.dumps(result, ensure_ascii=False), time.time(), run_id))
    return get_run(store, run_id)


def _save_draft(store: SQLiteStore, target: WorkflowAgent, result: dict[str, Any]) -> dict[str, Any]:
    """Save the best instructions as the workflow's draft, unless the draft holds someone's
    unpublished edits (then the result keeps the text and says so)."""
    from keel.workflows.drafts import Drafts

    name = target.version.name
    if result["best"] == 0:
        return {"saved": False, "why": "no candidate beat the seed on validation"}
    source = target.source_for(result["candidates"][result["best"]]["instructions"])
    drafts = Drafts(store)
    current = drafts.get(name)
    if current is not None and current.digest != target.version.digest:
        return {"saved": False, "source": source,
                "why": f"the draft of {name!r} has unpublished edits (revision {current.revision}); it was left as is"}
    draft = drafts.save(name, source, base_revision=current.revision if current else 0, by="keel optimize")
    return {"saved": True, "workflow": name, "revision": draft.revision, "source": source}


def publish(store: SQLiteStore, run_id: str, *, out: Path | None = None) -> str:
    """Publish a finished run's best candidate: the workflow's draft as its next version, or, for a
    model target, a copy of the eval file with the new system message (``out``, default
    ``EVAL.optimized.yaml``). Returns what was made."""
    import yaml

    run = get_run(store, run_id)
    if run.status != "finished" or run.result is None:
        raise OptimizeError(f"optimization run {run.id} is {run.status}: there is nothing to publish yet",
                            hint=f"finish it first: `keel optimize resume {run.id}`")
    result = run.result
    if result["best"] == 0:
        raise OptimizeError(f"optimization run {run.id} found nothing better than the seed instructions "
                            f"({result['candidates'][0]['mean']:.2f} on validation)",
                            hint="run again with a larger --budget, more rows or another --reflection-model")
    best = result["candidates"][result["best"]]["instructions"]
    if result["kind"] == "workflow":
        from keel.workflows.drafts import Drafts

        draft = result.get("draft") or {}
        if not draft.get("saved"):
            raise OptimizeError(f"optimization run {run.id} did not save a draft: {draft.get('why')}",
                                hint="copy the best instructions from `keel optimize show "
                                     f"{run.id}` into the draft and publish it (`keel workflows publish`)")
        version, _created = Drafts(store).publish(draft["workflow"], revision=draft["revision"])
        made = f"{version.name}@{version.version}"
    else:
        spec = parse_eval(run.eval_spec, where=f"optimization run {run.id}")
        target = resolve_target(store, spec, run.target)
        data = target.apply(json.loads(Path(run.eval_path).read_text(encoding="utf-8"))
                            if run.eval_path.endswith(".json") else
                            yaml.safe_load(Path(run.eval_path).read_text(encoding="utf-8")), best)
        dest = out or Path(run.eval_path).with_suffix(".optimized.yaml")
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        tmp.replace(dest)
        made = str(dest)
    store.execute("UPDATE optimize_runs SET published = ?, updated_at = ? WHERE id = ?", (made, time.time(), run.id))
    return made
