"""Wire types of the workflows API (what ``/openapi.json`` documents)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ApprovalAnswer", "ApprovalOut", "CancelRequest", "RunOut", "RunRequest", "SpanOut", "TraceOut", "UsageOut",
           "VersionOut", "WorkflowDetail", "WorkflowOut"]

JSONValue = Any


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowOut(BaseModel):
    name: str
    latest: int
    """The newest published version."""
    description: str = ""
    published_at: float


class VersionOut(BaseModel):
    version: int
    digest: str
    """SHA-256 of the spec's canonical JSON."""
    published_at: float


class WorkflowDetail(BaseModel):
    name: str
    description: str = ""
    versions: list[VersionOut]


class RunRequest(_In):
    input: JSONValue = ""
    """The run's input: text, or any JSON value (``{"messages": [...]}`` is a conversation)."""
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    """Run this published version (default: the latest)."""
    wait: bool = True
    """True: answer when the run finishes or waits (or after ``run_timeout``); false: answer 202 at once."""
    user: str | None = Field(default=None, min_length=1, max_length=200)
    """Your end user's id, for per-user caps (the ``X-Keel-User`` header wins)."""


class UsageOut(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0


class ApprovalOut(BaseModel):
    id: str
    run_id: str
    workflow: str
    node_id: str
    status: Literal["pending", "approved", "rejected", "expired", "cancelled"]
    message: str
    created_at: float
    expires_at: float | None = None
    decided_at: float | None = None
    decided_by: str | None = None
    comment: str | None = None


class RunOut(BaseModel):
    id: str
    workflow: str
    version: int
    status: Literal["running", "waiting", "succeeded", "failed", "cancelled"]
    input: JSONValue = None
    output: JSONValue = None
    error: str | None = None
    trace_id: str | None = None
    created_at: float | None = None
    finished_at: float | None = None
    approval: ApprovalOut | None = None
    """The pending approval, when ``status`` is ``waiting``."""
    usage: UsageOut | None = None
    links: dict[str, str] = Field(default_factory=dict)
    """``self``, ``events``, ``trace`` (and ``approve``/``reject`` while waiting)."""


class CancelRequest(_In):
    by: str | None = Field(default=None, max_length=200)
    """Accepted for compatibility and ignored: who cancelled is recorded from the credential."""
    reason: str | None = Field(default=None, max_length=2_000)
    """Why (the run's error becomes ``cancelled by <by>: <reason>``)."""


class ApprovalAnswer(_In):
    by: str | None = Field(default=None, max_length=200,
                           description="Accepted for compatibility and ignored: the decision records the "
                                       "caller's API key (and end user), never a name from the body.")
    """Ignored (kept so older clients' bodies still validate): ``decided_by`` comes from the credential."""
    comment: str | None = Field(default=None, max_length=10_000)
    wait: bool = True
    """Continue the run and answer with its new state (always true today)."""


class SpanOut(BaseModel):
    span_id: str
    parent_id: str | None = None
    name: str
    kind: str
    started_at: float
    ended_at: float | None = None
    duration_ms: float | None = None
    status: str
    error: str | None = None
    attributes: dict[str, JSONValue] = Field(default_factory=dict)


class TraceOut(BaseModel):
    run_id: str
    trace_id: str
    spans: list[SpanOut]
    usage: UsageOut


class ListOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[Any]
