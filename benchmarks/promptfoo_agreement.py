"""Agreement with promptfoo: one promptfoo suite, run by ``promptfoo eval`` and by ``keel eval run``,
compared assertion by assertion.

    python benchmarks/promptfoo_agreement.py               # 300 tests, ~10 assertions each
    python benchmarks/promptfoo_agreement.py --tests 1000 --seed 7

The suite uses promptfoo's ``echo`` provider (Keel: ``scripted:echo``), so no model is
involved: each test's output is its ``output`` var. Every deterministic assertion Keel
supports appears, with and without ``not-``, on outputs built to sit on both sides of
each check (exact and near matches, case, whitespace, JSON and almost-JSON, thresholds).
promptfoo is installed with npm outside the repository, as in ``benchmarks/evals.py``.
Exit status 1 if any verdict differs; the differences are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evals import promptfoo_bin

WORDS = ["paris", "Paris", "rome", "the", "capital", "of", "France", "is", "city", "big", "a", "an",
         "café", "naïve", "42", "3.14", "yes", "no", "ok", "Done", "hello", "world"]

CONFIG = """\
description: agreement
prompts: ["{{output}}"]
providers: [echo]
defaultTest:
  assert:
    - {type: not-equals, value: "{{never}}"}
tests: file://tests.jsonl
"""


def _text(rng: random.Random, k: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(k))


def _near(rng: random.Random, text: str) -> str:
    """``text`` with a small edit, a case change, or extra whitespace."""
    choice = rng.randrange(5)
    if choice == 0 or not text:
        return text
    if choice == 1:
        return text.upper() if rng.random() < 0.5 else text.lower()
    if choice == 2:
        return f" {text} "
    if choice == 3:
        i = rng.randrange(len(text))
        return text[:i] + rng.choice("xyz ") + text[i + 1:]
    return text + rng.choice(["", ".", "!", " again"])


def _output(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return json.dumps({"city": rng.choice(WORDS), "n": rng.randrange(5)})
    if kind == 1:
        return f"Answer: {json.dumps({'ok': rng.random() < 0.5})} done"
    if kind == 2:
        return '{"city": "paris", "n": }'  # almost JSON
    if kind == 3:
        return str(rng.randrange(100))
    return _text(rng, rng.randrange(1, 9))


def _test(rng: random.Random) -> dict:
    output = _output(rng)
    ref = _near(rng, output) if rng.random() < 0.6 else _text(rng, rng.randrange(1, 9))
    word = rng.choice(output.split() or ["x"]) if rng.random() < 0.6 else rng.choice(WORDS)
    asserts = []
    for kind in ("equals", "contains", "icontains", "starts-with", "levenshtein", "rouge-n", "regex",
                 "is-json", "contains-json"):
        a: dict = {"type": ("not-" if rng.random() < 0.3 else "") + kind}
        if kind in ("equals", "levenshtein", "rouge-n"):
            a["value"] = "{{ref}}"
        elif kind in ("contains", "icontains"):
            a["value"] = "{{word}}" if rng.random() < 0.5 else _near(rng, word)
        elif kind == "starts-with":
            a["value"] = output[: rng.randrange(1, 6)] if rng.random() < 0.5 else _near(rng, output[:4])
        elif kind == "regex":
            a["value"] = rng.choice([r"^\d+$", r"[Pp]aris", r"\bcity\b", r"^\{.*\}$", r"caf[eé]", r"(?i)DONE"])
        elif kind == "contains-json" and rng.random() < 0.5:
            a["value"] = {"type": "object", "required": [rng.choice(["city", "ok", "n"])]}
        elif kind == "is-json" and rng.random() < 0.3:
            a["value"] = {"type": "object", "required": ["city"]}
        if kind == "levenshtein":
            a["threshold"] = rng.choice([0, 1, 2, 5, 10])
        if kind == "rouge-n":
            a["threshold"] = rng.choice([0.2, 0.5, 0.75, 0.9, 1.0])
        if rng.random() < 0.85:
            asserts.append(a)
    return {"vars": {"output": output, "ref": ref, "word": word, "never": "\u0000never"}, "assert": asserts}


def suite(n: int, seed: int, folder: Path) -> None:
    rng = random.Random(seed)
    with (folder / "tests.jsonl").open("w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(json.dumps(_test(rng), ensure_ascii=False) + "\n")
    (folder / "promptfooconfig.yaml").write_text(CONFIG)


def promptfoo_verdicts(folder: Path) -> dict[int, list[bool]]:
    cli = promptfoo_bin()
    env = {**os.environ, "PROMPTFOO_DISABLE_TELEMETRY": "1", "PROMPTFOO_DISABLE_UPDATE": "1",
           "PROMPTFOO_CONFIG_DIR": str(folder / "pf-config")}
    subprocess.run([str(cli), "eval", "-c", "promptfooconfig.yaml", "--no-cache", "--no-table", "--no-progress-bar",
                    "-o", "pf.json"], cwd=folder, env=env, capture_output=True, text=True, timeout=1800)
    results = json.loads((folder / "pf.json").read_text())["results"]["results"]
    return {r["testIdx"]: [c["pass"] for c in r["gradingResult"]["componentResults"]] for r in results}


def keel_verdicts(folder: Path) -> dict[int, list[bool]]:
    env = {**os.environ, "KEEL_HOME": str(folder / "keel-home")}
    r = subprocess.run([sys.executable, "-m", "keel", "eval", "run", "promptfooconfig.yaml", "--json"], cwd=folder,
                       env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"keel eval run failed ({r.returncode}): {r.stderr[-1500:]}")
    run_id = json.loads(r.stdout)["run_id"]
    code = ("import json, sys\nfrom keel.evals import iter_results\nfrom keel.store import open_store\n"
            "for x in iter_results(open_store(), sys.argv[1]):\n"
            "    parts = next((g.get('parts') or {} for g in x.grades if g['name'] == 'assertions'), {})\n"
            "    print(json.dumps([x.idx, [v == 1.0 for k, v in sorted(parts.items(), key=lambda kv: int(kv[0].split(':')[0]))], x.error]))\n")
    out = subprocess.run([sys.executable, "-c", code, run_id], env=env, capture_output=True, text=True, check=True)
    verdicts = {}
    for line in out.stdout.splitlines():
        idx, parts, error = json.loads(line)
        if error:
            raise RuntimeError(f"keel: test {idx} errored: {error}")
        verdicts[idx] = parts
    return verdicts


def compare(n: int, seed: int) -> tuple[int, int, list[str]]:
    """(assertions compared, tests compared, disagreements)."""
    folder = Path(tempfile.mkdtemp(prefix="keel-pf-agree-"))
    try:
        suite(n, seed, folder)
        theirs, ours = promptfoo_verdicts(folder), keel_verdicts(folder)
        tests = [json.loads(line) for line in (folder / "tests.jsonl").read_text(encoding="utf-8").splitlines()]
        diffs, count = [], 0
        for idx in range(n):
            a, b = theirs.get(idx), ours.get(idx)
            if a is None or b is None or len(a) != len(b):
                diffs.append(f"test {idx}: promptfoo {a}, keel {b}")
                continue
            asserts = [{"type": "not-equals"}, *tests[idx]["assert"]]
            for j, (x, y) in enumerate(zip(a, b, strict=True)):
                count += 1
                if x != y:
                    diffs.append(f"test {idx} assert {j} {json.dumps(asserts[j], ensure_ascii=False)} on "
                                 f"{tests[idx]['vars']['output']!r}: promptfoo {x}, keel {y}")
        return count, n, diffs
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    count, tests, diffs = compare(args.tests, args.seed)
    print(f"{tests} tests, {count} assertions: {count - len(diffs)} agree, {len(diffs)} differ")
    for d in diffs[:50]:
        print("  " + d)
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
