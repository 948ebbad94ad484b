"""The parts of the first stage and of measurement, one by one: SMART parsing, metrics
(checked against trec_eval's implementation), RRF, BM25, the --where shorthand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keel.context.bm25 import BM25Index, pack_terms
from keel.context.filters import FilterError, compile_filter, parse_where
from keel.context.fusion import rrf
from keel.context.metrics import evaluate, mrr_at, ndcg_at, recall_at
from keel.context.smart import load_smart, parse_smart_records
from tests.context._data import dataset


def test_smart_parsing_of_cranfield_and_adi() -> None:
    cran = load_smart(dataset("cranfield"))
    assert len(cran.docs) == 1400 and len(cran.queries) == 225
    assert cran.docs[0].id == "1" and cran.docs[0].title.startswith("experimental investigation")
    # grade 1 (complete answer) is the highest gain; -1 rows are dropped
    assert max(g for rel in cran.qrels.values() for g in rel.values()) == 4
    assert all(g > 0 for rel in cran.qrels.values() for g in rel.values())
    adi = load_smart(dataset("adi"))
    assert len(adi.docs) == 82 and len(adi.queries) == 35
    assert set(adi.qrels["1"]) >= {"17", "46", "62"}


def test_smart_record_fields() -> None:
    recs = parse_smart_records(".I 007\n.T\nA title\n.A\nSomeone\n.W\nline one\nline two\n.I 8\n.W\nx\n")
    assert recs[0].id == "7" and recs[0].title == "A title" and recs[0].text == "line one line two"
    assert recs[1].text == "x"


def test_metrics_by_hand() -> None:
    rel = {"a": 3, "b": 1}
    assert mrr_at(["x", "b", "a"], rel, 10) == 0.5
    assert recall_at(["x", "b"], rel, 100) == 0.5
    dcg = 1 / math.log2(3) + 3 / math.log2(4)
    idcg = 3 + 1 / math.log2(3)
    assert ndcg_at(["x", "b", "a"], rel, 10) == pytest.approx(dcg / idcg)


def test_metrics_match_trec_eval() -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier not installed")
    rng = np.random.default_rng(3)
    docs = [f"d{i}" for i in range(300)]
    qrels = {f"q{q}": {d: int(rng.integers(1, 4)) for d in rng.choice(docs, 12, replace=False)} for q in range(20)}
    run = {q: list(rng.permutation(docs)[:150]) for q in qrels}
    ours = evaluate(run, qrels)
    trec_run = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in run.items()}
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "recip_rank"})
    res = ev.evaluate(trec_run)
    mean = lambda m: sum(v[m] for v in res.values()) / len(res)  # noqa: E731
    assert ours["ndcg@10"] == pytest.approx(mean("ndcg_cut_10"), abs=1e-4)
    assert ours["recall@100"] == pytest.approx(mean("recall_100"), abs=1e-4)
    # trec_eval's recip_rank has no cutoff; cut our run at 10 to compare MRR@10
    ev10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    res10 = ev10.evaluate({q: dict(list(r.items())[:10]) for q, r in trec_run.items()})
    assert ours["mrr@10"] == pytest.approx(sum(v["recip_rank"] for v in res10.values()) / len(res10), abs=1e-4)


def test_rrf() -> None:
    fused = rrf({"dense": ["a", "b", "c"], "bm25": ["c", "a"]})
    assert [x for x, _ in fused] == ["a", "c", "b"]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)
    weighted = rrf({"dense": ["a", "b"], "bm25": ["b", "a"]}, weights={"dense": 0.0})
    assert [x for x, _ in weighted] == ["b", "a"]


def test_bm25_matches_the_formula() -> None:
    docs = [{1: 2, 2: 1}, {1: 1}, {3: 5}]
    idx = BM25Index([pack_terms(d) for d in docs])
    s = idx.scores([1])
    n, df = 3, 2
    idf = math.log1p((n - df + 0.5) / (df + 0.5))
    dl = [3, 1, 5]
    avg = sum(dl) / 3

    def w(tf: float, d: int) -> float:
        return idf * tf * 2.5 / (tf + 1.5 * (0.25 + 0.75 * dl[d] / avg))  # k1 = 1.5 (decision 0025)

    assert s[0] == pytest.approx(w(2, 0), rel=1e-5)
    assert s[1] == pytest.approx(w(1, 1), rel=1e-5)
    assert s[2] == 0
    assert BM25Index([]).scores([1]).size == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lang = python", {"lang": {"$eq": "python"}}),
        ("year >= 2020 and year < 2025", {"$and": [{"year": {"$gte": 2020}}, {"year": {"$lt": 2025}}]}),
        ("kind in [code, markdown] or source = 'a b.md'",
         {"$or": [{"kind": {"$in": ["code", "markdown"]}}, {"source": {"$eq": "a b.md"}}]}),
        ("(a = 1 or b != x) and c not in [1, 2]",
         {"$and": [{"$or": [{"a": {"$eq": 1}}, {"b": {"$ne": "x"}}]}, {"c": {"$nin": [1, 2]}}]}),
        ('{"kind": "code"}', {"kind": "code"}),
    ],
)
def test_where_shorthand(text: str, expected: dict) -> None:
    assert parse_where(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lang =", "ends too early"),
        ("lang python", "expected op"),
        ("kind in code", "needs a list"),
        ("a = 1 b = 2", "unexpected 'b'"),
        ("{bad json", "not valid JSON"),
        ("(a = 1", "ends too early"),
    ],
)
def test_where_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_where(text)


def test_compile_filter_errors() -> None:
    with pytest.raises(FilterError, match="unknown filter field 'colour'"):
        compile_filter({"colour": "red"}, {"color"})
    with pytest.raises(FilterError, match=r"\$or needs a non-empty list"):
        compile_filter({"$or": []}, set())
    with pytest.raises(FilterError, match="must be a string, number or boolean"):
        compile_filter({"kind": {"$eq": {"x": 1}}}, set())
    with pytest.raises(FilterError, match="only equality"):
        compile_filter({"symbol": {"$gt": "a"}}, set())
    sql, params = compile_filter({"color": {"$in": ["red", "blue"]}, "start_line": {"$gte": 3}}, {"color"})
    assert "json_extract" in sql and params == ['$."color"', "red", "blue", 3]


def test_public_names() -> None:
    import keel.context

    public = {n for n, v in vars(keel.context).items() if not n.startswith("_") and not isinstance(v, type(keel))}
    assert sorted(keel.context.__all__) == sorted(public)
    for name in keel.context.__all__:
        assert getattr(keel.context, name) is not None
