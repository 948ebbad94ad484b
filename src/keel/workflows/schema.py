"""The published JSON Schema of workflow specs, generated from :mod:`keel.workflows.spec`.

``docs/workflow.schema.json`` is this output; a test checks it is current.
"""

from __future__ import annotations

from typing import Any

from keel.workflows.spec import WorkflowSpec

__all__ = ["spec_json_schema"]


def spec_json_schema() -> dict[str, Any]:
    schema = WorkflowSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://keel.dev/schemas/workflow.schema.json"
    schema["title"] = "Keel workflow"
    return schema
