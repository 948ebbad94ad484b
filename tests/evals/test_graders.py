"""Each grader on fixed cases with known values; failures become per-item errors."""

from __future__ import annotations

import pytest

from keel.evals.errors import EvalSpecError
from keel.evals.graders import Graders, parse_grader, similarity
from keel.evals.graders.formula import FormulaError, evaluate
from keel.testing import scripted

ITEM = {"answer": "Paris", "nested": {"tags": ["a", "b"]}}
SAMPLE = {"output_text": "The capital is paris", "output_json": None}


async def grade(spec: dict, item=ITEM, sample=SAMPLE):
    graders = Graders()
    try:
        return await graders.grade(parse_grader(spec), item=item, sample=sample)
    finally:
        await graders.aclose()


def check(op: str, input: str = "{{sample.output_text}}", reference: str = "{{item.answer}}") -> dict:
    return {"type": "string_check", "name": op, "operation": op, "input": input, "reference": reference}


@pytest.mark.parametrize(
    ("op", "text", "ref", "expected"),
    [
        ("eq", "Paris", "Paris", 1.0),
        ("eq", "Paris ", "Paris", 0.0),  # no trimming
        ("eq", "paris", "Paris", 0.0),  # case matters
        ("ne", "Lyon", "Paris", 1.0),
        ("ne", "Paris", "Paris", 0.0),
        ("like", "It is Paris.", "Paris", 1.0),
        ("like", "It is paris.", "Paris", 0.0),
        ("ilike", "It is PARIS.", "paris", 1.0),
        ("ilike", "It is Lyon.", "paris", 0.0),
    ],
)
async def test_string_check_operations(op, text, ref, expected) -> None:
    r = await grade(check(op, input=text, reference=ref))
    assert r.score == expected and r.passed is (expected == 1.0) and r.error is None


async def test_templates_reach_nested_fields_and_report_missing_ones() -> None:
    r = await grade(check("eq", input="{{item.nested.tags[1]}}", reference="b"))
    assert r.score == 1.0
    r = await grade(check("eq", reference="{{item.answr}}"))
    assert r.score is None and r.passed is None
    assert "item has no field 'answr'" in r.error and "answer" in r.error
    r = await grade(check("eq", input="{{sample.output_json.label}}"))
    assert "sample.output_json is null" in r.error


# Reference values: rapidfuzz's README, rouge-score's README, NLTK's METEOR doctest,
# and BLEU/GLEU/METEOR worked by hand from the definitions.
REFERENCE_VALUES = [
    ("fuzzy_match", "this is a test!", "this is a test", 0.9655172413793103),
    # p1..p4 = 4/5, 3/4, 2/3, 1/2, no brevity penalty: (0.2) ** 0.25
    ("bleu", "a b c d e", "a b c d f", 0.2 ** 0.25),
    ("bleu", "the cat sat on the mat", "the cat sat on the mat", 1.0),
    # GLEU = min(precision, recall) over all 1-4-grams: 6 of 10 match
    ("gleu", "a b c d", "a b c e", 0.6),
    # 4 exact matches in one chunk: F = 1, penalty 0.5 * (1/4) ** 3
    ("meteor", "a cat sat down", "a cat sat down", 1 - 0.5 / 64),
    (
        "meteor",
        "It is a guide to action which ensures that the military always obeys the commands of the party",
        "It is a guide to action that ensures that the military will forever heed Party commands",
        0.6944,
    ),
    ("rouge_1", "The quick brown dog jumps on the log.", "The quick brown fox jumps over the lazy dog", 0.7058823529411765),
    ("rouge_l", "The quick brown dog jumps on the log.", "The quick brown fox jumps over the lazy dog", 0.5882352941176471),
    ("rouge_2", "a b c", "a b c", 1.0),
    ("rouge_5", "a b c d e f", "a b c d e g", 0.5),
]


@pytest.mark.parametrize(("metric", "hyp", "ref", "expected"), REFERENCE_VALUES)
async def test_text_similarity_reference_values(metric, hyp, ref, expected) -> None:
    spec = {"type": "text_similarity", "name": metric, "evaluation_metric": metric,
            "input": hyp, "reference": ref, "pass_threshold": 0.5}
    r = await grade(spec)
    assert r.score == pytest.approx(expected, abs=1e-4)
    assert r.passed is (r.score >= 0.5)


