"""ChatKit widgets: the card a Human approval becomes (Approve and Reject buttons), and widget outputs.

Widgets are built from plain JSON (``DynamicWidgetRoot``), the shape ChatKit's widget
files produce, rather than from the deprecated named widget classes. Each button
dispatches the server action ``keel.approval`` with ``{"approval_id", "approved"}``;
:meth:`KeelChatKitServer.action` answers it. Once answered, the card is replaced by one
without buttons that says what was decided.

A widget output (an Agent node's ``widget``, :mod:`keel.workflows.widgets`) is rendered there and
arrives here as JSON; :func:`action_input` is what a button or form in it starts.
"""

from __future__ import annotations

import json
from typing import Any

from chatkit.widgets import DynamicWidgetRoot

__all__ = ["APPROVAL_ACTION", "action_input", "approval_card", "approval_of", "decided_card", "output_widget"]

APPROVAL_ACTION = "keel.approval"


def _button(label: str, approval_id: str, approved: bool, style: str) -> dict[str, Any]:
    return {"type": "Button", "label": label, "style": style, "color": "success" if approved else "danger",
            "onClickAction": {"type": APPROVAL_ACTION, "handler": "server",
                              "payload": {"approval_id": approval_id, "approved": approved}}}


def approval_card(approval_id: str, message: str, workflow: str, *, actionable: bool = True) -> DynamicWidgetRoot:
    """A card asking a person to approve ``message`` (a Human approval node's message). Not
    ``actionable`` (the thread's user may not decide it): no buttons, it waits for an approver."""
    buttons = {"type": "Row", "gap": 2, "children": [
        _button("Approve", approval_id, True, "primary"),
        _button("Reject", approval_id, False, "secondary"),
    ]} if actionable else {"type": "Text", "value": "Waiting for an approver.", "weight": "semibold"}
    return DynamicWidgetRoot.model_validate({
        "type": "Card", "size": "md", "key": f"approval-{approval_id}",
        "children": [
            {"type": "Title", "value": "Approval needed", "size": "sm"},
            {"type": "Text", "value": message},
            {"type": "Caption", "value": f"workflow {workflow} · approval {approval_id}"},
            buttons,
        ],
    })


def approval_of(widget: Any) -> str | None:
    """The approval id a card made by :func:`approval_card` asks about (None for other widgets)."""
    key = getattr(widget, "key", None)
    if isinstance(key, str) and key.startswith("approval-"):
        return key.removeprefix("approval-")
    return None


def decided_card(widget: Any, approved: bool) -> DynamicWidgetRoot:
    """The card after the decision: the same text, no buttons, and the outcome."""
    doc = widget.model_dump(exclude_none=True)
    children = [c for c in doc.get("children", []) if c.get("type") != "Row"]
    children.append({"type": "Text", "value": "Approved." if approved else "Rejected.", "weight": "semibold"})
    return DynamicWidgetRoot.model_validate({**doc, "children": children, "key": f"decided-{approval_of(widget)}"})


# -- widget outputs (docs/widgets.md) ------------------------------------------------------------


def output_widget(doc: dict[str, Any]) -> DynamicWidgetRoot:
    """A widget output's JSON (:func:`keel.workflows.widgets.render`) as ChatKit's widget root."""
    return DynamicWidgetRoot.model_validate(doc)


def action_input(action_type: str, payload: dict[str, Any], origin: tuple[str, str],
                 history: list[dict[str, str]], *, structured: bool) -> Any:
    """The input of the run a widget action starts. A workflow whose Start node has an
    ``input_schema`` gets the action's payload (a form's fields); any other gets the thread's
    conversation with one more user turn, the action as JSON
    (``{"action": TYPE, "payload": {...}, "from": {"run_id", "node_id"}}``)."""
    if structured:
        return payload
    turn = json.dumps({"action": action_type, "payload": payload,
                       "from": {"run_id": origin[0], "node_id": origin[1]}}, ensure_ascii=False)
    return {"messages": [*history, {"role": "user", "content": turn}]}
