"""promptfoo configs run by `keel eval run promptfooconfig.yaml` (issue 15).

The suite uses promptfoo's `echo` provider (Keel: scripted:echo), so the output of each test is
its rendered prompt. Agreement with `promptfoo eval` itself, assertion by assertion, is checked
by benchmarks/promptfoo_agreement.py, and here when promptfoo is installed (npm, outside the repo).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from keel.evals import iter_results, load_eval, run_eval
from keel.evals.errors import EvalSpecError
from keel.store import open_store
from keel.testing import scripted
from tests.workflows.test_cli import keel

CONFIG = """\
description: capitals
prompts:
  - "{{answer}}"
providers:
  - echo
defaultTest:
  options:
    provider: scripted:judge
  assert:
    - type: icontains
      value: "{{city}}"
tests:
  - description: a sentence
    vars: {answer: "Paris is the capital of France", city: paris}
    assert:
      - {type: starts-with, value: Paris}
      - {type: not-contains, value: Rome}
      - {type: levenshtein, value: "Paris is the capitol of France", threshold: 1}
      - {type: rouge-n, value: "paris is a capital city of france", threshold: 0.6}
      - {type: regex, value: "^Paris\\\\b"}
      - {type: python, value: "output.startswith('Paris') and context['vars']['city'] == 'paris'"}
      - {type: python, value: file://checks.py}
      - {type: llm-rubric, value: "names the capital of France"}
  - description: JSON
    vars: {answer: '{"city": "Rome", "country": "Italy"}', city: rome}
    assert:
      - {type: is-json, value: {type: object, required: [city, country]}}
      - {type: equals, value: {city: Rome, country: Italy}}
      - {type: contains-json}
      - {type: not-is-json}
  - file://more.csv
  - file://more.jsonl
"""

CHECKS = """\
def get_assert(output, context):
    return {"pass": len(output.split()) >= 3, "score": 0.5, "reason": "long enough"}
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "promptfooconfig.yaml").write_text(CONFIG)
    (tmp_path / "checks.py").write_text(CHECKS)
    (tmp_path / "more.csv").write_text(textwrap.dedent("""\
        answer,city,__expected,__description
        "Madrid, Spain",madrid,contains: Spain,csv contains
        Lima,lima,Lima,csv equals
        Quito,quito,not-starts-with: Q,csv not
        """))
    (tmp_path / "more.jsonl").write_text(json.dumps(
        {"vars": {"answer": "Oslo", "city": "oslo"}, "assert": [{"type": "equals", "value": "Oslo "}]}) + "\n")
    return tmp_path / "promptfooconfig.yaml"


async def test_a_promptfoo_suite_runs_with_promptfoo_semantics(suite, keel_home) -> None:
    spec = load_eval(suite)
    assert [t.label for t in spec.targets] == ["echo"]
    with scripted("judge") as judge:
        judge.reply(parsed={"reasoning": "it does", "label": "pass"})
        summary = await run_eval(open_store(keel_home), spec, concurrency=1)
    (t,) = summary.targets
    assert (t.items, t.errored) == (6, 0)
    rows = {r.idx: r for r in iter_results(open_store(keel_home), summary.run_id)}
    verdicts = {i: {k: v == 1.0 for k, v in r.grades[0]["parts"].items()} for i, r in rows.items()}
    assert verdicts[0] == {"0:icontains": True, "1:starts-with": True, "2:not-contains": True, "3:levenshtein": True,
                           "4:rouge-n": True, "5:regex": True, "6:python": True, "7:python": True,
                           "8:llm-rubric": True}
    assert verdicts[1] == {"0:icontains": True, "1:is-json": True, "2:equals": True, "3:contains-json": True,
                           "4:not-is-json": False}
    assert verdicts[2] == {"0:icontains": True, "1:contains": True}
    assert verdicts[3] == {"0:icontains": True, "1:equals": True}
    assert verdicts[4] == {"0:icontains": True, "1:not-starts-with": False}
    assert verdicts[5] == {"0:icontains": True, "1:equals": False}  # equals is exact: no trimming
    assert [rows[i].passed for i in range(6)] == [True, False, True, True, False, False]
    assert "Madrid, Spain" in rows[2].sample["output_text"]
    assert "names the capital of France" in judge.calls[0].messages[-1].content


def test_unsupported_assertions_and_keys_are_each_named(tmp_path) -> None:
    config = tmp_path / "promptfooconfig.yaml"
    config.write_text(textwrap.dedent("""\
        prompts: ["{{q}}"]
        providers: [echo]
        tests:
          - vars: {q: hi}
            assert:
              - {type: javascript, value: "output.length > 1"}
              - {type: contains, value: h}
              - {type: latency, threshold: 100}
        """))
    with pytest.raises(EvalSpecError) as e:
        load_eval(config)
    assert "tests[0].assert[0] type 'javascript'" in e.value.message
    assert "tests[0].assert[2] type 'latency'" in e.value.message and "contains" not in e.value.message.split(":")[-1]
    config.write_text('prompts: ["{{q}}"]\nproviders: [echo]\nscenarios: []\ntests: [{vars: {q: hi}}]\n')
    with pytest.raises(EvalSpecError, match="config keys Keel does not run: scenarios"):
        load_eval(config)
    config.write_text('prompts: ["{{q | upper}}"]\nproviders: [echo]\ntests: [{vars: {q: hi}}]\n')
    with pytest.raises(EvalSpecError, match="nunjucks tags and filters"):
        load_eval(config)
    config.write_text('prompts: ["{{q}}"]\nproviders: ["bedrock:anthropic.claude"]\ntests: [{vars: {q: hi}}]\n')
    with pytest.raises(EvalSpecError, match=r"provider 'bedrock:anthropic\.claude' has no Keel equivalent"):
        load_eval(config)


def test_the_cli_runs_a_promptfoo_config_and_refuses_bad_ones_cleanly(suite, tmp_path) -> None:
    r = keel("eval", "run", str(suite), "--json", "--judge-model", "scripted:echo")
    assert r.returncode == 0, r.stderr
    (t,) = json.loads(r.stdout)["targets"]
    assert t["items"] == 6
    bad = tmp_path / "promptfooconfig.yaml"
    bad.write_text('prompts: ["{{q}}"]\nproviders: [echo]\ntests:\n  - vars: {q: hi}\n    assert: [{type: cost}]\n')
    r = keel("eval", "run", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "tests[0].assert[0] type 'cost'" in r.stderr and "fix:" in r.stderr


PROMPTFOO = Path(os.environ.get("KEEL_BENCH_PEERS", Path.home() / ".cache" / "keel-bench")) \
    / "promptfoo" / "node_modules" / ".bin" / "promptfoo"


@pytest.mark.skipif(not PROMPTFOO.exists(), reason="promptfoo is not installed (python benchmarks/evals.py installs it)")
def test_keel_agrees_with_promptfoo_eval_assertion_by_assertion() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from promptfoo_agreement import compare

    count, tests, diffs = compare(60, seed=5)
    assert tests == 60 and count > 400
    assert diffs == []
