"""Terminal and JSON reports of eval runs, and the CI gate."""

from __future__ import annotations

import json
from pathlib import Path

from keel.evals.errors import EvalGateFailed, EvalSpecError
from keel.evals.results import Comparison, RunSummary

__all__ = ["GateResult", "check_gate", "load_baseline", "print_comparison", "print_summary"]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def print_summary(summary: RunSummary, console=None) -> None:
    """A table per run: one row per target and grader."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"eval {summary.name} · run {summary.run_id} · dataset {summary.dataset}",
                  title_justify="left")
    for col, justify in (("target", "left"), ("grader", "left"), ("mean", "right"), ("pass rate", "right"),
                         ("scored", "right"), ("errors", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for t in summary.targets:
        for i, g in enumerate(t.graders):
            table.add_row(t.target if i == 0 else "", g.name, _num(g.mean), _pct(g.pass_rate), str(g.count),
                          str(g.errors) if g.errors else "")
        table.add_row("", "[b]all graders[/b]", _num(t.mean_score), f"[b]{_pct(t.pass_rate)}[/b]",
                      f"{t.passed}/{t.items} passed", str(t.errored) if t.errored else "", end_section=True)
    console.print(table)
    errored = summary.errored
    items = sum(t.items for t in summary.targets)
    tail = f"{errored} of {items} items errored (see `keel eval show {summary.run_id} --errors`)" if errored \
        else f"{items} items, none errored"
    console.print(f"{summary.status}: {tail}")
    if summary.skipped_rows:
        console.print(f"{summary.skipped_rows} dataset row{'s' if summary.skipped_rows != 1 else ''} skipped "
                      f"(malformed, not graded): " + "; ".join(summary.skipped[:5])
                      + (" ..." if summary.skipped_rows > 5 else ""), markup=False)


def print_comparison(cmp: Comparison, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"{cmp.run_a} → {cmp.run_b}", title_justify="left")
    for col in ("target", "pass rate before", "after", "delta", "regressed", "improved"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for t in cmp.targets:
        color = "red" if t.delta < 0 else "green" if t.delta > 0 else ""
        delta = f"[{color}]{t.delta * 100:+.1f} pts[/{color}]" if color else "±0"
        label = t.target_b if t.target_a == t.target_b else f"{t.target_a} → {t.target_b}"
        table.add_row(label, _pct(t.pass_rate_a), _pct(t.pass_rate_b), delta, str(t.regressions), str(t.improvements))
    console.print(table)
    for t in cmp.targets:
        for r in t.regressed_items[:20]:
            console.print(f"  regressed: {t.target_b} item {r.idx}: {_num(r.before)} → {_num(r.after)}"
                          + (f" (now failing: {', '.join(r.failed_graders)})" if r.failed_graders else ""))


class GateResult:
    def __init__(self, run_id: str = "RUN", baseline_id: str | None = None) -> None:
        self.failures: list[str] = []
        self.run_id = run_id
        """The run checked, named in the fix."""
        self.baseline_id = baseline_id

    @property
    def ok(self) -> bool:
        return not self.failures


def load_baseline(path: Path) -> RunSummary:
    try:
        return RunSummary.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EvalSpecError(f"cannot read baseline {path}: {str(e).splitlines()[0]}",
                            hint="write one with `keel eval show RUN --json > baseline.json`") from None


def check_gate(summary: RunSummary, *, fail_under: float | None = None, baseline: RunSummary | None = None,
               max_regression: float | None = None) -> GateResult:
    """Whether a run passes the CI gate: every target's pass rate at least ``fail_under``,
    and no target's pass rate more than ``max_regression`` below the baseline's. A target whose
    every item errored fails whatever the options: nothing was graded, so nothing passed."""
    gate = GateResult(summary.run_id, baseline.run_id if baseline is not None else None)
    for t in summary.targets:
        if t.items and t.errored >= t.items:
            gate.failures.append(f"{t.target}: all {t.items} items errored, so nothing was graded")
    for t in summary.targets:
        if fail_under is not None and t.pass_rate < fail_under:
            gate.failures.append(f"{t.target}: pass rate {_pct(t.pass_rate)} is under --fail-under {_pct(fail_under)}")
    if baseline is not None and max_regression is not None:
        before = {t.target: t for t in baseline.targets}
        for t in summary.targets:
            b = before.get(t.target) or (baseline.targets[0] if len(baseline.targets) == len(summary.targets) == 1 else None)
            if b is not None and b.pass_rate - t.pass_rate > max_regression + 1e-12:
                gate.failures.append(
                    f"{t.target}: pass rate fell {(b.pass_rate - t.pass_rate) * 100:.1f} pts "
                    f"({_pct(b.pass_rate)} → {_pct(t.pass_rate)}), more than --max-regression {max_regression * 100:.1f} pts"
                )
    return gate


def raise_for_gate(gate: GateResult) -> None:
    if not gate.ok:
        run = gate.run_id
        hint = f"see why items errored with `keel eval show {run} --errors`, the failing items with " \
               f"`keel eval show {run} --html report.html`"
        if gate.baseline_id:
            hint += f"; regressions with `keel eval compare {gate.baseline_id} {run}`"
        raise EvalGateFailed("eval gate failed: " + "; ".join(gate.failures), hint=hint)


def summary_json(summary: RunSummary) -> str:
    data = json.loads(summary.model_dump_json())
    data["errored"] = summary.errored
    data["score"] = summary.score
    return json.dumps(data, indent=2)
