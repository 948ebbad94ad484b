"""Running an eval: sample each target on each item, grade, store, resume after a stop.

Results are written per (target, item) in small batches; a run that stops (Ctrl-C,
a crash, ``kill -9``) resumes with :func:`resume_eval`, which skips every stored
item, so a model is never asked twice for a finished item. A failure on one item
(a model error, a template naming a missing field, a judge timing out) is stored
as that item's error; the run goes on and reports how many items errored.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keel.errors import KeelError
from keel.evals.datasets import DatasetRow, Datasets
from keel.evals.errors import EvalSpecError
from keel.evals.graders import GradeResult, Graders
from keel.evals.limits import ProviderLimits
from keel.evals.results import RunSummary, get_run, summarize
from keel.evals.spec import EvalSpec, ModelTarget, PrecomputedTarget, WorkflowTarget, parse_eval
from keel.evals.templates import render
from keel.evals.traces import TraceCache
from keel.evals.workflow_target import WorkflowSampler, workflow_run_id
from keel.store import SQLiteStore

__all__ = ["Progress", "resume_eval", "run_eval"]

Progress = Callable[[int, int], None]
"""Called with (items done, items total) as the run goes."""

_FLUSH_ROWS = 200
_FLUSH_SECONDS = 1.0


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _sample_from_text(text: str, parsed: Any = None, **extra: Any) -> dict[str, Any]:
    if parsed is None and text[:1] in "{[":
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    return {"output_text": text, "output_json": parsed, **extra}


class _Writer:
    """Buffers result rows and commits them in batches."""

    def __init__(self, store: SQLiteStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.rows: list[tuple[Any, ...]] = []
        self.last = time.monotonic()

    def add(self, target: str, row: DatasetRow, sample: dict[str, Any] | None, grades: list[GradeResult],
            error: str | None, workflow_run: str | None = None) -> None:
        errors = [f"{g.name}: {g.error}" for g in grades if g.error]
        if error is None and errors:
            error = "; ".join(errors)
        scores = [g.score for g in grades if g.score is not None]
        score = sum(scores) / len(scores) if scores else None
        passed = error is None and all(g.passed is not False for g in grades)
        self.rows.append((
            self.run_id, target, row.idx, "error" if error else "ok", score, int(passed),
            _json(sample) if sample is not None else None,
            _json([g.model_dump(exclude_none=True) for g in grades]), error, time.time(), workflow_run,
        ))
        if len(self.rows) >= _FLUSH_ROWS or time.monotonic() - self.last > _FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            with self.store.transaction():
                self.store.executemany(
                    "INSERT INTO eval_results (run_id, target, idx, status, score, passed, sample,"
                    " grades, error, created_at, workflow_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (run_id, target, idx) DO UPDATE SET status = excluded.status,"
                    " score = excluded.score, passed = excluded.passed, sample = excluded.sample,"
                    " grades = excluded.grades, error = excluded.error, created_at = excluded.created_at,"
                    " workflow_run_id = excluded.workflow_run_id",
                    self.rows,
                )
            self.rows.clear()
        self.last = time.monotonic()


AnyTarget = PrecomputedTarget | ModelTarget | WorkflowTarget


def _target_name(target: AnyTarget) -> str:
    return target.name if isinstance(target, PrecomputedTarget) else target.label


class _Run:
    def __init__(self, store: SQLiteStore, spec: EvalSpec, run_id: str, dataset_id: str, *,
                 concurrency: int, progress: Progress | None) -> None:
        self.store = store
        self.spec = spec
        self.run_id = run_id
        self.dataset_id = dataset_id
        self.concurrency = concurrency
        self.progress = progress
        self.limits = ProviderLimits(spec.rate_limits, per_provider_concurrency=concurrency)
        self.graders = Graders(limit=self.limits.limit, python_workers=min(concurrency, 4),
                               traces=TraceCache(store))
        self.workflows = WorkflowSampler(store)
        self.models: dict[str, Any] = {}
        self.writer = _Writer(store, run_id)
        self.done = 0
        self.total = 0
        self._validator: Any = None
        if spec.item_schema:
            from jsonschema import Draft202012Validator

            self._validator = Draft202012Validator(spec.item_schema)

    def _item_problem(self, row: DatasetRow) -> str | None:
        if self._validator is None:
            return None
        from jsonschema.exceptions import best_match

        error = best_match(self._validator.iter_errors(row.item))
        if error is None:
            return None
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        line = f" (line {row.line})" if row.line is not None else ""
        return f"item {row.idx}{line} does not match item_schema at {path}: {error.message}"

    def _precomputed_sample(self, target: PrecomputedTarget, row: DatasetRow) -> dict[str, Any]:
        if target.field is None:
            if row.sample is None:
                raise EvalSpecError(
                    f"item {row.idx} (line {row.line}) has no sample",
                    hint="give the target a field (type: precomputed, field: output), or use a model target",
                )
            sample = dict(row.sample)
            if "output_text" not in sample:
                choices = sample.get("choices") or []
                text = choices[0].get("message", {}).get("content", "") if choices else ""
                sample["output_text"] = text
            sample.setdefault("output_json", None)
            if sample["output_json"] is None:
                sample = {**sample, **_sample_from_text(str(sample["output_text"]))}
            return sample
        if target.field not in row.item:
            keys = ", ".join(sorted(row.item)[:12])
            raise EvalSpecError(f"item has no field {target.field!r} (fields: {keys})")
        value = row.item[target.field]
        if isinstance(value, str):
            return _sample_from_text(value)
        return {"output_text": _json(value), "output_json": value}

    async def _model_sample(self, target: ModelTarget, row: DatasetRow) -> dict[str, Any]:
        from keel.models import Message, ModelSettings, Tool, get_model

        ns = {"item": row.item}
        if target.messages_from is not None:
            messages = _referenced_messages(target.messages_from, ns)
        else:
            messages = [Message(role=m.role, content=render(m.content, ns)) for m in target.messages()]
        settings = ModelSettings(temperature=target.temperature, top_p=target.top_p, max_tokens=target.max_tokens,
                                 seed=target.seed, timeout=target.timeout)
        tools = [Tool(name=t.name, description=t.description, parameters=t.parameters) for t in target.tools]
        model = self.models.get(target.model)
        if model is None:  # one per model string for the run: building one reads the settings
            model = self.models[target.model] = get_model(target.model)
        async with self.limits.limit(model.provider):
            try:
                response = await asyncio.wait_for(
                    model.generate(messages, tools=tools, output_schema=target.output_schema,
                                   settings=settings).response(),
                    target.timeout,
                )
            except TimeoutError:
                raise EvalSpecError(f"{target.model} timed out after {target.timeout:g} s") from None
        extra: dict[str, Any] = {}
        if target.tools:  # OpenAI's sample.output_tools: the calls in Chat Completions' shape
            extra["output_tools"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _json(c.arguments)}}
                for c in response.tool_calls]
        return _sample_from_text(
            response.text, response.parsed, model=response.model,
            usage=response.usage.model_dump(exclude_none=True), latency_ms=round(response.latency_ms, 1), **extra,
        )

    async def _one(self, target: AnyTarget, row: DatasetRow) -> None:
        name = _target_name(target)
        sample: dict[str, Any] | None = None
        grades: list[GradeResult] = []
        error = self._item_problem(row)
        workflow_run = workflow_run_id(self.run_id, name, row.idx) if isinstance(target, WorkflowTarget) else None
        if error is None:
            try:
                if isinstance(target, ModelTarget):
                    sample = await self._model_sample(target, row)
                elif isinstance(target, WorkflowTarget):
                    sample = await self.workflows.sample(target, row.item, workflow_run)  # type: ignore[arg-type]
                else:
                    sample = self._precomputed_sample(target, row)
            except KeelError as e:
                if isinstance(target, WorkflowTarget):
                    error = e.message
                else:
                    error = f"{'model ' + target.model if isinstance(target, ModelTarget) else 'sample'}: {e.message}"
        if sample is not None:
            sync = [self.graders.grade_sync_only(g, item=row.item, sample=sample) for g in self.spec.graders]
            pending = [g for g, r in zip(self.spec.graders, sync, strict=True) if r is None]
            done_async = iter(await asyncio.gather(*(self.graders.grade(g, item=row.item, sample=sample)
                                                     for g in pending))) if pending else iter(())
            grades = [r if r is not None else next(done_async) for r in sync]
        if workflow_run is None and sample is not None and isinstance(sample.get("workflow_run_id"), str):
            workflow_run = sample["workflow_run_id"]  # a dataset built from runs
        self.writer.add(name, row, sample, grades, error, workflow_run)
        self._tick()

    def _one_sync(self, target: PrecomputedTarget, row: DatasetRow) -> None:
        """The no-I/O path (precomputed outputs, local graders): no task per item."""
        sample: dict[str, Any] | None = None
        grades: list[GradeResult] = []
        error = self._item_problem(row)
        if error is None:
            try:
                sample = self._precomputed_sample(target, row)
            except KeelError as e:
                error = f"sample: {e.message}"
        if sample is not None:
            grades = [self.graders.grade_sync_only(g, item=row.item, sample=sample) for g in self.spec.graders]  # type: ignore[misc]
        workflow_run = sample.get("workflow_run_id") if sample is not None else None
        self.writer.add(target.name, row, sample, grades, error,
                        workflow_run if isinstance(workflow_run, str) else None)
        self._tick()

    def _tick(self) -> None:
        self.done += 1
        if self.progress and (self.done % 100 == 0 or self.done == self.total):
            self.progress(self.done, self.total)

    def _done_items(self, target: str) -> set[int]:
        rows = self.store.query("SELECT idx FROM eval_results WHERE run_id = ? AND target = ?", (self.run_id, target))
        return {int(r["idx"]) for r in rows}

    async def run(self) -> None:
        datasets = Datasets(self.store)
        item_count = datasets.get(self.dataset_id).item_count
        targets = self.spec.all_targets()
        for t in targets:
            if isinstance(t, WorkflowTarget):
                self.workflows.check(t)
        try:
            for target in targets:
                name = _target_name(target)
                finished = self._done_items(name)
                self.total += item_count - len(finished)
            for target in targets:
                name = _target_name(target)
                finished = self._done_items(name)
                local = isinstance(target, PrecomputedTarget) and all(_is_local(g) for g in self.spec.graders)
                queue: asyncio.Queue[DatasetRow | None] = asyncio.Queue(maxsize=self.concurrency * 2)

                async def worker(t: AnyTarget = target,
                                 q: asyncio.Queue[DatasetRow | None] = queue) -> None:
                    while (row := await q.get()) is not None:
                        await self._one(t, row)

                if local:
                    for row in datasets.rows(self.dataset_id):
                        if row.idx not in finished:
                            self._one_sync(target, row)  # type: ignore[arg-type]
                            if self.done % 500 == 0:
                                await asyncio.sleep(0)  # let cancellation and other tasks in
                    continue

                async def produce(q: asyncio.Queue[DatasetRow | None] = queue, skip: set[int] = finished) -> None:
                    for row in datasets.rows(self.dataset_id):
                        if row.idx not in skip:
                            await q.put(row)
                    for _ in range(self.concurrency):
                        await q.put(None)

                tasks = [asyncio.create_task(produce())]
                tasks += [asyncio.create_task(worker()) for _ in range(self.concurrency)]
                try:
                    # gather raises the first failure at once (e.g. a stop inside a worker)
                    await asyncio.gather(*tasks)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.writer.flush()
            await self.graders.aclose()
            await self.workflows.aclose()
            for model in self.models.values():
                await model.aclose()


def _referenced_messages(ref: str, ns: dict[str, Any]) -> list[Any]:
    """The messages an item holds (OpenAI's ``item_reference``), in chat shape."""
    from keel.evals.openai_inputs import content_text
    from keel.evals.templates import resolve
    from keel.models import Message

    value = resolve(ref.strip().removeprefix("{{").removesuffix("}}"), ns)
    if isinstance(value, str):
        return [Message(role="user", content=value)]
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise EvalSpecError(f"{ref} must hold a list of {{role, content}} messages, not {type(value).__name__}")
    out = []
    for i, m in enumerate(value):
        role = m.get("role")
        if role not in ("system", "developer", "user", "assistant"):
            raise EvalSpecError(f"{ref}[{i}] needs a role: system, developer, user or assistant")
        out.append(Message(role=role, content=content_text(m.get("content", ""), f"{ref}[{i}].content")))
    return out


def _is_local(grader: Any) -> bool:
    from keel.evals.graders.specs import StringCheckGrader, TextSimilarityGrader

    return isinstance(grader, StringCheckGrader) or (
        isinstance(grader, TextSimilarityGrader) and grader.evaluation_metric != "cosine"
    )


def _dataset_for(store: SQLiteStore, spec: EvalSpec) -> tuple[str, list[str], int]:
    """The dataset id, and the malformed rows of a file dataset (the first 20, and how many)."""
    datasets = Datasets(store)
    path = Path(spec.dataset)
    if path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson") and path.is_file():
        report = datasets.import_file(path)
        if report.problems:
            import sys

            for p in report.problems[:20]:
                print(f"warning: {path}: skipped {p}", file=sys.stderr)
        return report.dataset.id, [str(p) for p in report.problems[:20]], len(report.problems)
    return datasets.get(spec.dataset).id, [], 0


def _stored_spec(spec: EvalSpec, skipped: list[str] | None = None, skipped_rows: int = 0) -> dict[str, Any]:
    data = spec.model_dump(mode="json", by_alias=False)
    data["_targets"] = [_target_name(t) for t in spec.all_targets()]
    if skipped_rows:
        data["_skipped"], data["_skipped_rows"] = skipped or [], skipped_rows
    return data


async def _execute(store: SQLiteStore, spec: EvalSpec, run_id: str, dataset_id: str, *,
                   concurrency: int | None, progress: Progress | None) -> RunSummary:
    run = _Run(store, spec, run_id, dataset_id, concurrency=concurrency or spec.concurrency, progress=progress)
    store.execute("UPDATE eval_runs SET status = 'running', updated_at = ? WHERE id = ?", (time.time(), run_id))
    try:
        await run.run()
    except BaseException:
        store.execute("UPDATE eval_runs SET status = 'interrupted', updated_at = ? WHERE id = ?",
                      (time.time(), run_id))
        raise
    now = time.time()
    store.execute("UPDATE eval_runs SET status = 'finished', updated_at = ?, finished_at = ? WHERE id = ?",
                  (now, now, run_id))
    summary = summarize(store, run_id)
    store.execute("UPDATE eval_runs SET summary = ? WHERE id = ?", (summary.model_dump_json(), run_id))
    return summary


async def run_eval(store: SQLiteStore, spec: EvalSpec, *, concurrency: int | None = None,
                   progress: Progress | None = None, run_id: str | None = None) -> RunSummary:
    """Run ``spec`` as a new eval run; returns its summary (``summary.run_id`` to resume or compare)."""
    dataset_id, skipped, skipped_rows = _dataset_for(store, spec)
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
    now = time.time()
    store.execute(
        "INSERT INTO eval_runs (id, name, dataset_id, spec, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (run_id, spec.name, dataset_id, _json(_stored_spec(spec, skipped, skipped_rows)), "running", now, now),
    )
    return await _execute(store, spec, run_id, dataset_id, concurrency=concurrency, progress=progress)


async def resume_eval(store: SQLiteStore, run_id: str, *, concurrency: int | None = None,
                      progress: Progress | None = None) -> RunSummary:
    """Finish a run that stopped: items already stored are not redone."""
    info = get_run(store, run_id)
    data = {k: v for k, v in info.spec.items() if not k.startswith("_")}
    spec = parse_eval(data, where=f"eval run {info.id}")
    return await _execute(store, spec, info.id, info.dataset_id, concurrency=concurrency, progress=progress)
