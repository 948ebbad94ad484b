"""Graded model calls: what a model was asked, what it answered, and what the graders said.

Distillation sets (:mod:`keel.optimize.distill`) and the router (:mod:`keel.optimize.router`)
learn from the same thing: the eval runs a user already has. Each result of a **model target**
is one model call whose request Keel can rebuild exactly — the stored eval spec and the stored
dataset item render the same messages the runner sent (the runner's own code does it) — and
whose answer and grades are stored in ``eval_results``.

Calls made **inside workflow runs** (Agent nodes) are kept with their messages as sent
(``model_call_messages``, :mod:`keel.workflows.call_messages`); when an eval ran the workflow as a
target, each call of that run carries the run's grades (:func:`workflow_calls`). A run with
several Agent nodes gives each of its calls the same grade: filter by node to take one. Calls of
workflow runs no eval graded (production traffic) are read by :func:`run_calls`, with no grades,
filtered by the runs' status instead (``keel distill export --ungraded``).

Grades: ``score`` is the mean over the graders (``eval_results.score``); ``grades`` holds each
grader's score by name, so a filter can name one grader (a trace grader's ``trace_check`` or
``trace_judge`` as well as any other).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from keel.evals.datasets import Datasets
from keel.evals.errors import EvalSpecError
from keel.evals.results import RunInfo, get_run, iter_results, list_runs
from keel.evals.spec import ModelTarget, parse_eval
from keel.models import Message, Tool, ToolCall
from keel.store import SQLiteStore

__all__ = ["GradedCall", "graded_calls", "request_messages", "run_calls", "workflow_calls"]


@dataclass(frozen=True)
class GradedCall:
    """One model call of an eval run, with its grades (or of a workflow run, :func:`run_calls`:
    no eval run, no grades)."""

    run_id: str
    target: str
    """The eval target's name (its label)."""
    idx: int
    """The dataset item."""
    model: str
    """The model string that answered."""
    messages: tuple[Message, ...]
    """The request, as sent."""
    tools: tuple[Tool, ...]
    output: Message
    """The assistant's answer: its text and tool calls."""
    score: float | None
    """Mean of the graders' scores (``None`` when none scored)."""
    passed: bool | None
    grades: dict[str, float | None]
    """Each grader's score, by grader name."""
    created_at: float
    workflow: str | None = None
    """For a call inside a workflow run: the workflow's name (``None``: an eval's model target)."""
    node: str | None = None
    """The Agent node that made the call."""
    workflow_run_id: str | None = None

    @property
    def input_key(self) -> str:
        """The same for two calls that were asked the same thing (messages and tools)."""
        data = [[m.model_dump(mode="json", exclude_defaults=True) for m in self.messages],
                [t.model_dump(mode="json") for t in self.tools]]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]

    def query_text(self) -> str:
        """The text a router embeds: the user's last message."""
        users = [m.content for m in self.messages if m.role == "user"]
        return users[-1] if users else (self.messages[-1].content if self.messages else "")

    def grade(self, grader: str | None) -> float | None:
        """The score of ``grader``, or the mean over graders when ``grader`` is ``None``."""
        return self.score if grader is None else self.grades.get(grader)


def request_messages(target: ModelTarget, item: dict) -> list[Message]:
    """The messages the eval runner sends for ``item`` (its own rendering code)."""
    from keel.evals.runner import _referenced_messages
    from keel.evals.templates import render

    ns = {"item": item}
    if target.messages_from is not None:
        return _referenced_messages(target.messages_from, ns)
    return [Message(role=m.role, content=render(m.content, ns)) for m in target.messages()]