def test_meteor_uses_wordnet_synonyms_when_installed() -> None:
    if similarity.wordnet_source().startswith("none"):
        pytest.skip("WordNet is not installed (apt-get install wordnet-base wordnet-sense-index)")
    with_synonym = similarity.meteor("the dog is sick", "the dog is ill")
    unrelated = similarity.meteor("the dog is blue", "the dog is ill")
    assert with_synonym > unrelated


async def test_cosine_uses_a_keel_embedder() -> None:
    pytest.importorskip("keel.context.embedders", reason="the context engine (keel.context) is not installed")
    spec = {"type": "text_similarity", "name": "cos", "evaluation_metric": "cosine",
            "input": "red apple pie", "reference": "red apple pie", "embedding_model": "test-hashing",
            "pass_threshold": 0.99}
    r = await grade(spec)
    assert r.score == pytest.approx(1.0) and r.passed


def test_unknown_type_field_and_bad_formula_are_spec_errors() -> None:
    with pytest.raises(EvalSpecError, match="unknown grader type 'regex'"):
        parse_grader({"type": "regex", "name": "x"}, where="testing_criteria[0]")
    with pytest.raises(EvalSpecError, match="unknown field 'operator'"):
        parse_grader({**check("eq"), "operator": "eq"})
    with pytest.raises(EvalSpecError, match="evaluation_metric"):
        parse_grader({"type": "text_similarity", "name": "t", "input": "", "reference": "",
                      "evaluation_metric": "rouge_9"})
    multi = {"type": "multi", "name": "m", "graders": {"a": check("eq")}, "calculate_output": "a + b"}
    with pytest.raises(EvalSpecError, match="names b"):
        parse_grader(multi)
    with pytest.raises(EvalSpecError, match="only min"):
        parse_grader({**multi, "calculate_output": "__import__('os').system('x')"})


def test_formula_is_arithmetic_only() -> None:
    assert evaluate("0.5 * a + 0.5 * b", {"a": 1, "b": 0}) == 0.5
    assert evaluate("a ^ 2 + sqrt(b) - min(a, b) + floor(2.7)", {"a": 3, "b": 4}) == 9 + 2 - 3 + 2
    with pytest.raises(FormulaError, match="divides by zero"):
        evaluate("a / b", {"a": 1, "b": 0})
    for bad in ("a.b", "a[0]", "'x'", "lambda: 1", "a if a else b", "a < b"):
        with pytest.raises(FormulaError):
            evaluate(bad, {"a": 1, "b": 2})


async def test_multi_grader_combines_scores() -> None:
    spec = {
        "type": "multi", "name": "combo", "pass_threshold": 0.5,
        "graders": {
            "exact": check("eq"),
            "loose": check("ilike"),
            "fuzzy": {"type": "text_similarity", "name": "f", "evaluation_metric": "fuzzy_match",
                      "input": "{{sample.output_text}}", "reference": "{{item.answer}}"},
        },
        "calculate_output": "0.25 * exact + 0.75 * loose",
    }
    r = await grade(spec)
    assert r.score == 0.75 and r.passed and r.parts["exact"] == 0.0 and r.parts["loose"] == 1.0


def judge(kind: str, model: str = "scripted:judge", **extra) -> dict:
    base = {"type": kind, "name": kind, "model": model,
            "input": [{"role": "system", "content": "Grade the answer."},
                      {"role": "user", "content": [{"type": "input_text", "text": "Q: capital? A: {{sample.output_text}}"}]}]}
    return {**base, **extra}


async def test_label_model_judge_uses_a_strict_enum() -> None:
    with scripted("judge") as model:
        model.reply(parsed={"reasoning": "right city", "label": "correct"})
        r = await grade(judge("label_model", labels=["correct", "incorrect"], passing_labels=["correct"]))
    assert (r.label, r.score, r.passed, r.reasoning) == ("correct", 1.0, True, "right city")
    request = model.calls[0]
    assert request.output_schema["properties"]["label"]["enum"] == ["correct", "incorrect"]
    assert "The capital is paris" in request.messages[-1].content


