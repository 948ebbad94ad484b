"""Distillation sets (``keel distill export``): graded model calls as OpenAI fine-tuning JSONL.

From the graded calls of eval runs (:mod:`keel.optimize.graded`): the calls of eval model
targets, and the calls Agent nodes made inside workflow runs that an eval graded (their messages
are stored as sent), filtered by run, target, workflow, node, model, time and grade; or, with
``ungraded``, the Agent-node calls of workflow runs whether an eval graded them or not (production
traffic), filtered by workflow, node, model, time and the runs' status, every call a chat line:

- **chat** (supervised): every call whose grade reaches the threshold, as a conversation that
  ends with the answer (OpenAI's chat fine-tuning format, tools and ``parallel_tool_calls``
  included);
- **preference** (DPO): for every input answered more than once (by several models, prompts or
  runs), the best-graded answer that reaches the threshold against the worst-graded one below it.

Both are split into ``train`` and ``validation`` by a hash of the input, so one input never
lands on both sides and a new export of more data keeps old lines where they were. Every line
is checked against its format before anything is written; the files are written under temporary
names and renamed at the end, so a failed export leaves nothing half-written. ``scrub_pii``
replaces what the Guardrails PII detectors find with ``[EMAIL]``, ``[PHONE]``, ...
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import UserError
from keel.models import Message
from keel.optimize.finetune_format import (
    chat_line,
    check_chat_line,
    check_preference_line,
    preference_line,
)
from keel.optimize.graded import RUN_STATUSES, GradedCall, graded_calls, run_calls, workflow_calls
from keel.store import SQLiteStore

__all__ = ["DistillError", "ExportFilter", "ExportReport", "check_file", "export", "scrub_text"]

PII_ENTITIES = ("credit_card", "iban", "us_ssn", "email", "phone", "ip_address")
FILES = ("chat.train.jsonl", "chat.validation.jsonl", "preference.train.jsonl", "preference.validation.jsonl")


class DistillError(UserError):
    """An export or a training set cannot be made or read as asked."""


@dataclass(frozen=True)
class ExportFilter:
    """Which graded calls an export takes."""

    runs: tuple[str, ...] = ()
    """Eval run ids (or prefixes); empty: every eval run."""
    targets: tuple[str, ...] = ()
    """Eval target names; empty: every model target."""
    models: tuple[str, ...] = ()
    """Model strings (``openai:gpt-4.1``) or a provider (``openai``); empty: every model."""
    workflows: tuple[str, ...] = ()
    """Workflow names: only calls made inside their runs; empty: model targets' and workflows' calls."""
    nodes: tuple[str, ...] = ()
    """Agent node ids: only calls those nodes made (workflow calls only)."""
    since: float | None = None
    until: float | None = None
    grader: str | None = None
    """Grade by this grader's score (an eval grader or a trace grader); default the mean."""
    min_score: float | None = None
    """A chat line needs a grade of at least this; ``None``: the item passed every grader."""
    ungraded: bool = False
    """Every Agent-node call of the workflow runs the other filters match, graded or not: no grade
    threshold, so no preference pairs (``runs``, ``targets``, ``grader``, ``min_score`` do not apply)."""
    statuses: tuple[str, ...] = ()
    """With ``ungraded``: the statuses of the runs to take; empty: ``succeeded``."""

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in asdict(self).items() if v is not None and v != () and v is not False]
        return ", ".join(parts) or "no filter"


@dataclass
class ExportReport:
    out_dir: str
    calls: int = 0
    """Graded calls the filters kept."""
    chat: dict[str, int] = field(default_factory=lambda: {"train": 0, "validation": 0})
    preference: dict[str, int] = field(default_factory=lambda: {"train": 0, "validation": 0})
    scrubbed: int = 0
    """PII findings replaced."""
    files: list[str] = field(default_factory=list)


def scrub_text(text: str) -> tuple[str, int]:
    """``text`` with the PII the Guardrails detectors find replaced by ``[ENTITY]``."""
    from keel.workflows.guardrails.pii import find_pii

    findings = find_pii(text, PII_ENTITIES)
    for f in sorted(findings, key=lambda f: f.start, reverse=True):
        text = text[:f.start] + f"[{f.entity.upper()}]" + text[f.end:]
    return text, len(findings)


def _model_matches(model: str, wanted: tuple[str, ...]) -> bool:
    return not wanted or any(model == w or model.split(":", 1)[0] == w for w in wanted)