def _tool_calls(raw: object) -> tuple[ToolCall, ...]:
    out = []
    for c in raw if isinstance(raw, list) else []:
        fn = c.get("function", {}) if isinstance(c, dict) else {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except json.JSONDecodeError:
            args = {}
        out.append(ToolCall(id=str(c.get("id", "")), name=str(fn.get("name", "")),
                            arguments=args if isinstance(args, dict) else {}))
    return tuple(out)


def _model_targets(info: RunInfo) -> dict[str, ModelTarget]:
    data = {k: v for k, v in info.spec.items() if not k.startswith("_")}
    spec = parse_eval(data, where=f"eval run {info.id}")
    return {t.label: t for t in spec.all_targets() if isinstance(t, ModelTarget)}


def graded_calls(store: SQLiteStore, *, runs: list[str] | None = None, targets: list[str] | None = None,
                 since: float | None = None, until: float | None = None,
                 limit_runs: int = 1000) -> Iterator[GradedCall]:
    """The graded calls of model targets in eval runs (``runs``: ids or prefixes; default all),
    oldest run first. Errored items (no answer) are left out."""
    infos = [get_run(store, r) for r in runs] if runs else list(reversed(list_runs(store, limit=limit_runs)))
    datasets = Datasets(store)
    for info in infos:
        try:
            model_targets = _model_targets(info)
        except EvalSpecError:  # a spec this version can no longer read: nothing to rebuild from
            continue
        wanted = [t for t in model_targets if targets is None or t in targets]
        if not wanted:
            continue
        items = {row.idx: row.item for row in datasets.rows(info.dataset_id)}
        for name in wanted:
            target = model_targets[name]
            tools = tuple(Tool(name=t.name, description=t.description, parameters=t.parameters)
                          for t in target.tools)
            for r in iter_results(store, info.id, target=name):
                if r.status != "ok" or r.sample is None or r.idx not in items:
                    continue
                created = _created_at(store, info.id, name, r.idx)
                if (since is not None and created < since) or (until is not None and created > until):
                    continue
                text = r.sample.get("output_text")
                output = Message.assistant(text if isinstance(text, str) else "",
                                           _tool_calls(r.sample.get("output_tools")))
                yield GradedCall(
                    run_id=info.id, target=name, idx=r.idx, model=str(r.sample.get("model") or target.model),
                    messages=tuple(request_messages(target, items[r.idx])), tools=tools, output=output,
                    score=r.score, passed=r.passed,
                    grades={g["name"]: g.get("score") for g in r.grades if "name" in g}, created_at=created,
                )


def _created_at(store: SQLiteStore, run_id: str, target: str, idx: int) -> float:
    rows = store.query("SELECT created_at FROM eval_results WHERE run_id = ? AND target = ? AND idx = ?",
                       (run_id, target, idx))
    return float(rows[0]["created_at"]) if rows else 0.0


def _where(where: list[str], params: list[object], columns: tuple[tuple[str, list[str] | None], ...],
           since: float | None, until: float | None) -> tuple[list[str], list[object]]:
    """``where``/``params`` extended by ``column IN (...)`` for each column given values, and the
    time window on ``m.created_at``."""
    for column, values in columns:
        if values:
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    if since is not None:
        where.append("m.created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("m.created_at <= ?")
        params.append(until)
    return where, params


def workflow_calls(store: SQLiteStore, *, runs: list[str] | None = None, targets: list[str] | None = None,
                   workflows: list[str] | None = None, nodes: list[str] | None = None,
                   since: float | None = None, until: float | None = None) -> Iterator[GradedCall]:
    """The model calls of Agent nodes in workflow runs that an eval graded (a workflow target's
    results; ``runs``: eval run ids or prefixes), each with its run's grades, oldest first."""
    from keel.workflows.call_messages import read

    ids = [get_run(store, r).id for r in runs] if runs else None
    where, params = _where(["e.status = 'ok'"], [], (("e.target", targets), ("m.workflow", workflows),
                                                       ("m.node_id", nodes), ("e.run_id", ids)), since, until)
    rows = store.query(
        "SELECT m.span_id, m.run_id AS workflow_run, m.workflow, m.node_id, m.model, m.messages, m.tools, m.output, "
        "m.created_at, e.run_id AS eval_run, e.target, e.idx, e.score, e.passed, e.grades "
        "FROM model_call_messages m JOIN eval_results e ON e.workflow_run_id = m.run_id "
        f"WHERE {' AND '.join(where)} ORDER BY m.created_at, m.span_id", params)
    for r in rows:
        messages, tools, output = read(r)
        grades = json.loads(r["grades"] or "[]")
        yield GradedCall(
            run_id=r["eval_run"], target=r["target"], idx=int(r["idx"]), model=r["model"], messages=tuple(messages),
            tools=tuple(tools), output=output, score=r["score"], passed=None if r["passed"] is None else bool(r["passed"]),
            grades={g["name"]: g.get("score") for g in grades if isinstance(g, dict) and "name" in g},
            created_at=float(r["created_at"]), workflow=r["workflow"], node=r["node_id"],
            workflow_run_id=r["workflow_run"])


RUN_STATUSES = ("succeeded", "failed", "cancelled", "waiting", "running")


def run_calls(store: SQLiteStore, *, workflows: list[str] | None = None, nodes: list[str] | None = None,
              statuses: list[str] | None = None, since: float | None = None,
              until: float | None = None) -> Iterator[GradedCall]:
    """The model calls of Agent nodes in workflow runs, graded or not, oldest first: the runs
    whose status is one of ``statuses`` (default: ``succeeded``), made between ``since`` and
    ``until``. Each has no grades (``score``, ``passed`` None) and no eval run (``run_id`` "")."""
    from keel.workflows.call_messages import read

    where, params = _where([], [], (("r.status", statuses or ["succeeded"]), ("m.workflow", workflows),
                                    ("m.node_id", nodes)), since, until)
    rows = store.query(
        "SELECT m.span_id, m.run_id AS workflow_run, m.workflow, m.node_id, m.model, m.messages, m.tools, m.output, "
        "m.created_at FROM model_call_messages m JOIN workflow_runs r ON r.id = m.run_id "
        f"WHERE {' AND '.join(where)} ORDER BY m.created_at, m.span_id", params)
    for r in rows:
        messages, tools, output = read(r)
        yield GradedCall(run_id="", target="", idx=0, model=r["model"], messages=tuple(messages), tools=tuple(tools),
                         output=output, score=None, passed=None, grades={}, created_at=float(r["created_at"]),
                         workflow=r["workflow"], node=r["node_id"], workflow_run_id=r["workflow_run"])
