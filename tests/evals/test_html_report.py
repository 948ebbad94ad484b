"""The standalone HTML report prints numbers as people read them (a real eval run, real store)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from keel.evals import compare_runs, parse_eval, run_eval, summarize
from keel.evals.html import format_score, render_html
from keel.store import open_store


def test_format_score_keeps_three_decimals_and_drops_trailing_zeros() -> None:
    assert format_score(0.18181818181818177) == "0.182"
    assert format_score(1.0) == "1" and format_score(1) == "1" and format_score(0.5) == "0.5"
    assert format_score(0.0) == "0" and format_score(-0.0001) == "0" and format_score(None) == "–"
    assert format_score(12.3456) == "12.346" and format_score(True) == "True" and format_score("x") == "x"


@pytest.fixture
def store(keel_home: Path):
    s = open_store(keel_home)
    yield s
    s.close()


async def test_the_report_has_no_long_floats(store, tmp_path: Path) -> None:
    from keel.testing import get_script

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"q": q, "a": a}) + "\n" for q, a in
                            (("capital of France", "Paris"), ("capital of Peru", "Lima"), ("capital of Chad", "N'Djamena"))))
    spec = {"name": "fuzzy", "dataset": str(data), "concurrency": 1,
            "graders": [{"type": "text_similarity", "name": "similar", "evaluation_metric": "fuzzy_match",
                         "input": "{{sample.output_text}}", "reference": "{{item.a}}", "pass_threshold": 0.99}],
            "targets": [{"type": "model", "model": "scripted:html-report", "name": "m", "prompt": "{{item.q}}"}]}
    model = get_script("html-report")
    model.default = None
    ids = []
    for answers in (("Paris", "Lima", "N'Djamena"), ("Paris", "Lma", "Ndjamena city")):
        for a in answers:
            model.reply(a)
        ids.append((await run_eval(store, parse_eval(spec))).run_id)
    summary = summarize(store, ids[1])
    page = render_html(store, summary, comparison=compare_runs(store, ids[0], ids[1]))
    text = re.sub(r"<[^>]+>", " ", page)
    scores = re.findall(r"similar: (\S+)", text)
    assert scores and all(re.fullmatch(r"\d+(\.\d{1,3})?", s) for s in scores), scores
    assert not re.findall(r"\d\.\d{4,}", text), re.findall(r"\d\.\d{4,}", text)  # e.g. 0.18181818181818177
