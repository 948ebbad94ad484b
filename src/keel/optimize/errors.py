"""Errors of prompt optimization, under Keel's tree (see :mod:`keel.errors`)::

    UserError
    └── OptimizeError          an optimization cannot start, go on, or be published
        ├── TooFewRows         the eval's dataset cannot be split into learning and validation rows
        ├── UnknownTarget      --target names no Agent node / model target of the eval
        ├── BudgetTooSmall     --budget cannot pay for the seed's score and one proposal
        ├── ReflectionGarbage  the reflection model never answered with usable instructions
        └── OptimizeRunNotFound

Each is raised before anything is written (a run that fails midway keeps its memoized calls,
marks itself ``failed`` and creates no draft).
"""

from __future__ import annotations

from keel.errors import UserError

__all__ = ["BudgetTooSmall", "OptimizeError", "OptimizeRunNotFound", "ReflectionGarbage", "TooFewRows",
           "UnknownTarget"]


class OptimizeError(UserError):
    """A prompt optimization cannot start, go on, or be published."""


class TooFewRows(OptimizeError):
    """The dataset has too few rows to split into learning and validation rows."""


class UnknownTarget(OptimizeError):
    """``--target`` names nothing the eval can optimize."""


class BudgetTooSmall(OptimizeError):
    """The budget cannot pay for the seed's validation score and one proposal."""


class ReflectionGarbage(OptimizeError):
    """The reflection model returned no usable instructions."""


class OptimizeRunNotFound(OptimizeError):
    """No optimization run has that id."""