def _passes(call: GradedCall, filt: ExportFilter) -> bool:
    if filt.ungraded:
        return True
    grade = call.grade(filt.grader)
    if filt.min_score is None:
        return bool(call.passed) if filt.grader is None else grade is not None and grade >= 1.0
    return grade is not None and grade >= filt.min_score


def _side(key: str, val_fraction: float) -> str:
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < val_fraction else "train"


def _no_match(store: SQLiteStore, filt: ExportFilter, seen: int, kept: int) -> DistillError:
    if filt.ungraded:
        return DistillError(f"no Agent-node calls of workflow runs match the filters ({filt.describe()})",
                            hint="loosen --workflow/--node/--model/--status/--since/--until (keel runs list shows "
                                 "the runs and their status); calls are stored with their messages unless "
                                 "KEEL_CALL_MESSAGES=off where the workflow ran")
    runs = store.query("SELECT COUNT(*) AS n FROM eval_runs")[0]["n"]
    if not runs:
        return DistillError("there are no eval runs in this store to export from",
                            hint="run an eval with a model or workflow target first: keel eval run EVAL.yaml")
    if not seen:
        return DistillError(f"no graded model calls match the filters ({filt.describe()}); {runs} eval run(s) "
                            "are stored",
                            hint="loosen --run/--target/--workflow/--node/--model/--since/--until (keel eval "
                                 "list shows the runs; exported are model targets' calls, and Agent nodes' calls "
                                 "in workflow runs an eval graded)")
    threshold = "passed every grader" if filt.min_score is None else f"graded >= {filt.min_score:g}"
    return DistillError(
        f"{seen} graded model call(s) match the filters ({filt.describe()}) but none "
        f"{threshold}" + (f" by grader {filt.grader!r}" if filt.grader else ""),
        hint="lower --min-score, or name another --grader")


def export(store: SQLiteStore, out_dir: Path, *, filt: ExportFilter | None = None, val_fraction: float = 0.1,
           scrub_pii: bool = False, progress: Callable[[int], None] | None = None) -> ExportReport:
    """Write the chat and preference sets of the calls ``filt`` keeps into ``out_dir``."""
    filt = filt or ExportFilter()
    _check_filter(filt)
    if not 0 <= val_fraction < 1:
        raise DistillError(f"--val-fraction {val_fraction:g} is out of range", hint="give a number in [0, 1)")
    report = ExportReport(out_dir=str(out_dir))
    by_input: dict[str, list[GradedCall]] = {}
    seen = 0
    for call in _calls(store, filt):
        if not _model_matches(call.model, filt.models):
            continue
        seen += 1
        by_input.setdefault(call.input_key, []).append(call)
        if progress:
            progress(seen)
    kept = sum(1 for calls in by_input.values() for c in calls if _passes(c, filt))
    if not kept:
        raise _no_match(store, filt, seen, kept)
    report.calls = seen
    lines: dict[str, list[dict[str, Any]]] = {name: [] for name in FILES}

    def clean(m: Message) -> Message:
        if not scrub_pii:
            return m
        text, n = scrub_text(m.content)
        report.scrubbed += n
        return m.model_copy(update={"content": text})

    for key, calls in by_input.items():
        side = _side(key, val_fraction)
        first = calls[0]
        messages = [clean(m) for m in first.messages]
        written: set[str] = set()
        for c in calls:
            if _passes(c, filt) and c.output.content not in written:
                written.add(c.output.content)
                line = chat_line(messages, clean(c.output), c.tools)
                _check(check_chat_line(line), c, "chat")
                lines[f"chat.{side}.jsonl"].append(line)
                report.chat[side] += 1
        graded = [c for c in calls if c.grade(filt.grader) is not None and c.output.content.strip()
                  and not c.output.tool_calls]
        if len(graded) >= 2 and messages and messages[-1].role == "user":
            best = max(graded, key=lambda c: c.grade(filt.grader))  # type: ignore[arg-type,return-value]
            worst = min(graded, key=lambda c: c.grade(filt.grader))  # type: ignore[arg-type,return-value]
            if (_passes(best, filt) and not _passes(worst, filt)
                    and best.output.content != worst.output.content):
                line = preference_line(messages, clean(best.output), clean(worst.output), first.tools)
                _check(check_preference_line(line), best, "preference")
                lines[f"preference.{side}.jsonl"].append(line)
                report.preference[side] += 1
    _write_all(out_dir, lines, report, filt)
    return report


