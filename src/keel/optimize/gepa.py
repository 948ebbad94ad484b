"""Reflective prompt evolution with a per-item Pareto front (GEPA, arXiv 2507.19457), on one
eval target's instructions, within a budget of model calls.

The loop, given learning rows (``train``) and validation rows (``val``):

1. Score the seed instructions on every validation row.
2. Pick a parent from the Pareto front: the candidates that are best on at least one validation
   row (dominated ones dropped), drawn with weight = rows they are best on.
3. Run it on a minibatch of learning rows (epoch-shuffled); skip when it is perfect there.
4. Ask the reflection model for new instructions from the minibatch's inputs, outputs and
   graders' feedback (:mod:`keel.optimize.reflection`).
5. Run the child on the same minibatch; accept it when its total beats the parent's, then score
   it on every validation row and add it to the pool.
6. With the budget left: few-shot demonstrations bootstrapped from passing learning rows (their
   inputs and outputs appended to the best candidate's instructions), scored on validation.

Every model call (target rollouts and reflections) goes through :class:`CallLog`, which
stores its answer at once and counts it against the budget; the loop checks before each
proposal that the budget can pay for it whole. Graders' own judge calls are not counted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from keel.evals.datasets import DatasetRow
from keel.evals.graders import Graders
from keel.evals.graders.feedback import feedback
from keel.evals.spec import EvalSpec
from keel.evals.traces import TraceCache
from keel.optimize.errors import BudgetTooSmall, ReflectionGarbage, TooFewRows
from keel.optimize.reflection import NO_FENCE, Example, parse_proposal, reflection_prompt
from keel.optimize.state import CallLog, key_of
from keel.optimize.targets import OptTarget

__all__ = ["Candidate", "Options", "Search", "minimum_budget", "split_rows"]

MIN_ROWS = 4
REFLECTION_MAX_TOKENS = 1024
"""Longest reply asked of the reflection model (new instructions, with its reasoning before them)."""


@dataclass(frozen=True)
class Options:
    budget: int
    """Model calls the run may make: target rollouts plus reflections."""
    reflection_model: str
    minibatch: int = 3
    val_fraction: float = 0.5
    seed: int = 0
    demos: int = 3
    """Few-shot demonstrations to try at the end (0: none)."""


@dataclass
class Candidate:
    id: int
    instructions: str
    parent: int | None
    origin: str
    """``seed``, ``reflection`` or ``demos``."""
    val: dict[int, float] = field(default_factory=dict)
    """Score per validation row index."""

    @property
    def mean(self) -> float:
        return sum(self.val.values()) / len(self.val) if self.val else 0.0


def split_rows(rows: list[DatasetRow], *, fraction: float, seed: int) -> tuple[list[DatasetRow], list[DatasetRow]]:
    """(learning rows, validation rows): a seeded shuffle, ``fraction`` of them for validation."""
    if len(rows) < MIN_ROWS:
        raise TooFewRows(
            f"the eval's dataset has {len(rows)} row{'s' if len(rows) != 1 else ''}: too few to split into rows "
            f"to learn from and rows to validate on (at least {MIN_ROWS})",
            hint=f"add rows to the dataset (at least {MIN_ROWS}; 20 or more give a steadier score)")
    order = list(rows)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 2, max(2, round(len(order) * fraction)))
    return order[n_val:], order[:n_val]


def minimum_budget(n_val: int, minibatch: int) -> int:
    """Calls needed to score the seed and make one proposal: the seed on every validation row, the
    parent and the child on a minibatch, and one reflection."""
    return n_val + 2 * minibatch + 1


@dataclass
class _Rollout:
    score: float
    output: str
    feedback: str
    passed: bool
    trace: str = ""


class Search:
    """One optimization, replayable: the same answers give the same decisions."""

    def __init__(self, *, spec: EvalSpec, target: OptTarget, rows: list[DatasetRow], options: Options,
                 calls: CallLog, run_id: str, log: Any = None) -> None:
        self.spec = spec
        self.target = target
        self.options = options
        self.calls = calls
        self.run_id = run_id
        self.log = log or (lambda _msg: None)
        self.train, self.val = split_rows(rows, fraction=options.val_fraction, seed=options.seed)
        self.minibatch = max(1, min(options.minibatch, len(self.train)))
        self.rng = random.Random(options.seed)
        self.graders = Graders(python_workers=1, traces=TraceCache(calls.store))
        self.candidates: list[Candidate] = []
        self.rollouts: dict[tuple[str, int], _Rollout] = {}
        self.events: list[dict[str, Any]] = []
        self.garbage: list[str] = []
        """Replies without fenced instructions: skipped, or (no fence at all) tried whole."""
        self.replies = 0
        self._reflection_model: Any = None
        need = minimum_budget(len(self.val), self.minibatch)
        if options.budget < need:
            raise BudgetTooSmall(
                f"a budget of {options.budget} model calls is too small to propose anything: scoring the seed on "
                f"{len(self.val)} validation rows and one proposal (the parent and the child on a minibatch of "
                f"{self.minibatch}, and one reflection) take {need}",
                hint=f"give --budget {need} or more (a useful run takes 10 proposals or so: "
                     f"--budget {len(self.val) + 10 * (2 * self.minibatch + 1 + len(self.val))})")

    # -- rollouts -------------------------------------------------------------------------------

    async def _rollout(self, instructions: str, row: DatasetRow) -> _Rollout:
        cached = self.rollouts.get((instructions, row.idx))
        if cached is not None:
            return cached
        key = key_of("rollout", instructions, row.idx)
        sample = await self.calls.call(key, "rollout",
                                       lambda: self.target.sample(instructions, row, key_of(self.run_id, key)))
        if sample.get("error"):
            text = f"could not run: {sample['error']}"
            result = _Rollout(0.0, text, text, False)
        else:
            scores, notes, passed = [], [], True
            for grader in self.spec.graders:
                grade = await self.graders.grade(grader, item=row.item, sample=sample)
                s = 0.0 if grade.error else (1.0 if grade.passed else 0.0) if grade.passed is not None \
                    else max(0.0, min(1.0, grade.score or 0.0))
                passed = passed and grade.error is None and grade.passed is not False
                scores.append(s)
                notes.append(feedback(grader, grade, item=row.item, sample=sample))
            result = _Rollout(sum(scores) / len(scores), str(sample.get("output_text", "")), "\n".join(notes), passed,
                              str(sample.get("trace_text") or ""))
        self.rollouts[(instructions, row.idx)] = result
        return result

    async def _score_val(self, cand: Candidate) -> None:
        for row in self.val:
            cand.val[row.idx] = (await self._rollout(cand.instructions, row)).score

    # -- the Pareto front -----------------------------------------------------------------------

    def front(self) -> dict[int, int]:
        """Candidate id -> validation rows it is best on (dominated candidates dropped)."""
        wins: dict[int, set[int]] = {}
        for row in self.val:
            best = max(c.val[row.idx] for c in self.candidates)
            for c in self.candidates:
                if c.val[row.idx] == best:
                    wins.setdefault(c.id, set()).add(row.idx)
        ids = list(wins)
        for a in ids:
            for b in ids:
                if a != b and a in wins and b in wins and wins[a] < wins[b]:
                    del wins[a]
                    break
        return {c: len(rows) for c, rows in wins.items()}

    def _pick_parent(self) -> Candidate:
        front = self.front()
        ids = sorted(front)
        chosen = self.rng.choices(ids, weights=[front[i] for i in ids])[0]
        return self.candidates[chosen]

    def _next_minibatch(self) -> list[DatasetRow]:
        if not getattr(self, "_queue", None):
            self._queue = list(self.train)
            self.rng.shuffle(self._queue)
        batch = []
        while len(batch) < self.minibatch:
            if not self._queue:
                self._queue = list(self.train)
                self.rng.shuffle(self._queue)
            batch.append(self._queue.pop())
        return batch

    # -- reflection -----------------------------------------------------------------------------

    async def _reflect(self, parent: Candidate, batch: list[DatasetRow], results: list[_Rollout]) -> str | None:
        examples = [Example(self.target.input_text(r), x.output, x.score, x.feedback, x.trace)
                    for r, x in zip(batch, results, strict=True)]
        prompt = reflection_prompt(parent.instructions, examples)

        async def ask() -> dict[str, Any]:
            from keel.models import Message, ModelSettings, get_model

            if self._reflection_model is None:
                self._reflection_model = get_model(self.options.reflection_model)
            response = await self._reflection_model.generate(
                [Message(role="user", content=prompt)], settings=ModelSettings(max_tokens=REFLECTION_MAX_TOKENS),
            ).response()
            return {"text": response.text, "usage": {"input_tokens": response.usage.input_tokens or 0,
                                                     "output_tokens": response.usage.output_tokens or 0}}

        answer = await self.calls.call(key_of("reflect", prompt), "reflect", ask)
        text = str(answer.get("text", ""))
        self.replies += 1
        proposal, why = parse_proposal(text, parent.instructions)
        if proposal is None and why == NO_FENCE and text.strip() and text.strip() != parent.instructions.strip():
            # GEPA tries such a reply whole, and the minibatch judges it: with a small reflection
            # model that is where most proposals come from (benchmarks/optimize.py)
            proposal, why = text.strip(), NO_FENCE + ", tried whole"
        if why:
            reply = text.strip().replace("\n", " ")
            self.garbage.append(f"{why}: {reply[:120]!r}")
            self.log(f"  reflection unusable ({why})")
        return proposal

    # -- the loop -------------------------------------------------------------------------------

    def _add(self, instructions: str, parent: int | None, origin: str) -> Candidate:
        cand = Candidate(len(self.candidates), instructions, parent, origin)
        self.candidates.append(cand)
        return cand

    async def run(self) -> None:
        seed = self._add(self.target.seed_instructions, None, "seed")
        await self._score_val(seed)
        self.log(f"seed: {seed.mean:.2f} on {len(self.val)} validation rows")
        iteration = 0
        stale = 0
        reserve = self._demo_reserve()
        while self.calls.remaining - reserve >= 2 * self.minibatch + 1 and stale < 3 * max(1, len(self.train)):
            iteration += 1
            parent = self._pick_parent()
            batch = self._next_minibatch()
            before = [await self._rollout(parent.instructions, r) for r in batch]
            event: dict[str, Any] = {"iteration": iteration, "parent": parent.id,
                                     "minibatch": [r.idx for r in batch], "parent_scores": [x.score for x in before]}
            self.events.append(event)
            if all(x.score >= 1.0 for x in before):
                event["outcome"] = "parent perfect on the minibatch: skipped"
                stale += 1
                continue
            if self.calls.remaining - reserve < self.minibatch + 1:
                event["outcome"] = "budget spent"
                break
            proposal = await self._reflect(parent, batch, before)
            if proposal is None:
                event["outcome"] = "reflection unusable: " + self.garbage[-1]
                continue
            after = [await self._rollout(proposal, r) for r in batch]
            event["child_scores"] = [x.score for x in after]
            if sum(x.score for x in after) <= sum(x.score for x in before):
                event["outcome"] = "rejected on the minibatch"
                self.log(f"#{iteration}: rejected ({sum(x.score for x in after):g} <= {sum(x.score for x in before):g})")
                continue
            if self.calls.remaining - reserve < len(self.val):
                event["outcome"] = "accepted on the minibatch; budget too small to validate"
                break
            child = self._add(proposal, parent.id, "reflection")
            await self._score_val(child)
            event["outcome"] = f"accepted: candidate {child.id}, validation {child.mean:.2f}"
            self.log(f"#{iteration}: candidate {child.id} from {parent.id}: {child.mean:.2f} on validation")
            stale = 0
        await self._demos()  # before judging the reflections: demonstrations may still beat the seed
        if self.best().id == 0 and self.garbage and len(self.garbage) == self.replies:
            raise ReflectionGarbage(
                f"the reflection model {self.options.reflection_model} returned no usable instructions in "
                f"{len(self.garbage)} tr{'y' if len(self.garbage) == 1 else 'ies'} ({self.garbage[0]})",
                hint="use a model that follows instructions for --reflection-model (it must answer with the new "
                     "instructions inside ``` fences)")

    def _demo_reserve(self) -> int:
        """Calls the proposal loop leaves for scoring the few-shot candidate on validation: without
        them a run whose proposals all fail (a small reflection model) spends its whole budget on
        rejected children and never tries demonstrations, often the better lever. Nothing is held
        back when the budget cannot pay for one proposal besides."""
        need = len(self.val)
        if self.options.demos <= 0 or self.options.budget < minimum_budget(len(self.val), self.minibatch) + need:
            return 0
        return need

    async def _demos(self) -> None:
        if self.options.demos <= 0 or self.calls.remaining < len(self.val):
            return
        best = self.best()
        await self._bootstrap(best)
        chosen = self._pick_demos(best)
        if not chosen:
            return
        shots = [f"Input:\n{self.target.input_text(r)}\nOutput:\n{x.output}" for r, x in chosen]
        text = (best.instructions.rstrip() + "\n\n" if best.instructions.strip() else "") + \
            "Examples of good answers:\n\n" + "\n\n".join(shots)
        cand = self._add(text, best.id, "demos")
        await self._score_val(cand)
        self.log(f"demos: candidate {cand.id} ({len(shots)} examples): {cand.mean:.2f} on validation")

    async def _bootstrap(self, best: Candidate) -> None:
        """Spend what the validation score of the few-shot candidate leaves on running the best
        candidate over learning rows it has not answered, until there are ``demos`` passing rows
        with distinct answers (the minibatches alone often leave two or three passing rows)."""
        for r in self.train:
            distinct = {x.output.strip() for _r, x in self._passing(best)}
            if len(distinct) >= self.options.demos or self.calls.remaining <= len(self.val):
                return
            if (best.instructions, r.idx) not in self.rollouts:
                await self._rollout(best.instructions, r)

    def _passing(self, best: Candidate) -> list[tuple[DatasetRow, _Rollout]]:
        """Learning rows whose answer passed every grader: the best candidate's answer where it
        passed, else any candidate's."""
        passing: list[tuple[DatasetRow, _Rollout]] = []
        for r in self.train:
            x = self.rollouts.get((best.instructions, r.idx))
            if x is None or not x.passed:
                x = next((v for (_ins, idx), v in self.rollouts.items() if idx == r.idx and v.passed), None)
            if x is not None:
                passing.append((r, x))
        return passing

    def _pick_demos(self, best: Candidate) -> list[tuple[DatasetRow, _Rollout]]:
        """Passing learning rows (:meth:`_passing`) taken round-robin over distinct answers: a
        classifier's demonstrations then show different labels instead of the one it already
        over-uses."""
        passing = self._passing(best)
        groups: dict[str, list[tuple[DatasetRow, _Rollout]]] = {}
        for r, x in passing:
            groups.setdefault(x.output.strip(), []).append((r, x))
        chosen: list[tuple[DatasetRow, _Rollout]] = []
        while len(chosen) < min(self.options.demos, len(passing)):
            for group in groups.values():
                if group and len(chosen) < self.options.demos:
                    chosen.append(group.pop(0))
        return chosen

    def best(self) -> Candidate:
        """Highest mean validation score; the earliest among equals (the seed wins a tie)."""
        return max(self.candidates, key=lambda c: (c.mean, -c.id))

    async def aclose(self) -> None:
        await self.graders.aclose()
        await self.target.aclose()
        if self._reflection_model is not None:
            await self._reflection_model.aclose()
