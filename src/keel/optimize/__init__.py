"""Optimize: make an agent better from its eval.

- **Prompt optimization** (``keel optimize prompt EVAL --target NODE --budget N``): reflective
  prompt evolution with a per-item Pareto front (GEPA) over one Agent node's instructions (or a
  model target's system message), then few-shot examples bootstrapped from passing rows.
  Resumable call by call; the result is a draft, published only on request.

Modules: :mod:`~keel.optimize.gepa` (the search), :mod:`~keel.optimize.reflection` (the
reflection prompt and its parsing), :mod:`~keel.optimize.targets` (what is optimized),
:mod:`~keel.optimize.state` (memoized calls), :mod:`~keel.optimize.prompt` (run, resume,
publish), :mod:`~keel.optimize.report`, :mod:`~keel.optimize.errors`.
"""

from keel.optimize.errors import (
    BudgetTooSmall,
    OptimizeError,
    OptimizeRunNotFound,
    ReflectionGarbage,
    TooFewRows,
    UnknownTarget,
)
from keel.optimize.gepa import Options
from keel.optimize.prompt import optimize_prompt, publish, resume_prompt

__all__ = ["BudgetTooSmall", "OptimizeError", "OptimizeRunNotFound", "Options", "ReflectionGarbage", "TooFewRows",
           "UnknownTarget", "optimize_prompt", "publish", "resume_prompt"]