def _check_filter(filt: ExportFilter) -> None:
    if filt.ungraded:
        graded_only = [flag for flag, value in (("--run", filt.runs), ("--target", filt.targets),
                                                ("--grader", filt.grader), ("--min-score", filt.min_score))
                       if value not in ((), None)]
        if graded_only:
            raise DistillError(f"--ungraded takes calls whether an eval graded them or not, so "
                               f"{'/'.join(graded_only)} (eval filters) cannot apply",
                               hint=f"drop {' and '.join(graded_only)}, or drop --ungraded to export graded calls")
        bad = [s for s in filt.statuses if s not in RUN_STATUSES]
        if bad:
            raise DistillError(f"--status {bad[0]!r} is not a run status",
                               hint=f"use one of: {', '.join(RUN_STATUSES)}")
    elif filt.statuses:
        raise DistillError("--status filters the workflow runs of an --ungraded export",
                           hint="add --ungraded (every Agent-node call of runs with that status), or drop --status")


def _calls(store: SQLiteStore, filt: ExportFilter) -> Iterator[GradedCall]:
    if filt.ungraded:
        yield from run_calls(store, workflows=list(filt.workflows) or None, nodes=list(filt.nodes) or None,
                             statuses=list(filt.statuses) or None, since=filt.since, until=filt.until)
        return
    runs, targets = list(filt.runs) or None, list(filt.targets) or None
    if not (filt.workflows or filt.nodes):
        yield from graded_calls(store, runs=runs, targets=targets, since=filt.since, until=filt.until)
    yield from workflow_calls(store, runs=runs, targets=targets, workflows=list(filt.workflows) or None,
                              nodes=list(filt.nodes) or None, since=filt.since, until=filt.until)


def _check(problem: str | None, call: GradedCall, kind: str) -> None:
    if problem and not call.run_id:  # a workflow run's call (--ungraded)
        raise DistillError(
            f"the {kind} line for workflow run {call.workflow_run_id}, node {call.node!r} breaks OpenAI's {kind} "
            f"fine-tuning format: {problem}; nothing was written",
            hint="leave that run out with --since/--until, --node or --status")
    if problem:
        raise DistillError(
            f"the {kind} line for eval run {call.run_id}, target {call.target!r}, item {call.idx} breaks "
            f"OpenAI's {kind} fine-tuning format: {problem}; nothing was written",
            hint="fix the eval's prompt or the item (or leave it out with --run/--target filters)")


def _write_all(out_dir: Path, lines: dict[str, list[dict[str, Any]]], report: ExportReport,
               filt: ExportFilter) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[Path, Path]] = []
    try:
        for name, rows in lines.items():
            if not rows:
                continue
            final = out_dir / name
            tmp = out_dir / f".{name}.{os.getpid()}.tmp"
            with tmp.open("w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            temps.append((tmp, final))
        manifest = {"created_at": time.time(), "filters": asdict(filt), "calls": report.calls,
                    "chat": report.chat, "preference": report.preference, "scrubbed_pii": report.scrubbed}
        tmp = out_dir / f".manifest.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        temps.append((tmp, out_dir / "manifest.json"))
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    for name in FILES:  # an old export's files that this one does not have would mix two exports
        if not lines[name]:
            (out_dir / name).unlink(missing_ok=True)
    for tmp, final in temps:
        os.replace(tmp, final)
        report.files.append(str(final))


def check_file(path: Path) -> tuple[str, int]:
    """The format of a fine-tuning JSONL file (``chat`` or ``preference``) and its line count, or a
    :class:`DistillError` naming the first line that breaks it."""
    if not path.is_file():
        raise DistillError(f"no file {path}", hint="give the path of a .jsonl file from keel distill export")
    kind: str | None = None
    n = 0
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError as e:
                raise DistillError(f"{path}:{lineno}: not valid JSON: {e.msg}",
                                   hint="each line must be one JSON object (JSONL)") from None
            if kind is None:
                kind = "preference" if isinstance(line, dict) and "input" in line else "chat"
            problem = (check_preference_line if kind == "preference" else check_chat_line)(line)
            if problem:
                raise DistillError(f"{path}:{lineno}: breaks OpenAI's {kind} fine-tuning format: {problem}",
                                   hint="fix or remove that line (keel distill export writes valid lines)")
            n += 1
    if kind is None:
        raise DistillError(f"{path} has no lines", hint="export a set first: keel distill export --out DIR")
    return kind, n
