"""``keel optimize ...``: make an agent better from its eval (prompt optimization), resume,
show, list and publish the result."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import typer

app = typer.Typer(help="Optimize an agent from its eval: better instructions within a budget of model calls.",
                  no_args_is_help=True)

PROMPT_EPILOG = (
    "The eval's dataset is split into rows to learn from and rows to validate on (at least 4 rows). "
    "Each model call (the target answering one row, or the reflection model proposing instructions) "
    "counts against --budget; judge calls of model graders do not. Every call is stored as it returns: "
    "a run that stops resumes with `keel optimize resume RUN` and repeats at most the call in flight. "
    "For an Agent node the best instructions become the workflow's draft; nothing is published until "
    "`keel optimize publish RUN`."
)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_result(run) -> None:
    r = run.result
    if r is None:
        print(f"{run.id}: {run.status}" + (f" ({run.error})" if run.error else "") + f", {run.calls} calls stored")
        return
    print(f"{run.id}: {run.status}, target {r['target']}")
    for c in r["candidates"]:
        mark = "*" if c["id"] == r["best"] else " "
        front = " front" if c["on_front"] else ""
        parent = f" from {c['parent']}" if c["parent"] is not None else ""
        print(f" {mark} candidate {c['id']:<3} {c['origin']:<10}{parent:<8} validation {c['mean']:.2f}{front}")
    cost = r["cost"]
    usd = f", ${cost['usd']:.4f}" if cost.get("usd") else ""
    print(f"cost: {cost['calls']} of {cost['budget']} calls ({cost['rollouts']} rollouts, {cost['reflections']} "
          f"reflections), {cost['input_tokens']} input + {cost['output_tokens']} output tokens{usd}")
    print(f"seed {r['seed_score']:.2f} -> best {r['best_score']:.2f}")
    print(r["diff"])
    draft = r.get("draft")
    if draft:
        print(f"draft of {draft['workflow']}: revision {draft['revision']}" if draft.get("saved")
              else f"no draft saved: {draft['why']}")
    if r["best"] and not run.published:
        print(f"publish it: keel optimize publish {run.id}")
    elif run.published:
        print(f"published: {run.published}")


@app.command("prompt", epilog=PROMPT_EPILOG)
def prompt(eval_file: Path = typer.Argument(..., help="The eval (YAML/JSON) whose graders say what better is."),  # noqa: B008
           target: str = typer.Option(..., "--target", "-t",
                                      help="An Agent node id of the eval's workflow target, or a model target's name."),
           budget: int = typer.Option(..., "--budget", "-b", min=1, help="Model calls the run may make."),
           reflection_model: str = typer.Option("", "--reflection-model",
                                                help="Model that proposes instructions (default: the target's)."),
           minibatch: int = typer.Option(3, "--minibatch", min=1, max=64, help="Rows a proposal is tried on first."),
           val_fraction: float = typer.Option(0.5, "--val-fraction", min=0.1, max=0.9,
                                              help="Share of rows kept to validate on."),
           demos: int = typer.Option(3, "--demos", min=0, max=16,
                                     help="Few-shot examples from passing rows to try at the end (0: none)."),
           seed: int = typer.Option(0, "--seed", help="Seed of the split, parents and minibatches."),
           as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Optimize the instructions of an Agent node (or a model target) on an eval: reflective
    prompt evolution with a Pareto front of candidates (GEPA), then few-shot examples."""
    from keel.optimize.gepa import Options
    from keel.optimize.prompt import optimize_prompt
    from keel.store import open_store

    options = Options(budget=budget, reflection_model=reflection_model, minibatch=minibatch,
                      val_fraction=val_fraction, seed=seed, demos=demos)
    run = asyncio.run(optimize_prompt(open_store(), eval_file, target=target, options=options, log=_log))
    print(json.dumps({"id": run.id, **run.result}) if as_json else "", end="\n" if as_json else "")
    if not as_json:
        _print_result(run)


@app.command("resume")
def resume(run_id: str = typer.Argument(..., help="The run id (or a unique prefix).")) -> None:
    """Go on with a run that stopped; the calls it made are not made again."""
    from keel.optimize.prompt import resume_prompt
    from keel.store import open_store

    _print_result(asyncio.run(resume_prompt(open_store(), run_id, log=_log)))


@app.command("show")
def show(run_id: str = typer.Argument(..., help="The run id (or a unique prefix)."),
         as_json: bool = typer.Option(False, "--json", help="Print the stored result as JSON.")) -> None:
    """Show a run: candidates and their validation scores, the diff, the cost."""
    from keel.optimize.state import get_run
    from keel.store import open_store

    run = get_run(open_store(), run_id)
    if as_json:
        print(json.dumps({"id": run.id, "status": run.status, "error": run.error, "published": run.published,
                          "result": run.result}))
    else:
        _print_result(run)


@app.command("list")
def list_() -> None:
    """List optimization runs."""
    from keel.optimize.state import list_runs
    from keel.store import open_store

    runs = list_runs(open_store())
    if not runs:
        print("no optimization runs yet: `keel optimize prompt EVAL --target NODE --budget N`")
    for run in runs:
        score = f"{run.result['seed_score']:.2f} -> {run.result['best_score']:.2f}" if run.result else ""
        print(f"{run.id}  {run.status:<9} {run.target:<24} {run.calls:>5} calls  {score}")


@app.command("publish")
def publish(run_id: str = typer.Argument(..., help="The run id (or a unique prefix)."),
            out: Path | None = typer.Option(None, "--out", help="Model target: where to write the eval copy."),  # noqa: B008
            ) -> None:
    """Publish a finished run's best instructions: the workflow's draft as its next version, or (a model
    target) a copy of the eval file with the new system message."""
    from keel.optimize.prompt import publish as do_publish
    from keel.store import open_store

    print(f"published {do_publish(open_store(), run_id, out=out)}")
