"""Errors raised by :mod:`keel.workflows`, under Keel's one exception tree::

    keel.errors.UserError
    └── WorkflowError               a workflow cannot be validated, published or run as asked
        ├── SpecError               the spec is wrong: carries file, line, node id and a hint
        ├── WorkflowNotFoundError   no published workflow (or version) by that name
        ├── RunNotFoundError        no run with that id
        ├── RunFinishedError        the run has finished (it cannot be cancelled)
        ├── InputFieldError         a run's input is refused; names the field (``input.messages[2]``)
        └── ApprovalError           no such approval, or it was already answered

A run that *fails* (a model or tool error in a node with no error edge) is not an
exception: the run ends with status ``failed`` and the error is in its trace.
"""

from __future__ import annotations

from dataclasses import dataclass

from keel.errors import UserError

__all__ = [
    "ApprovalError",
    "InputFieldError",
    "Problem",
    "RunFinishedError",
    "RunNotFoundError",
    "SpecError",
    "WorkflowError",
    "WorkflowNotFoundError",
]


class WorkflowError(UserError):
    """A workflow cannot be validated, published or run as asked."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, and where."""

    message: str
    """What is wrong, e.g. ``edge to unknown node 'refnd'``."""
    hint: str
    """What to do about it."""
    file: str | None = None
    """The spec file, when the spec came from one."""
    line: int | None = None
    """1-based line in ``file`` (YAML and JSON alike)."""
    node_id: str | None = None
    """The node the problem is in, when it is in one."""
    path: str | None = None
    """Field path inside the spec, e.g. ``nodes[2].condition``."""

    def location(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        if self.node_id:
            where += f" (node {self.node_id})"
        return where

    def __str__(self) -> str:
        return f"{self.location()}: {self.message}"


class SpecError(WorkflowError):
    """The spec is malformed or inconsistent. ``problems`` lists every issue found.

    ``message`` and ``hint`` describe the first problem; the CLI prints all of them.
    """

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first}{more}", hint=first.hint)
        self.problems = problems


class WorkflowNotFoundError(WorkflowError):
    """No published workflow, or no such version of one."""


class RunNotFoundError(WorkflowError):
    """No run with the given id."""


class RunFinishedError(WorkflowError):
    """The run has finished already (succeeded, failed or cancelled): it cannot be cancelled."""


class ApprovalError(WorkflowError):
    """No pending approval with that id (unknown, or already answered)."""


class InputFieldError(WorkflowError):
    """A run's input is refused because of one field, named in ``field`` (e.g. ``input.messages[2]``)."""

    def __init__(self, message: str, *, field: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field
