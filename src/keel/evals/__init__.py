"""Evals: datasets, graders with OpenAI's semantics, runs, comparisons and CI gates.

- :mod:`keel.evals.datasets` — versioned CSV/JSONL datasets in Keel's store;
- :mod:`keel.evals.graders` — string_check, text_similarity, score_model,
  label_model, python and multi graders, defined exactly as OpenAI defines them;
- :mod:`keel.evals.spec` — an eval: dataset, graders, targets (precomputed
  outputs, or prompts × models for side-by-side comparison);
- :mod:`keel.evals.runner` — runs with concurrency, per-provider rate limits
  and resume;
- :mod:`keel.evals.results` — summaries and run-to-run comparison;
- :mod:`keel.evals.report` / :mod:`keel.evals.html` — terminal, JSON and HTML reports;
- :mod:`keel.evals.openai_import` — run OpenAI Evals definitions locally;
- :mod:`keel.evals.workflow_target` — a pinned workflow version as the target;
- :mod:`keel.evals.traces` — a workflow run's trace as trace graders see it;
- :mod:`keel.evals.from_runs` — datasets built from stored workflow runs;
- :mod:`keel.evals.retrieval` — IR metrics of a context collection against judgments;
- :mod:`keel.evals.generative` — judgments written by a model from your own documents.
"""

from keel.evals.datasets import DatasetInfo, DatasetRow, Datasets, ImportReport, RowProblem
from keel.evals.errors import (
    DatasetError,
    EvalGateFailed,
    EvalRunNotFound,
    EvalSpecError,
    GraderFailure,
    TemplateError,
)
from keel.evals.from_runs import RunFilter, dataset_from_runs
from keel.evals.generative import (
    GenerationOptions,
    GenerationReport,
    collection_chunks,
    generate_queries,
)
from keel.evals.graders import Grader, GradeResult, Graders, parse_grader
from keel.evals.results import (
    Comparison,
    ItemResult,
    RunSummary,
    compare_runs,
    get_run,
    iter_results,
    list_runs,
    summarize,
)
from keel.evals.retrieval import (
    GoldQuery,
    RetrievalReport,
    evaluate_collection,
    evaluate_run,
    load_gold,
)
from keel.evals.runner import resume_eval, run_eval
from keel.evals.spec import (
    EvalSpec,
    ModelTarget,
    PrecomputedTarget,
    WorkflowTarget,
    load_eval,
    parse_eval,
)
from keel.evals.traces import RunTrace, TraceStep, load_trace

__all__ = [
    "Comparison",
    "DatasetError",
    "DatasetInfo",
    "DatasetRow",
    "Datasets",
    "EvalGateFailed",
    "EvalRunNotFound",
    "EvalSpec",
    "EvalSpecError",
    "GenerationOptions",
    "GenerationReport",
    "GoldQuery",
    "GradeResult",
    "Grader",
    "GraderFailure",
    "Graders",
    "ImportReport",
    "ItemResult",
    "ModelTarget",
    "PrecomputedTarget",
    "RetrievalReport",
    "RowProblem",
    "RunFilter",
    "RunSummary",
    "RunTrace",
    "TemplateError",
    "TraceStep",
    "WorkflowTarget",
    "collection_chunks",
    "compare_runs",
    "dataset_from_runs",
    "evaluate_collection",
    "evaluate_run",
    "generate_queries",
    "get_run",
    "iter_results",
    "list_runs",
    "load_eval",
    "load_gold",
    "load_trace",
    "parse_eval",
    "parse_grader",
    "resume_eval",
    "run_eval",
    "summarize",
]
