import keel.workflows


def test_public_names_are_exactly_the_curated_ones() -> None:
    assert sorted(keel.workflows.__all__) == sorted([
        "ApprovalError", "ApprovalRecord", "Clock", "Engine", "ManualClock", "NodeEvent", "Problem",
        "RunNotFoundError", "RunRecord", "RunResult", "Runs", "Span", "Spans", "SpecError", "StepRecord",
        "SystemClock", "ToolContext", "Versions", "WorkflowError", "WorkflowNotFoundError", "WorkflowSpec",
        "WorkflowVersion", "aapprove", "approvals", "approve", "arecover", "areject", "arun", "diff",
        "function_tool", "list_workflows", "load", "publish", "recover", "reject", "run", "validate",
    ])
    for name in keel.workflows.__all__:
        assert hasattr(keel.workflows, name), name


def test_workflow_errors_are_user_errors() -> None:
    from keel.errors import UserError

    for cls in (keel.workflows.SpecError, keel.workflows.WorkflowNotFoundError, keel.workflows.RunNotFoundError,
                keel.workflows.ApprovalError):
        assert issubclass(cls, UserError)
