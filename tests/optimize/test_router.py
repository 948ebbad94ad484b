"""The model router end to end: an eval run of a strong and a weak scripted model in a real store,
`keel router train` and `keel router report` through the real CLI, then `router:NAME` answering an
eval (knn and cascade) with the decision and its reason on the model-call rows; bad input."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.store import open_store
from tests.optimize.graded_task import install, run_eval_file, write_eval

ROOT = Path(__file__).resolve().parents[2]


def keel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])})


def _router_eval(tmp_path: Path, name: str = "routed") -> Path:
    return write_eval(tmp_path, models=("router:sums",), name=name)


def test_train_report_and_route_an_eval(tmp_path, keel_home):
    run_id = run_eval_file(write_eval(tmp_path))
    out = keel("router", "train", "sums", "--run", run_id, "--strong", "scripted:g-strong", "--weak",
               "scripted:g-weak", "--k", "3")
    assert out.returncode == 0, out.stderr
    assert "router:sums version 1: knn, 16 eval items" in out.stdout
    rep = keel("router", "report", "sums", "--json")
    assert rep.returncode == 0, rep.stderr
    report = json.loads(rep.stdout)
    assert report["weak_quality"] == 0.5 and report["strong_quality"] == 1.0
    half = next(r for r in report["curve"] if r["share"] == 0.5)
    # the hard sums are the ones whose neighbours gained from the strong model: all recovered at 50 %
    assert half["quality"] == 1.0 and report["apgr"] > report["random_apgr"] + 0.2
    text = keel("router", "report", "sums")
    assert "APGR" in text.stdout and "strong calls" in text.stdout, text.stderr

    # router:sums answers the same items: the hard ones go to the strong model, the easy ones to the weak
    install()
    from keel.evals import load_eval
    from keel.evals.runner import run_eval

    summary = asyncio.run(run_eval(open_store(), load_eval(_router_eval(tmp_path))))
    assert summary.targets[0].pass_rate == 1.0
    rows = open_store().query("SELECT provider, model, tags FROM model_calls WHERE tags LIKE '%router%'")
    choices = [(r["model"], json.loads(r["tags"])) for r in rows]
    assert len(choices) == 16
    assert {m for m, t in choices if t["router.choice"] == "strong"} == {"g-strong"}
    assert {m for m, t in choices if t["router.choice"] == "weak"} == {"g-weak"}
    assert sum(t["router.choice"] == "strong" for _, t in choices) == 8
    assert all(t["router"] == "sums" and "kNN: the 3 nearest eval items gain" in t["router.reason"]
               for _, t in choices)
    results = [json.loads(r["sample"]) for r in
               open_store().query("SELECT sample FROM eval_results WHERE run_id = ?", (summary.run_id,))]
    assert {r["model"] for r in results} == {"scripted:g-strong", "scripted:g-weak"}


def test_cascade_escalates_on_a_structured_output_failure_or_a_verifier_no(tmp_path, keel_home):
    from keel.models import get_model
    from keel.models.scripted import get_script
    from keel.optimize.router import train_router

    run_id = run_eval_file(write_eval(tmp_path))
    train_router(open_store(), "casc", runs=[run_id], strong="scripted:g-strong", weak="scripted:g-weak",
                 policy="cascade", verifier="scripted:g-verify")

    def verify(request):
        text = request.messages[-1].content
        a, b = (int(n) for n in text.split("What is ")[1].split("?")[0].split(" + "))
        answer = text.rsplit("Answer:\n", 1)[1].strip()
        ok = answer == str(a + b)
        return json.dumps({"accept": ok, "reason": "right sum" if ok else "the sum is wrong"})

    get_script("g-verify").default = verify
    install()
    router = get_model("router:casc")
    easy = asyncio.run(router.generate("What is 1 + 2?").response())
    assert easy.text == "3" and easy.model == "scripted:g-weak"
    assert router.last_decision.choice == "weak" and "verifier accepted" in router.last_decision.reason
    hard = asyncio.run(router.generate("What is 123 + 456?").response())
    assert hard.text == "579" and hard.model == "scripted:g-strong"
    assert "verifier rejected: the sum is wrong; escalated to scripted:g-strong" in router.last_decision.reason

    # a weak answer that breaks the output schema twice escalates without asking the verifier
    get_script("g-weak").default = lambda request: "not json"
    get_script("g-strong").default = lambda request: '{"n": 3}'
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    r = asyncio.run(router.generate("What is 1 + 2?", output_schema=schema).response())
    assert r.parsed == {"n": 3} and r.model == "scripted:g-strong"
    assert "broke the output contract" in router.last_decision.reason
    tags = [json.loads(t["tags"]) for t in open_store().query(
        "SELECT tags FROM model_calls WHERE model = 'g-weak' AND status = 'invalid_output'")]
    assert tags and all(t["router.choice"] == "weak" for t in tags)


def test_a_loaded_policy_decides_by_the_nearest_eval_items(tmp_path, keel_home):
    """(How long a decision takes is measured in benchmarks/router.py, not asserted here.)"""
    from keel.optimize.router import load_policy, train_router

    run_id = run_eval_file(write_eval(tmp_path))
    train_router(open_store(), "sums", runs=[run_id], strong="scripted:g-strong", weak="scripted:g-weak", k=3)
    d = load_policy(open_store(), "sums").decide("What is 700 + 300?")
    assert d.choice == "strong" and d.model == "scripted:g-strong" and d.ms >= 0
    d = load_policy(open_store(), "sums").decide("What is 2 + 3?")
    assert d.choice == "weak"


@pytest.mark.parametrize(("args", "message"), [
    (["--strong", "scripted:g-strong", "--weak", "nope"], "have no model target named 'nope'"),
    (["--strong", "scripted:g-strong", "--weak", "scripted:g-strong"], "name the same target"),
    (["--strong", "scripted:g-strong", "--weak", "scripted:g-weak", "--policy", "magic"], "unknown policy 'magic'"),
])
def test_train_bad_input_is_one_clear_error(tmp_path, keel_home, args, message):
    run_id = run_eval_file(write_eval(tmp_path))
    out = keel("router", "train", "sums", "--run", run_id, *args)
    assert out.returncode == 2 and message in out.stderr and "fix:" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not open_store().query("SELECT * FROM router_policies")


def test_unknown_router_and_unknown_run_are_clear_errors(tmp_path, keel_home):
    out = keel("router", "report", "ghost")
    assert out.returncode == 2 and "no router named 'ghost'" in out.stderr and "keel router train" in out.stderr
    out = keel("router", "train", "x", "--run", "nope", "--strong", "a", "--weak", "b")
    assert out.returncode == 2 and "no eval run 'nope'" in out.stderr and "Traceback" not in out.stderr
    out = keel("router", "train", "bad name!", "--run", "nope", "--strong", "a", "--weak", "b")
    assert out.returncode == 2 and "router name 'bad name!' is not allowed" in out.stderr, out.stderr
    from keel.errors import UserError
    from keel.models import get_model

    with pytest.raises(UserError, match="no router named 'ghost'"):
        asyncio.run(get_model("router:ghost").generate("hi").response())


def test_too_few_items_answered_by_both_models(tmp_path, keel_home):
    (tmp_path / "few.jsonl").write_text('{"q": "What is 1 + 2?", "answer": "3"}\n')
    (tmp_path / "few.yaml").write_text(
        "name: few\ndataset: few.jsonl\ngraders:\n  - {type: string_check, name: exact, operation: eq, "
        "input: '{{sample.output_text}}', reference: '{{item.answer}}'}\n"
        "matrix:\n  models: ['scripted:g-strong', 'scripted:g-weak']\n  prompts:\n"
        "    calc: [{role: user, content: '{{item.q}}'}]\n")
    run_id = run_eval_file(tmp_path / "few.yaml")
    out = keel("router", "train", "few", "--run", run_id, "--strong", "scripted:g-strong", "--weak", "scripted:g-weak")
    assert out.returncode == 2 and "only 1 item(s)" in out.stderr and "at least 4" in out.stderr, out.stderr


def test_an_agent_node_with_a_router_model_records_the_decision_in_its_trace(tmp_path, keel_home):
    from keel.optimize.router import train_router
    from keel.workflows import arun

    run_id = run_eval_file(write_eval(tmp_path))
    train_router(open_store(), "sums", runs=[run_id], strong="scripted:g-strong", weak="scripted:g-weak", k=3)
    install()
    (tmp_path / "wf.yaml").write_text(
        "name: adder\nnodes:\n  - {id: start, type: start}\n"
        "  - {id: add, type: agent, model: 'router:sums', instructions: 'Answer with the number only.'}\n"
        "  - {id: done, type: end}\n"
        "edges:\n  - {from: start, to: add}\n  - {from: add, to: done}\n")
    store = open_store()
    hard = asyncio.run(arun(tmp_path / "wf.yaml", "What is 640 + 275?", store=store))
    easy = asyncio.run(arun(tmp_path / "wf.yaml", "What is 3 + 2?", store=store))
    assert hard.status == easy.status == "succeeded", (hard.error, easy.error)
    for result, choice, answer in ((hard, "strong", "915"), (easy, "weak", "5")):
        assert answer in json.dumps(result.output)
        trace = store.query("SELECT trace_id FROM workflow_runs WHERE id = ?", (result.run_id,))[0]["trace_id"]
        calls = store.query("SELECT model, span_id, tags FROM model_calls WHERE trace_id = ?", (trace,))
        assert len(calls) == 1
        tags = json.loads(calls[0]["tags"])
        assert tags["router.choice"] == choice and tags["node_id"] == "add" and "kNN" in tags["router.reason"]
        assert calls[0]["model"] == f"g-{choice}"
        model_spans = store.query("SELECT span_id, attributes FROM trace_spans WHERE trace_id = ? AND kind = 'model'",
                                  (trace,))
        assert [s["span_id"] for s in model_spans] == [calls[0]["span_id"]]
        attributes = json.loads(model_spans[0]["attributes"])
        assert attributes["gen_ai.response.model"] == f"scripted:g-{choice}"
        # the decision and its reason are attributes of the model span itself, not only the call's tags
        assert attributes["keel.router.name"] == "sums" and attributes["keel.router.choice"] == choice
        assert attributes["keel.router.reason"] == tags["router.reason"]


def test_neighbours_vote_by_similarity_and_k_is_chosen_by_leave_one_out_error():
    import numpy as np

    from keel.optimize.router import choose_k, knn_gain

    # a close neighbour that gained outweighs a far one that did not; a negative cosine does not vote
    sims = np.array([[0.9, 0.1], [0.5, -0.5]], dtype=np.float32)
    gains = np.array([1.0, 0.0], dtype=np.float32)
    assert knn_gain(sims, gains, 2, "similarity") == pytest.approx([0.9, 1.0])
    assert knn_gain(sims, gains, 2, "uniform") == pytest.approx([0.5, 0.5])

    # two clusters of 40 queries: in one the strong model gains on every other item (noise around
    # 0.5), in the other never. Few neighbours echo the noise; more average it out, up to the
    # cluster's size, past which the other cluster leaks in: leave-one-out picks in between.
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:2]
    vectors = np.concatenate([centres[0] + 0.05 * rng.standard_normal((40, 8)),
                              centres[1] + 0.05 * rng.standard_normal((40, 8))]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gains = np.array([i % 2 for i in range(40)] + [0] * 40, dtype=np.float32)
    k, err = choose_k(vectors, gains)
    sims = vectors @ vectors.T
    errors = {kk: float(np.mean((knn_gain(sims, gains, kk, leave_out_self=True) - gains) ** 2)) for kk in (5, 30, 80)}
    assert 15 <= k <= 40 and err < min(errors[5], errors[80])
    # without noise every small k is exact: the smallest wins
    assert choose_k(vectors, np.array([1.0] * 40 + [0.0] * 40, dtype=np.float32)) == (5, 0.0)


def test_a_router_routes_with_the_embedder_it_was_trained_with(tmp_path, keel_home):
    """Each router embeds requests with the embedder recorded when it was trained: a router trained
    with the static vectors keeps them when the default changes; ``auto`` records what it chose."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import numpy as np

    from keel.optimize.router import StaticMiniLM, default_embedder, load_policy, train_router

    run_id = run_eval_file(write_eval(tmp_path))
    store = open_store()
    trained = {emb: train_router(store, f"sums-{emb}", runs=[run_id], strong="scripted:g-strong",
                                 weak="scripted:g-weak", k=3, embedder=emb)
               for emb in ("minilm-static", "minilm-onnx", "minilm-int8", "auto")}
    assert default_embedder() == "minilm-int8" and trained["auto"].embedder == "minilm-int8"
    runtimes = {"minilm-static": None, "minilm-onnx": "onnx", "minilm-int8": "onnx-int8"}
    policies = {emb: load_policy(store, f"sums-{emb}") for emb in runtimes}
    for emb, policy in policies.items():
        assert policy.spec.embedder == emb
        if runtimes[emb] is None:
            assert isinstance(policy.embedder, StaticMiniLM)
        else:
            assert policy.embedder.runtime == runtimes[emb]
        # a request embeds as the stored training vectors were: each query is nearest its own vector
        routed = policy.embedder.embed(policy.queries)
        assert np.argmax(routed @ policy.vectors.T, axis=1).tolist() == list(range(len(policy.queries)))
        assert float(np.min(np.sum(routed * policy.vectors, axis=1))) > 0.999
        assert policy.decide("What is 700 + 300?").choice == "strong"
        assert policy.decide("What is 2 + 3?").choice == "weak"
    # the embedders really differ: the static router's vectors are not the ONNX router's
    assert float(np.max(np.abs(policies["minilm-static"].vectors - policies["minilm-onnx"].vectors))) > 0.05
    from keel.optimize.router import RouterError

    with pytest.raises(RouterError, match="unknown query embedder 'nope'") as bad:
        train_router(store, "sums-bad", runs=[run_id], strong="scripted:g-strong", weak="scripted:g-weak",
                     embedder="nope")
    assert "minilm-static" in (bad.value.hint or "")
