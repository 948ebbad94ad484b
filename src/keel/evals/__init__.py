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
- :mod:`keel.evals.openai_import` — run OpenAI Evals definitions locally.
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
from keel.evals.runner import resume_eval, run_eval
from keel.evals.spec import EvalSpec, ModelTarget, PrecomputedTarget, load_eval, parse_eval

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
    "GradeResult",
    "Grader",
    "GraderFailure",
    "Graders",
    "ImportReport",
    "ItemResult",
    "ModelTarget",
    "PrecomputedTarget",
    "RowProblem",
    "RunSummary",
    "TemplateError",
    "compare_runs",
    "get_run",
    "iter_results",
    "list_runs",
    "load_eval",
    "parse_eval",
    "parse_grader",
    "resume_eval",
    "run_eval",
    "summarize",
]
