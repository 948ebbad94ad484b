"""Workflows: versioned, durable agent graphs with Agent Builder's node vocabulary.

A workflow is a declarative spec (YAML or JSON, see :mod:`keel.workflows.spec`)
of nodes — Start, Agent, Note, If/else, While, Human approval, Transform, Set
state, End (File search, Guardrails and MCP are typed but not available yet) —
joined by edges. Conditions and transforms are CEL. Publishing makes an
immutable version; runs are checkpointed step by step and survive ``kill -9``.

Module map::

    spec.py        the typed spec (pydantic), one model per node type
    loader.py      YAML/JSON -> spec, with line numbers for errors
    cel.py         CEL compile/check/evaluate (cel-expr-python)
    validate.py    every check done before a run -> CompiledWorkflow
    versions.py    publish / get / list / diff immutable versions
    engine.py      the durable step loop, recovery, approvals; leases.py: run ownership
    nodes.py       what the simple node types do; agent.py: the Agent node
    tools.py       Python function tools, ToolContext with idempotency keys
    tracing.py     spans with OpenTelemetry GenAI attribute names
    runs.py        run, step and approval records
    api.py         the functions below
"""

from keel.workflows.api import (
    aapprove,
    approvals,
    approve,
    arecover,
    areject,
    arun,
    diff,
    list_workflows,
    load,
    publish,
    recover,
    reject,
    run,
    validate,
)
from keel.workflows.clock import Clock, ManualClock, SystemClock
from keel.workflows.engine import Engine, NodeEvent
from keel.workflows.errors import (
    ApprovalError,
    Problem,
    RunNotFoundError,
    SpecError,
    WorkflowError,
    WorkflowNotFoundError,
)
from keel.workflows.runs import ApprovalRecord, RunRecord, RunResult, Runs, StepRecord
from keel.workflows.spec import WorkflowSpec
from keel.workflows.tools import ToolContext, function_tool
from keel.workflows.tracing import Span, Spans
from keel.workflows.versions import Versions, WorkflowVersion

__all__ = [
    "ApprovalError", "ApprovalRecord", "Clock", "Engine", "ManualClock", "NodeEvent", "Problem",
    "RunNotFoundError", "RunRecord", "RunResult", "Runs", "Span", "Spans", "SpecError", "StepRecord",
    "SystemClock", "ToolContext", "Versions", "WorkflowError", "WorkflowNotFoundError", "WorkflowSpec",
    "WorkflowVersion", "aapprove", "approvals", "approve", "arecover", "areject", "arun", "diff",
    "function_tool", "list_workflows", "load", "publish", "recover", "reject", "run", "validate",
]
