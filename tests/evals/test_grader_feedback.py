"""Feedback text for every grader type: what failed and why (used by keel optimize's reflection)."""

from __future__ import annotations

from keel.evals.graders import GradeResult, Graders, parse_grader
from keel.evals.graders.feedback import feedback
from keel.testing import scripted

ITEM = {"answer": "Paris", "question": "Capital of France?"}
SAMPLE = {"output_text": "paris", "output_json": None}


async def _grade(definition):
    grader = parse_grader(definition)
    graders = Graders(python_workers=1)
    try:
        result = await graders.grade(grader, item=ITEM, sample=SAMPLE)
    finally:
        await graders.aclose()
    return feedback(grader, result, item=ITEM, sample=SAMPLE)


async def test_string_check_says_what_was_expected_and_what_came():
    text = await _grade({"type": "string_check", "name": "exact", "operation": "eq",
                         "input": "{{sample.output_text}}", "reference": "{{item.answer}}"})
    assert text == "exact (string_check eq): failed (score 0): expected the output to equal 'Paris', got 'paris'"


async def test_text_similarity_gives_the_score_and_the_bar():
    text = await _grade({"type": "text_similarity", "name": "close", "evaluation_metric": "bleu",
                         "input": "{{sample.output_text}}", "reference": "{{item.answer}}", "pass_threshold": 0.9})
    assert "close (text_similarity bleu): failed" in text and "passes at 0.9" in text and "'Paris'" in text


async def test_python_grader_gives_its_return_value_or_what_it_raised():
    text = await _grade({"type": "python", "name": "py", "pass_threshold": 0.5,
                         "source": "def grade(sample, item):\n    return 0.25\n"})
    assert text == "py (python): failed (score 0.25): grade(sample, item) returned 0.25 (passes at 0.5)"
    raised = await _grade({"type": "python", "name": "py", "source": "def grade(sample, item):\n    1/0\n"})
    assert "it raised" in raised and "ZeroDivisionError" in raised


async def test_multi_grader_gives_its_parts():
    text = await _grade({"type": "multi", "name": "both", "calculate_output": "(a + b) / 2", "pass_threshold": 1,
                         "graders": {
                             "a": {"type": "string_check", "name": "a", "operation": "ilike",
                                   "input": "{{sample.output_text}}", "reference": "{{item.answer}}"},
                             "b": {"type": "string_check", "name": "b", "operation": "eq",
                                   "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}}})
    assert text == "both (multi): failed (score 0.5): (a + b) / 2 over a=1, b=0; passes at 1"


async def test_judges_give_the_label_or_grade_and_their_reasoning():
    with scripted("feedback-judge") as judge:
        judge.reply(parsed={"reasoning": "lowercase proper noun", "label": "incorrect"})
        judge.reply(parsed={"reasoning": "right city, wrong case", "result": 0.4})
        label = await _grade({"type": "label_model", "name": "judge", "model": "scripted:feedback-judge",
                              "input": [{"role": "user", "content": "{{sample.output_text}}"}],
                              "labels": ["correct", "incorrect"], "passing_labels": ["correct"]})
        score = await _grade({"type": "score_model", "name": "rate", "model": "scripted:feedback-judge",
                              "input": [{"role": "user", "content": "{{sample.output_text}}"}], "pass_threshold": 0.8})
    assert label == ("judge (label_model): failed (score 0): the judge labelled it 'incorrect' "
                     "(passing labels: correct); its reasoning: lowercase proper noun")
    assert score == ("rate (score_model): failed (score 0.4): the judge gave 0.4 on 0..1, passes at 0.8; "
                     "its reasoning: right city, wrong case")


def test_trace_graders_and_errors():
    trace = parse_grader({"type": "trace_check", "name": "tools", "tools_called": ["refund"]})
    result = GradeResult(name="tools", score=0.0, passed=False, reasoning="refund was not called")
    assert feedback(trace, result, item=ITEM, sample=SAMPLE) == \
        "tools (trace_check): failed (score 0): refund was not called"
    err = GradeResult(name="tools", error="item has no workflow run")
    assert feedback(trace, err, item=ITEM, sample=SAMPLE) == "tools (trace_check): could not grade: item has no workflow run"
