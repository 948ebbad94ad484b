"""Retrieval evals: IR metrics checked against pytrec_eval (trec_eval), on random rankings and
on ADI searched through a real collection; generative benchmarking with a scripted model; the CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.context import Collection
from keel.context.smart import load_smart
from keel.evals import Datasets
from keel.evals.errors import DatasetError, EvalSpecError
from keel.evals.generative import (
    GenerationOptions,
    check_query,
    collection_chunks,
    generate_queries,
)
from keel.evals.retrieval import (
    GoldQuery,
    evaluate_collection,
    evaluate_run,
    load_gold,
    parse_metrics,
)
from keel.models.base import ModelRequest
from keel.store import open_store
from keel.testing import scripted

try:
    import pytrec_eval
except ImportError:  # pragma: no cover - it is in the dev extra
    pytrec_eval = None
needs_trec = pytest.mark.skipif(pytrec_eval is None, reason="needs pytrec_eval (pip install pytrec-eval-terrier)")

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"

# Keel metric -> pytrec_eval measure over the same ranking (mrr@k: recip_rank of the ranking cut at k)
PAIRS = {"recall@5": "recall_5", "recall@10": "recall_10", "precision@10": "P_10", "ndcg@10": "ndcg_cut_10",
         "ndcg@3": "ndcg_cut_3", "map": "map", "map@10": "map_cut_10", "mrr": "recip_rank", "hit@10": "success_10"}


def _trec(run: dict[str, list[str]], qrels: dict[str, dict[str, int]], measures: set[str]) -> dict[str, dict[str, float]]:
    # trec_eval ranks by score: give strictly decreasing scores in our order (no ties to break)
    scored = {q: {d: float(len(ranked) - i) for i, d in enumerate(ranked)} for q, ranked in run.items() if ranked}
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(scored)


def _check_against_trec(run: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> int:
    metrics = [*PAIRS, "mrr@10"]
    _, ours = evaluate_run(run, qrels, metrics)
    theirs = _trec(run, qrels, set(PAIRS.values()))
    cut = _trec({q: r[:10] for q, r in run.items()}, qrels, {"recip_rank"})
    compared = 0
    for q, scores in theirs.items():
        if q not in ours:  # no relevant document: we skip it, trec_eval scores it 0
            assert not any(scores.values()), q
            continue
        for mine, measure in PAIRS.items():
            assert ours[q][mine] == pytest.approx(scores[measure], abs=1e-9), (q, mine, measure)
        assert ours[q]["mrr@10"] == pytest.approx(cut[q]["recip_rank"], abs=1e-9), q
        compared += 1
    return compared


@needs_trec
def test_metrics_match_pytrec_eval_on_random_rankings() -> None:
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(60)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, list[str]] = {}
    for q in range(200):
        judged = rng.sample(docs, rng.randint(1, 15))
        # graded: 0 (judged not relevant), 1..3; some queries only have non-relevant judgments
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        run[f"q{q}"] = rng.sample(docs, rng.randint(1, 40))
    assert _check_against_trec(run, qrels) > 150


def test_metric_values_by_hand() -> None:
    ranked = ["a", "x", "b", "y", "c"]
    means, _ = evaluate_run({"q": ranked}, {"q": {"a": 1, "b": 1, "c": 1, "z": 1}},
                            ["recall@3", "precision@2", "mrr", "map", "hit@1"])
    assert means == {"recall@3": 0.5, "precision@2": 0.5, "mrr": 1.0, "map": round((1 + 2 / 3 + 3 / 5) / 4, 4),
                     "hit@1": 1.0}
    # queries with no relevant document are skipped; a judged query with no ranking scores 0
    means, per_query = evaluate_run({"q": ["a"]}, {"q": {"a": 1}, "none": {"a": 0}, "lost": {"b": 2}}, ["mrr"])
    assert set(per_query) == {"q", "lost"} and means["mrr"] == 0.5


def test_metric_names_are_checked() -> None:
    assert parse_metrics(["recall@10,ndcg@5", "MRR", "p@3"]) == [
        ("recall@10", "recall", 10), ("ndcg@5", "ndcg", 5), ("mrr", "mrr", None), ("precision@3", "precision", 3)]
    with pytest.raises(EvalSpecError, match="unknown retrieval metric 'rcall@10'"):
        parse_metrics(["rcall@10"])
    with pytest.raises(EvalSpecError, match="metric 'ndcg' needs a cutoff"):
        parse_metrics(["ndcg"])
    with pytest.raises(EvalSpecError, match="K must be a positive whole number"):
        parse_metrics(["recall@0"])


@needs_trec
def test_adi_through_a_collection_matches_pytrec_eval() -> None:
    folder = DATASETS / "adi"
    if not folder.is_dir():
        pytest.skip(f"ADI not found at {folder.resolve()} (the shared/ folder sits beside the repo)")
    data = load_smart(folder)
    with Collection.open("adi", embedder="test-hashing") as col:
        col.add_records([(d.id, d.title, d.text, {}) for d in data.docs])
        gold = load_gold(folder)
        report = evaluate_collection(col, gold, metrics=[*PAIRS, "mrr@10"], mode="bm25")
    assert report.unit == "source" and report.depth == 100
    assert len(report.queries) == 35 and report.skipped == 0
    # BM25 on ADI does find things: the numbers are in a sane band
    assert 0.2 < report.metrics["ndcg@10"] < 0.8 and report.metrics["recall@10"] > 0.2
    run = {q.id: q.ranked for q in report.queries}
    assert all(len(r) == len(set(r)) for r in run.values())
    assert _check_against_trec(run, {g.id: g.relevant for g in gold}) == 35
    theirs = _trec(run, {g.id: g.relevant for g in gold}, {"ndcg_cut_10"})
    assert report.metrics["ndcg@10"] == pytest.approx(sum(s["ndcg_cut_10"] for s in theirs.values()) / 35, abs=1e-4)


DOCS = {
    "keys.md": "# Keys\n\nRotate an API key from Settings, then Keys, then Rotate. The old key keeps working "
               "for 24 hours so deployments can switch over without downtime.\n",
    "billing.md": "# Billing\n\nInvoices are emailed on the first day of each month. Change the billing email "
                  "under Account, Billing contact; refunds take five to ten business days.\n",
    "license.md": "# License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy.\n",
    "limits.md": "# Rate limits\n\nEach key may send 600 requests per minute. Beyond that the API answers 429 "
                 "with a Retry-After header giving the seconds to wait.\n",
}

QUERIES = {
    "keys.md": ["how long does an old api key keep working after rotating", "rotate"],
    "billing.md": ["when are invoices emailed each month",
                   "Change the billing email under Account, Billing contact please"],  # copies 8 words
    "limits.md": ["how many requests per minute can one key send", "How many requests per minute can a key send?"],
}


def _writer(request: ModelRequest) -> str:
    system, chunk = request.messages[0].content, request.messages[-1].content
    source = Path(chunk.split("\n", 1)[0].removeprefix("Source: ").split(" ")[0]).name
    if "`verdict`" in system:
        keep = "License" not in chunk
        return json.dumps({"reasoning": "boilerplate" if not keep else "specific facts",
                           "verdict": "keep" if keep else "skip"})
    return json.dumps({"queries": QUERIES[source]})


def _collection(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    with Collection.open("kb", embedder="test-hashing") as col:
        col.add([docs])


async def test_generative_benchmark_with_a_scripted_model(tmp_path: Path) -> None:
    _collection(tmp_path)
    with Collection.open("kb", create=False) as col:
        chunks = collection_chunks(col)
        assert sorted(Path(c.source).name for c in chunks) == sorted(DOCS)
        with scripted("writer") as writer:
            writer.default = _writer
            options = GenerationOptions(model="scripted:writer", per_chunk=2, context="developers using our API",
                                        examples=("how do I paginate results",))
            report = await generate_queries(chunks, options)
        assert report.chunks_seen == 4 and report.chunks_skipped == 1 and report.chunks_failed == 0
        assert [(Path(label).name, why) for label, why in report.skip_reasons] == [("license.md#license", "boilerplate")]
        assert report.generated == 6 and dict(report.dropped) == {"too short": 1, "copies the chunk": 1,
                                                                     "near-duplicate": 1}
        assert sorted(q.query for q in report.queries) == sorted([QUERIES["keys.md"][0], QUERIES["billing.md"][0],
                                                                  QUERIES["limits.md"][0]])
        assert [q.id for q in report.queries] == ["g1", "g2", "g3"]
        # the prompts carry the users' context and example queries
        prompt = next(c for c in writer.calls if "`queries`" in c.messages[0].content).messages[0].content
        assert "developers using our API" in prompt and "- how do I paginate results" in prompt
        items = [q.to_item() for q in report.queries]
        keys = next(i for i in items if i["query"] == QUERIES["keys.md"][0])
        assert keys["relevant"] == {next(c.hash for c in chunks if c.source.endswith("keys.md")): 1}
        gold = [GoldQuery(i["id"], i["query"], i["relevant"]) for i in items]
        result = evaluate_collection(col, gold, metrics=["recall@1", "mrr@10", "ndcg@10"], mode="bm25")
    assert result.unit == "chunk" and len(result.queries) == 3
    assert result.metrics["recall@1"] == 1.0 and result.metrics["mrr@10"] == 1.0


async def test_generation_failures_are_counted_per_chunk(tmp_path: Path) -> None:
    from keel.errors import ProviderError

    _collection(tmp_path)
    with Collection.open("kb", create=False) as col:
        chunks = collection_chunks(col)
    with scripted("flaky") as flaky:
        flaky.default = lambda r: json.dumps({"queries": ["what is the rate limit per key"]})
        flaky.fail(ProviderError("boom"))  # not transient: no retry, that chunk fails
        report = await generate_queries(chunks[:2], GenerationOptions(model="scripted:flaky", filter_chunks=False,
                                                                      concurrency=1))
    assert report.chunks_failed == 1 and report.failures[0][1].startswith("boom")
    assert len(report.queries) == 1


def test_query_checks() -> None:
    options = GenerationOptions(model="scripted:x", min_words=3, max_words=6, max_copied_words=4)
    chunk = "Rotate an API key from Settings, then Keys."
    assert check_query("rotate key", chunk, [], options) == "too short"
    assert check_query("one two three four five six seven", chunk, [], options) == "too long"
    assert check_query("api key from settings?", chunk, [], options) == "copies the chunk"
    assert check_query("where do I rotate keys", chunk, ["Where do I rotate keys?"], options) == "near-duplicate"
    assert check_query("where do I rotate keys", chunk, [], options) is None
    with pytest.raises(EvalSpecError, match="per_chunk 0 is out of range"):
        GenerationOptions(model="m", per_chunk=0)


def test_gold_sets_from_files_and_datasets(tmp_path: Path, keel_home: Path) -> None:
    f = tmp_path / "gold.jsonl"
    f.write_text('{"id": "a", "query": "rotate keys", "relevant": ["keys.md"]}\n\n'
                 '{"query": "refunds", "relevant": {"billing.md": 2, "faq.md": 0}}\n')
    assert load_gold(f) == [GoldQuery("a", "rotate keys", {"keys.md": 1}),
                            GoldQuery("2", "refunds", {"billing.md": 2, "faq.md": 0})]
    store = open_store(keel_home)
    Datasets(store).import_file(f, name="gold")
    assert [g.query for g in load_gold("gold@1", store=store)] == ["rotate keys", "refunds"]
    for text, message in [('{"query": "x"}\n', r"gold2.jsonl:1: no \"relevant\" judgments"),
                          ('{"relevant": ["a"]}\n', r"gold2.jsonl:1: no \"query\" text"),
                          ('{"query": "x", "relevant": {"a": "yes"}}\n', r"the grade of 'a' is 'yes', not a number"),
                          ('{"query": "x", "relevant": 3}\n', r"\"relevant\" must be an id"),
                          ("not json\n", r"gold2.jsonl:1: not valid JSON")]:
        (tmp_path / "gold2.jsonl").write_text(text)
        with pytest.raises(DatasetError, match=message):
            load_gold(tmp_path / "gold2.jsonl")
    with pytest.raises(DatasetError, match="no dataset 'nope'"):
        load_gold("nope", store=store)
    store.close()


runner = CliRunner()


def keel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keel", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ}, timeout=120)


def test_cli_generate_then_retrieval(tmp_path: Path) -> None:
    _collection(tmp_path)
    with scripted("writer") as writer:  # in-process: the scripted model lives in this process
        writer.default = _writer
        r = runner.invoke(app, ["eval", "generate-queries", "kb", "--model", "scripted:writer", "--per-chunk", "2",
                                "--out", str(tmp_path / "gold.jsonl")])
    assert r.exit_code == 0, r.output
    assert "3 queries kept from 4 chunks (1 skipped by the filter, 0 failed); 6 written, 3 dropped" in r.output
    assert "gold set kb-gold@1: 3 queries" in r.output
    assert len((tmp_path / "gold.jsonl").read_text().splitlines()) == 3
    r = keel("eval", "retrieval", "kb", "--judgments", "kb-gold", "--mode", "bm25", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["unit"] == "chunk" and out["queries"] == 3 and out["metrics"]["recall@10"] == 1.0
    r = keel("eval", "retrieval", "kb", "--judgments", "gold.jsonl", "--mode", "bm25", "--metric", "mrr@10",
             "--metric", "ndcg@10", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kb (bm25, judged by chunk): 3 queries" in r.stdout and "mrr@10   1.0000" in r.stdout
    assert "lowest ndcg@10:" in r.stdout
    # the gate: exit 1 naming the metric that missed
    r = keel("eval", "retrieval", "kb", "--judgments", "kb-gold", "--mode", "bm25", "--metric", "precision@10",
             "--fail-under", "precision@10=0.5", cwd=tmp_path)
    assert r.returncode == 1 and "error: retrieval gate failed: precision@10 0.1000 < 0.5" in r.stderr


def test_cli_retrieval_bad_input_is_not_a_traceback(tmp_path: Path) -> None:
    _collection(tmp_path)
    (tmp_path / "g.jsonl").write_text('{"query": "x", "relevant": ["keys.md"]}\n')
    for args, message in [
        (["--metric", "ndcg"], "metric 'ndcg' needs a cutoff"),
        (["--fail-under", "ndcg@5=0.5"], "--fail-under ndcg@5: not among"),
        (["--fail-under", "ndcg@10"], "is not METRIC=VALUE"),
        (["--mode", "fuzzy"], "unknown search mode 'fuzzy'"),
        (["--judgments", "missing.jsonl"], "judgments missing.jsonl not found"),
        (["--judgments", "nope"], "no dataset 'nope'"),
    ]:
        r = keel("eval", "retrieval", "kb", "--judgments", "g.jsonl", *args, cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    r = keel("eval", "retrieval", "nope", "--judgments", "g.jsonl", cwd=tmp_path)
    assert r.returncode == 2 and "no collection named 'nope'" in r.stderr
    r = keel("eval", "generate-queries", "kb", "--model", "scripted:nobody", "--no-filter", cwd=tmp_path)
    assert r.returncode == 2 and "no query passed the checks" in r.stderr and "Traceback" not in r.stderr
    assert "4 failed" in r.stdout
