"""Errors of the evals pillar, under Keel's tree (see :mod:`keel.errors`)::

    UserError
    ├── EvalSpecError        an eval file, grader or target definition is invalid
    ├── DatasetError         a dataset cannot be read, or is not in the store
    ├── EvalRunNotFound      no eval run has that id
    └── TemplateError        a ``{{...}}`` template names a missing field (per item)
    GraderFailure            a grader could not grade one item (recorded, never raised out of a run)
    EvalGateFailed           ``--fail-under`` / ``--max-regression`` not met (exit 1)

Per-item problems (a template naming a missing field, a judge timing out, a
python grader crashing) are recorded with the item and counted; they never stop
a run.
"""

from __future__ import annotations

from keel.errors import KeelError, UserError

__all__ = [
    "DatasetError",
    "EvalGateFailed",
    "EvalRunNotFound",
    "EvalSpecError",
    "GraderFailure",
    "TemplateError",
]


class EvalSpecError(UserError):
    """An eval definition (graders, targets, data source) is invalid."""


class DatasetError(UserError):
    """A dataset file cannot be read, or the named dataset is not in the store."""


class EvalRunNotFound(UserError):
    """No eval run has the given id (or id prefix)."""


class TemplateError(UserError):
    """A template names a field the item or sample does not have."""


class GraderFailure(KeelError):
    """A grader could not grade one item: the reason is recorded with the item."""


class GraderRaised(GraderFailure):
    """The user's python grader raised (or returned no number): OpenAI grades that 0, marked invalid."""


class EvalGateFailed(KeelError):
    """A CI gate was not met: the score is under ``--fail-under`` or regressed too far."""

    exit_code = 1
