"""Few-shot demonstrations when reflection finds nothing (what a small local reflection model gives):
the search keeps budget to score them, and picks them across the answers that passed, so a
classifier is shown more than the one label it already over-uses (benchmarks/optimize.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.optimize.scripted_labels import SEED, install, write_eval


def _run(tmp_path, budget: int):
    from keel.optimize import Options, optimize_prompt
    from keel.store import open_store

    install()
    return asyncio.run(optimize_prompt(open_store(), write_eval(tmp_path), target="kinds",
                                       options=Options(budget=budget, reflection_model="scripted:opt-shrug")))


@pytest.mark.parametrize("budget", [22, 24, 27, 28, 30, 31])
def test_rejected_proposals_leave_budget_for_demonstrations_of_several_labels(tmp_path, budget):
    """Before, the loop spent down to its last proposal and demonstrations were tried only when the
    leftover happened to cover the validation rows (here: at 30, not at 27, 28 or 31). At 22 and 24
    the minibatches never reach the one passing ``b`` row: the leftover budget runs the best
    candidate on more learning rows to find it (bootstrapping)."""
    run = _run(tmp_path, budget)
    result = run.result
    outcomes = [e.get("outcome", "") for e in result["iterations"]]
    assert any(o.startswith("rejected") for o in outcomes)
    assert not any(o.startswith("accepted") for o in outcomes)  # reflection found nothing
    assert result["seed_score"] < 1.0
    demos = [c for c in result["candidates"] if c["origin"] == "demos"]
    assert len(demos) == 1, result["candidates"]
    text = demos[0]["instructions"]
    assert text.startswith(SEED) and "Output:\na" in text and "Output:\nb" in text
    assert result["best"] == demos[0]["id"] and result["best_score"] == 1.0
    assert result["cost"]["calls"] <= budget


def test_a_budget_without_room_for_a_proposal_and_demonstrations_holds_nothing_back(tmp_path):
    """13 calls: the seed on 6 validation rows and one proposal (3 + 1 + 3); nothing left for demos."""
    run = _run(tmp_path, 13)
    result = run.result
    assert [c["origin"] for c in result["candidates"]] == ["seed"]
    assert result["iterations"][0]["outcome"].startswith("rejected")
    assert result["cost"]["calls"] == 13


def test_demonstrations_that_beat_the_seed_finish_a_run_whose_reflections_were_all_garbage(tmp_path):
    """A reflection model that never writes fenced instructions (SmolLM2-135M, mostly) used to fail the
    run before demonstrations were tried; now the run finishes when they beat the seed, and the
    unusable replies are in the report."""
    from keel.optimize import Options, optimize_prompt
    from keel.store import open_store
    from tests.optimize import scripted_task

    install()
    scripted_task.install()
    run = asyncio.run(optimize_prompt(open_store(), write_eval(tmp_path), target="kinds",
                                      options=Options(budget=30, reflection_model="scripted:opt-garbage")))
    result = run.result
    assert run.status == "finished"
    assert result["unusable_reflections"] and all("no ``` block" in g for g in result["unusable_reflections"])
    assert result["candidates"][result["best"]]["origin"] == "demos" and result["best_score"] == 1.0
