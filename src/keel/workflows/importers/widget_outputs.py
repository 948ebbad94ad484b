"""An Agent Builder Agent node whose output format is a widget -> Keel's ``widget`` and ``output_schema``.

Agent Builder's Agent node could answer with a ChatKit widget: its ``text.format`` is
``{"type": "widget", ...}`` carrying the widget as ChatKit Studio writes a ``.widget`` file
(``template``: Jinja rendering the widget's JSON; ``jsonSchema``: the data it takes; ``name``,
``version``), either in the format itself or under its ``widget`` key. The agent answered with
that data, so the schema becomes the node's ``output_schema`` (the format's own ``schema`` when it
has one) and the template its ``widget`` (docs/widgets.md). A widget known only by the id of a
template hosted on ChatKit Studio cannot be carried over: the schema is, and the report says how
to finish (download the ``.widget`` file and paste it in).
"""

from __future__ import annotations

from typing import Any

from keel.workflows.importers.report import Report

__all__ = ["widget_output"]


def widget_output(fmt: dict[str, Any], out: dict[str, Any], report: Report, kid: str) -> None:
    """Set ``out``'s ``output_schema`` and ``widget`` from an Agent's widget output format ``fmt``."""
    widget = fmt.get("widget") if isinstance(fmt.get("widget"), dict) else fmt
    schema = fmt.get("schema") or widget.get("jsonSchema") or widget.get("json_schema")
    name = widget.get("name") or fmt.get("name") or ""
    if isinstance(schema, dict):
        out["output_schema"] = schema
    template = widget.get("template")
    if isinstance(template, str) and template.strip() and isinstance(schema, dict):
        out["widget"] = {"template": template, **({"name": name} if name else {}),
                         **({"jsonSchema": widget["jsonSchema"]} if isinstance(widget.get("jsonSchema"), dict)
                            else {})}
        report.add("mapped", kid, f"widget output {name or '(unnamed)'!r} -> widget (a ChatKit widget template) "
                   "and output_schema")
        return
    ref = widget.get("id") or widget.get("widget_id") or name or "(unnamed)"
    report.add("placeholder", kid, f"widget output {ref!r} has no template in the export"
               + ("" if isinstance(schema, dict) else " and no schema")
               + ": the node answers with " + ("its data (output_schema kept)" if isinstance(schema, dict) else "text"),
               "download the widget's .widget file from ChatKit Studio and set `widget: {template: ..., jsonSchema: "
               "...}` on the node, or use a gallery widget (`widget: card`); see docs/widgets.md")
