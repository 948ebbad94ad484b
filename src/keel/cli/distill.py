"""``keel distill ...``: graded model calls as fine-tuning sets, and a LoRA student trained on them."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import typer

from keel.errors import UserError

app = typer.Typer(help="Distillation sets: graded model calls of your evals as OpenAI fine-tuning JSONL, "
                       "and a small local model fine-tuned on them.", no_args_is_help=True)

EXPORT_EPILOG = (
    "The calls come from eval runs' model targets (the request is rebuilt from the stored eval and item, the "
    "answer and grades are the stored results) and from workflow runs an eval graded (an Agent node's calls, "
    "stored with their messages as sent, each with its run's grades; --workflow/--node take only those). chat.*.jsonl holds calls that passed every grader (or reached "
    "--min-score); preference.*.jsonl pairs, for an input answered more than once, the best answer that passes "
    "with the worst that does not. --ungraded takes instead every Agent-node call of workflow runs, graded or "
    "not (production traffic: keel distill export --ungraded --workflow support --since 7d), from runs that "
    "succeeded (or --status), as chat lines only. Every line is checked against OpenAI's format before anything "
    "is written; files appear only when the whole export succeeded."
)


class BadTime(UserError):
    """A --since/--until value is not a time."""


def parse_time(value: str | None, option: str) -> float | None:
    """``2026-12-01``, ``2026-12-01T10:00``, or an age: ``30m``, ``24h``, ``7d``."""
    if not value:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(value[:-1]) * units[value[-1]]
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise BadTime(f"{option} {value!r} is not a time", hint="give a date (2026-12-01, 2026-12-01T10:00) "
                      "or an age (30m, 24h, 7d)") from None


def _progress(n: int) -> None:
    if n % 200 == 0:
        print(f"\r{n} calls read", end="", file=sys.stderr, flush=True)


@app.command("export", epilog=EXPORT_EPILOG)
def export(out: Path = typer.Option(..., "--out", "-o", help="Folder for the JSONL files (created)."),  # noqa: B008
           run: list[str] = typer.Option([], "--run", help="Eval run id or prefix (repeat; default: all runs)."),  # noqa: B008
           target: list[str] = typer.Option([], "--target", help="Eval target name (repeat; default: all)."),  # noqa: B008
           model: list[str] = typer.Option([], "--model", help="Model string or provider (repeat; default: all)."),  # noqa: B008
           workflow: list[str] = typer.Option([], "--workflow",  # noqa: B008
                                              help="Only calls Agent nodes made in this workflow's runs (repeat)."),
           node: list[str] = typer.Option([], "--node", help="Only calls this Agent node made (repeat)."),  # noqa: B008
           since: str = typer.Option("", "--since", help="Calls graded (workflow calls: made) at or after: a date "
                                                         "or an age (7d)."),
           until: str = typer.Option("", "--until", help="Calls graded (workflow calls: made) at or before: a date "
                                                         "or an age."),
           grader: str = typer.Option("", "--grader",
                                      help="Grade by this grader (an eval or trace grader); default: all graders."),
           min_score: float | None = typer.Option(None, "--min-score",
                                                  help="Keep calls graded at least this (default: passed every "
                                                       "grader)."),
           ungraded: bool = typer.Option(False, "--ungraded",
                                         help="Every Agent-node call of workflow runs, graded by an eval or not "
                                              "(no grade threshold; no preference pairs)."),
           status: list[str] = typer.Option([], "--status",  # noqa: B008
                                            help="With --ungraded: runs with this status (repeat; default "
                                                 "succeeded)."),
           val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.9,
                                              help="Share of inputs for the validation files."),
           scrub_pii: bool = typer.Option(False, "--scrub-pii",
                                          help="Replace emails, phones, cards, IBANs, SSNs and IPs (the Guardrails "
                                               "PII detectors) with [EMAIL], [PHONE], ...")) -> None:
    """Export graded model calls (or, with --ungraded, workflow runs' calls) as OpenAI chat and
    preference (DPO) fine-tuning JSONL, split into train and validation."""
    from keel.optimize.distill import ExportFilter
    from keel.optimize.distill import export as do_export
    from keel.store import open_store

    filt = ExportFilter(runs=tuple(run), targets=tuple(target), models=tuple(model), workflows=tuple(workflow),
                        nodes=tuple(node),
                        since=parse_time(since, "--since"), until=parse_time(until, "--until"),
                        grader=grader or None, min_score=min_score, ungraded=ungraded, statuses=tuple(status))
    report = do_export(open_store(), out, filt=filt, val_fraction=val_fraction, scrub_pii=scrub_pii,
                       progress=_progress)
    if report.calls >= 200:
        print(file=sys.stderr)
    print(f"{report.calls} {'workflow-run' if ungraded else 'graded'} calls read")
    print(f"chat: {report.chat['train']} train, {report.chat['validation']} validation")
    print(f"preference: {report.preference['train']} train, {report.preference['validation']} validation")
    if scrub_pii:
        print(f"PII replaced: {report.scrubbed}")
    for f in report.files:
        print(f"wrote {f}")


@app.command("check")
def check(file: Path = typer.Argument(..., help="A fine-tuning JSONL file.")) -> None:  # noqa: B008
    """Check every line of a file against OpenAI's chat or preference fine-tuning format."""
    from keel.optimize.distill import check_file

    kind, n = check_file(file)
    print(f"{file}: {n} valid {kind} lines")


TRAIN_EPILOG = (
    "Needs the distill extra: pip install 'keel[distill]' (transformers, peft; torch CPU). BASE is a folder "
    "holding a causal LM in Hugging Face format (config.json, weights, tokenizer); nothing is downloaded. "
    "The adapter is merged into a full model in OUT, which the model string hf:OUT runs: put it in an eval "
    "next to the teacher (keel eval run). Checkpoints are saved every --save-every steps; run the same "
    "command again to resume."
)


@app.command("train", epilog=TRAIN_EPILOG)
def train(data: Path = typer.Argument(..., help="chat.train.jsonl from keel distill export."),  # noqa: B008
          base: Path = typer.Option(..., "--base", help="Folder of a small causal LM in Hugging Face format."),  # noqa: B008
          out: Path = typer.Option(..., "--out", "-o", help="Folder for the fine-tuned student."),  # noqa: B008
          epochs: int = typer.Option(2, "--epochs", min=1, max=100, help="Passes over the data."),
          rank: int = typer.Option(8, "--rank", min=1, max=256, help="LoRA rank."),
          lr: float = typer.Option(2e-4, "--lr", min=1e-7, max=1.0, help="Learning rate."),
          max_length: int = typer.Option(512, "--max-length", min=16, max=8192, help="Tokens per example."),
          save_every: int = typer.Option(20, "--save-every", min=1, help="Steps between checkpoints."),
          seed: int = typer.Option(0, "--seed", help="Seed of the shuffle and the adapter's init.")) -> None:
    """LoRA fine-tuning of a small local model on CPU from an exported chat set."""
    from keel.optimize.lora import TrainOptions, train_lora

    result = train_lora(data, base, out, TrainOptions(epochs=epochs, rank=rank, lr=lr, max_length=max_length,
                                                       save_every=save_every, seed=seed))
    print(f"trained {result.steps} steps on {result.examples} examples ({result.tokens} tokens, "
          f"{result.tokens_per_s:.0f} tokens/s); loss {result.first_loss:.3f} -> {result.last_loss:.3f}")
    if result.resumed_from:
        print(f"resumed from step {result.resumed_from}")
    print(f"student: {result.out} (model string hf:{result.out})")