async def test_label_outside_the_enum_is_retried_then_an_item_error() -> None:
    with scripted("judge") as model:
        model.reply(parsed={"reasoning": "", "label": "maybe"})
        model.reply(parsed={"reasoning": "", "label": "kinda"})
        r = await grade(judge("label_model", labels=["correct", "incorrect"], passing_labels=["correct"]))
    assert r.score is None and "invalid output" in r.error and len(model.calls) == 2


async def test_score_model_range_and_threshold() -> None:
    with scripted("judge") as model:
        model.reply(parsed={"reasoning": "ok", "result": 7})
        r = await grade(judge("score_model", range=[1, 10], pass_threshold=6))
    assert r.score == 7 and r.passed
    assert "a number from 1 to 10" in model.calls[0].messages[0].content
    # OpenAI's outcomes: outside the range is clamped (no second call), not a number grades 0
    with scripted("judge") as model:
        model.reply(parsed={"reasoning": "", "result": 11})
        r = await grade(judge("score_model", range=[1, 10]))
    assert (r.score, r.error, r.invalid, len(model.calls)) == (10, None, None, 1)
    with scripted("judge") as model:
        model.reply(parsed={"reasoning": "", "result": "eleven"})
        model.reply(parsed={"reasoning": "", "result": "ten"})
        r = await grade(judge("score_model", range=[1, 10], pass_threshold=5))
    assert (r.score, r.passed, r.error) == (0, False, None) and "'ten' is not a number" in r.invalid


async def test_a_judge_that_times_out_is_an_item_error() -> None:
    with scripted("judge") as model:
        model.reply(parsed={"reasoning": "", "label": "correct"}, delay=5)
        r = await grade(judge("label_model", labels=["correct"], passing_labels=["correct"], timeout=0.2))
    assert r.error == "judge scripted:judge timed out after 0.2 s"


PY = "def grade(sample, item):\n{body}\n"


def python(body: str, **extra) -> dict:
    return {"type": "python", "name": "py", "source": PY.format(body=body), **extra}


async def test_python_grader_scores_items() -> None:
    spec = python("    print('noise on stdout')\n    return float(item['answer'].lower() in sample['output_text'])",
                  pass_threshold=1)
    r = await grade(spec)
    assert r.score == 1.0 and r.passed


async def test_python_grader_hang_crash_and_memory_are_item_errors() -> None:
    graders = Graders(python_workers=1)
    try:
        hang = parse_grader(python("    while True: pass", timeout_seconds=1))
        r = await graders.grade(hang, item=ITEM, sample=SAMPLE)
        assert "timed out after 1 s" in r.error
        crash = parse_grader(python("    import os; os.abort()"))
        r = await graders.grade(crash, item=ITEM, sample=SAMPLE)
        assert "crashed (killed by SIGABRT" in r.error
        memory = parse_grader(python("    x = bytearray(2_000_000_000)\n    return 1.0", memory_mb=200))
        r = await graders.grade(memory, item=ITEM, sample=SAMPLE)
        assert "MemoryError" in r.error
        # OpenAI's outcome: a grader that raises grades 0 and is marked invalid (not an item error)
        raises = parse_grader(python("    return 1 / 0"))
        r = await graders.grade(raises, item=ITEM, sample=SAMPLE)
        assert r.score == 0 and r.error is None
        assert "ZeroDivisionError" in r.invalid and "line 2 of the grader" in r.invalid
        wrong = parse_grader(python("    return 'yes'"))
        r = await graders.grade(wrong, item=ITEM, sample=SAMPLE)
        assert r.score == 0 and "returned str" in r.invalid
        # the pool recovers after a killed worker
        ok = parse_grader(python("    return 0.25"))
        for _ in range(3):
            assert (await graders.grade(ok, item=ITEM, sample=SAMPLE)).score == 0.25
        r = await graders.grade(hang, item=ITEM, sample=SAMPLE)
        assert "timed out" in r.error
    finally:
        await graders.aclose()


async def test_python_grader_without_grade_function() -> None:
    r = await grade({"type": "python", "name": "py", "source": "x = 1"})
    assert "defines no grade" in r.error
