"""``keel router ...``: train a model router from eval results, and see quality against cost."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Model routers: send each request to a strong or a weak model, by a policy learned from "
                       "your evals. Use one as the model string router:NAME.", no_args_is_help=True)

TRAIN_EPILOG = (
    "The eval run(s) must have two model targets that answered the same items (e.g. a matrix of two models): "
    "--strong and --weak name them. knn: a request goes to the strong model when its k nearest eval items "
    "gained at least the threshold from it (each item's gain weighted by its similarity; without --k, k is the one "
    "of 5-80 whose leave-one-out predictions on the eval items err least); the threshold is calibrated so that --strong-share of the eval items "
    "would. cascade: the weak model answers first and the strong one only when the answer breaks its output "
    "schema or --verifier rejects it. Training again makes the next version; router:NAME uses the newest."
)


@app.command("train", epilog=TRAIN_EPILOG)
def train(name: str = typer.Argument(..., help="The router's name (router:NAME)."),
          run: list[str] = typer.Option(..., "--run", help="Eval run id or prefix to learn from (repeat)."),  # noqa: B008
          strong: str = typer.Option(..., "--strong", help="The eval target of the strong model."),
          weak: str = typer.Option(..., "--weak", help="The eval target of the weak model."),
          policy: str = typer.Option("knn", "--policy", help="knn or cascade."),
          strong_share: float = typer.Option(0.5, "--strong-share", min=0.0, max=1.0,
                                             help="Share of requests to send to the strong model (knn)."),
          k: int | None = typer.Option(None, "--k", min=1, max=200,
                                       help="Neighbours that vote (knn; default: the k with the least "
                                            "leave-one-out error on the eval items)."),
          embedder: str = typer.Option("auto", "--embedder",
                                       help="Query embedder, recorded in the router and used to route: auto "
                                            "(minilm-int8 with keel[onnx], ~2 ms for a ten-word request, more for "
                                            "longer ones; else minilm-static, <1 ms, routes slightly worse), "
                                            "minilm-onnx (MiniLM's exact vectors, ~2x slower than int8), minilm, "
                                            "or any embedder string."),
          grader: str = typer.Option("", "--grader", help="Score by this grader (default: mean of all)."),
          verifier: str = typer.Option("", "--verifier", help="Cascade: a model string that accepts or rejects "
                                                              "the weak answer."),
          strong_model: str = typer.Option("", "--strong-model",
                                           help="Model string to route to (default: the strong target's)."),
          weak_model: str = typer.Option("", "--weak-model",
                                         help="Model string to route to (default: the weak target's).")) -> None:
    """Train a router from eval runs in which a strong and a weak model answered the same items."""
    from keel.optimize.router import train_router
    from keel.store import open_store

    spec = train_router(open_store(), name, runs=run, strong=strong, weak=weak, policy=policy,
                        strong_share=strong_share, k=k, embedder=embedder, grader=grader or None,
                        verifier=verifier or None, strong_model=strong_model or None, weak_model=weak_model or None)
    print(f"router:{spec.name} version {spec.version}: {spec.policy}, {spec.examples} eval items, "
          f"strong {spec.strong}, weak {spec.weak}, query embedder {spec.embedder}")
    if spec.policy == "knn":
        print(f"k {spec.k} ({'given' if k else 'least leave-one-out error'}), votes weighted by similarity; "
              f"threshold {spec.threshold:+.3f} (gain of the strong model), calibrated to {spec.strong_share:.0%} "
              "strong calls")
    print(f"see quality against cost: keel router report {spec.name}")


@app.command("report")
def report(name: str = typer.Argument(..., help="The router's name."),
           run: list[str] = typer.Option([], "--run", help="Held-out eval run(s) to score on (default: the "  # noqa: B008
                                                          "training items, each left out of its own vote)."),
           strong: str = typer.Option("", "--strong", help="With --run: the strong target (default: the trained one)."),
           weak: str = typer.Option("", "--weak", help="With --run: the weak target."),
           as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Quality against the share of strong-model calls, along the threshold, with a random router's."""
    from keel.optimize.router_report import router_report
    from keel.store import open_store

    rep = router_report(open_store(), name, runs=run or None, strong=strong or None, weak=weak or None)
    if as_json:
        print(json.dumps(rep))
        return
    print(f"router:{name} version {rep['version']}: {rep['items']} items ({rep['source']})")
    print(f"weak alone {rep['weak_quality']:.3f}, strong alone {rep['strong_quality']:.3f}")
    print(f"{'strong calls':>12} {'quality':>8} {'PGR':>6} {'random':>7} {'threshold':>10}")
    for row, rnd in zip(rep["curve"], rep["random"], strict=True):
        thr = "" if row["threshold"] in (float("inf"), None) else f"{row['threshold']:+.3f}"
        print(f"{row['share']:>11.0%} {row['quality']:>8.3f} {row['pgr']:>6.2f} {rnd['quality']:>7.3f} {thr:>10}")
    print(f"APGR {rep['apgr']:.3f} (random {rep['random_apgr']:.3f}); at the trained threshold "
          f"{rep['at_threshold']['share']:.0%} strong calls, quality {rep['at_threshold']['quality']:.3f}")
