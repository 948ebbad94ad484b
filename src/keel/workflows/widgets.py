"""Widget outputs: an Agent node's structured answer shown as a ChatKit widget.

An Agent node with ``widget:`` and an ``output_schema`` answers with data (its
``output_parsed``); the widget template turns that data into a ChatKit widget (a ``Card``,
``ListView`` or ``Basic`` root in ChatKit's JSON form). The template is what ChatKit Studio
writes in a ``.widget`` file and what Agent Builder's widget output kept: Jinja text that
renders JSON, with the data's fields as its variables.

- :func:`resolve`: a gallery name (``card``, ``list``, ``form``, ``table``, shipped in
  ``widget_gallery/``) or an inline :class:`~keel.workflows.spec.WidgetTemplate`;
- :func:`check`: at publish, the template against the node's ``output_schema`` (every field
  it reads exists, the widget it renders is a valid ChatKit widget): problems name the field;
- :func:`render`: data -> the widget's JSON, through ChatKit's own
  :class:`chatkit.widgets.WidgetTemplate` (the non-deprecated path) with a sandboxed Jinja
  template; a string written inside quotes (``"{{ title }}"``) is JSON-escaped, so data
  cannot break out of the widget's JSON; lists in the data are cut to :data:`MAX_LIST_ITEMS`
  items (:data:`MAX_TOTAL_ITEMS` in all) before the template loops over them, and the widget
  then ends with a ``… N more`` caption;
- :func:`run_widgets`: the widgets a finished (or waiting) run's Agent nodes produced, read
  from its steps: what ChatKit and the web UI's chat show;
- :func:`declared_actions` / :func:`action_allowed`: the actions (buttons, forms) a widget
  declares; a client's action must be one of them (see docs/widgets.md).
"""

from __future__ import annotations

import json
import re
from collections import Counter, deque
from collections.abc import Iterator
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from keel.errors import UserError

__all__ = ["GALLERY", "MAX_LIST_ITEMS", "MAX_TOTAL_ITEMS", "WIDGET_KEY_PREFIX", "WidgetError", "action_allowed", "check", "declared_actions", "gallery",
           "render", "resolve", "run_widgets", "widget_origin"]

GALLERY = Path(__file__).parent / "widget_gallery"
WIDGET_KEY_PREFIX = "keel-widget:"
"""The ``key`` of a rendered widget's root: ``keel-widget:RUN_ID:NODE_ID:STEP`` (where an action came from)."""
MAX_LIST_ITEMS = 100
"""Items of one list in the data a widget template sees (a widget shows a few things, not a dump)."""
MAX_TOTAL_ITEMS = 2_000
"""Items of all the data's lists together (nested lists: 100 rows of 100 cells would be 10,000)."""
_MISSING_ATTR = re.compile(r"has no attribute '([^']+)'|'([^']+)' is undefined")


class WidgetError(UserError):
    """A widget template cannot be used: unknown gallery name, bad Jinja, or data it cannot render."""


@cache
def gallery() -> dict[str, Any]:
    """The shipped templates by name (``card``, ``form``, ``list``, ``table``), as spec objects."""
    from keel.workflows.spec import WidgetTemplate

    return {p.stem: WidgetTemplate.model_validate(json.loads(p.read_text(encoding="utf-8")))
            for p in sorted(GALLERY.glob("*.widget"))}


def resolve(widget: Any) -> Any:
    """The :class:`~keel.workflows.spec.WidgetTemplate` a node's ``widget`` names."""
    if isinstance(widget, dict):  # a template given as plain data (tests, the importer)
        from keel.workflows.spec import WidgetTemplate

        return WidgetTemplate.model_validate(widget)
    if not isinstance(widget, str):
        return widget
    found = gallery().get(widget)
    if found is None:
        raise WidgetError(f"no widget {widget!r} in Keel's gallery",
                          hint=f"use one of: {', '.join(gallery())}, or give a template "
                               "(widget: {template: '...'}; docs/widgets.md)")
    return found


# -- Jinja ---------------------------------------------------------------------------------


def _finalize(value: Any) -> Any:
    """Every ``{{ ... }}`` output: a plain string is JSON-escaped (it sits inside quotes in the
    template); ``| tojson`` output (Markup) and numbers go in as they are."""
    from markupsafe import Markup

    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return value
    # A list, an object or anything else the model returned: its JSON text, escaped as a string,
    # so a quote inside it can never close the template's string and add keys or components
    # (write ``| tojson`` to place a value as JSON on purpose).
    return json.dumps(json.dumps(value, ensure_ascii=False, default=str), ensure_ascii=False)[1:-1]


def _first_error(e: Exception) -> str:
    """One line for a rendering failure: pydantic's first error with its place, or the message."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        err = e.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "root"
        return f"{where}: {err['msg']}"
    return str(e).splitlines()[0]


@cache
def _env() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, finalize=_finalize, autoescape=False)
    env.globals["range"] = _range  # a widget lists a few things: no template loops a million times
    return env


_MAX_RANGE = 1_000


def _range(*args: int) -> range:
    r = range(*args)
    if len(r) > _MAX_RANGE:
        raise OverflowError(f"range() in a widget template is limited to {_MAX_RANGE} items")
    return r


def _compile(template: Any) -> Any:
    """ChatKit's WidgetTemplate over a sandboxed Jinja template; raises jinja2's errors."""
    from chatkit.widgets import WidgetTemplate as ChatKitTemplate

    return ChatKitTemplate({"version": template.version, "name": template.name or "widget",
                            "template": _jinja(template.template), "jsonSchema": template.json_schema or {}})


@lru_cache(maxsize=256)
def _jinja(text: str) -> Any:
    """The compiled sandboxed template of ``text`` (compiling is most of a render's cost)."""
    return _env().from_string(text)


def _cap_lists(data: dict[str, Any]) -> tuple[dict[str, Any], Counter[str]]:
    """``data`` with each list cut to :data:`MAX_LIST_ITEMS` items and all lists together to
    :data:`MAX_TOTAL_ITEMS` (outer lists first, breadth first), and the items left out by field
    (``rows``, ``rows[]`` for the lists inside ``rows``). ``data`` itself is not changed."""
    hidden: Counter[str] = Counter()
    budget = MAX_TOTAL_ITEMS
    root: dict[str, Any] = {"": data}
    queue: deque[tuple[Any, Any, str]] = deque([(root, "", "")])
    while queue:
        parent, at, path = queue.popleft()
        value = parent[at]
        if isinstance(value, dict):
            parent[at] = copy = dict(value)
            queue.extend((copy, k, f"{path}.{k}" if path else str(k)) for k in copy)
        elif isinstance(value, list):
            keep = min(len(value), MAX_LIST_ITEMS, budget)
            budget -= keep
            parent[at] = copy = value[:keep]
            if len(value) > keep:
                hidden[path or "value"] += len(value) - keep
            queue.extend((copy, i, f"{path}[]") for i in range(keep))
    return root[""], hidden


def _more_marker(doc: dict[str, Any], hidden: Counter[str]) -> None:
    """End the widget ``doc`` with a caption saying how many list items were left out."""
    text = f"… {sum(hidden.values()):,} more ({', '.join(hidden)})"
    caption = {"type": "Caption", "value": text, "key": "keel-widget-more"}
    children = doc.setdefault("children", [])
    if isinstance(children, list):
        children.append({"type": "ListViewItem", "children": [caption]} if doc.get("type") == "ListView" else caption)


def render(widget: Any, data: Any, *, key: str | None = None) -> dict[str, Any]:
    """The widget's JSON for ``data`` (an Agent node's ``output_parsed``); ``key`` becomes the
    root's key. Lists longer than :data:`MAX_LIST_ITEMS` are cut (see :func:`_cap_lists`) and
    the widget ends with a ``… N more`` caption. Raises :class:`WidgetError` when the data does
    not fill the template."""
    from jinja2 import TemplateError
    from pydantic import ValidationError

    template = resolve(widget)
    data, hidden = _cap_lists(data if isinstance(data, dict) else {"value": data})
    try:
        built = _compile(template).build(data)
    except TemplateError as e:
        raise WidgetError(f"widget {template.name or 'template'!r} could not be filled: {e}",
                          hint="make the template read only fields the output schema requires") from None
    except (ValueError, ValidationError) as e:  # JSONDecodeError is a ValueError
        raise WidgetError(f"widget {template.name or 'template'!r} did not render a ChatKit widget: "
                          f"{_first_error(e)}",
                          hint="the template must render one Card, ListView or Basic root as JSON") from None
    except Exception as e:  # the template's own expressions: 1/0, "a" + 1, a range too long
        raise WidgetError(f"widget {template.name or 'template'!r} could not be filled: {type(e).__name__}: {e}",
                          hint="fix the template's expressions") from None
    doc = built.model_dump(mode="json", exclude_none=True)
    if hidden:
        _more_marker(doc, hidden)
    if key is not None:
        doc["key"] = key
    return doc


# -- the publish-time check ----------------------------------------------------------------


def _sample(schema: Any, depth: int = 0) -> Any:
    """A value with every field ``schema`` describes filled (for rendering the template once)."""
    if not isinstance(schema, dict) or depth > 8:
        return "text"
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return _sample(options[0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        return {name: _sample(sub, depth + 1) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_sample(schema.get("items") or {}, depth + 1)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, "text")


def check(widget: Any, output_schema: dict[str, Any] | None) -> list[tuple[str, str, tuple]]:
    """Problems of ``widget`` on a node with ``output_schema``: ``(message, hint, path)``, the
    path below the node's ``widget`` field. Empty when the template fits the schema."""
    from jinja2 import TemplateError, TemplateSyntaxError, meta

    try:
        template = resolve(widget)
    except WidgetError as e:
        return [(e.message, e.hint or "", ())]
    at = () if isinstance(widget, str) else ("template",)
    if output_schema is None:
        fields = sorted((template.json_schema or {}).get("properties") or {})
        return [("a widget shows the node's structured answer, and this node has no output_schema",
                 "add output_schema: {type: object, properties: {...}}" +
                 (f" with the fields the widget reads: {', '.join(fields)}" if fields else ""), ())]
    props = output_schema.get("properties") or {}
    try:
        ast = _env().parse(template.template)
    except TemplateSyntaxError as e:
        return [(f"the widget template is not valid Jinja (line {e.lineno}): {e.message}",
                 "fix the template (ChatKit Studio's .widget files are Jinja rendering JSON)", at)]
    problems: list[tuple[str, str, tuple]] = []
    names = sorted(meta.find_undeclared_variables(ast) - set(_env().globals))
    for name in names:
        if name not in props:
            problems.append((f"the widget template reads field {name!r}, which output_schema does not have",
                             f"add {name!r} to output_schema.properties, or read one of: "
                             f"{', '.join(sorted(props)) or 'none'}", at))
    required = (template.json_schema or {}).get("required") or []
    for name in required:
        if name not in props:
            problems.append((f"the widget {template.name or 'template'!r} needs field {name!r}, which "
                             "output_schema does not have", f"add {name!r} to output_schema.properties", ()))
    if problems:
        return problems
    try:
        _compile(template).build(_sample(output_schema))
    except TemplateError as e:
        m = _MISSING_ATTR.search(str(e))
        field = next((g for g in m.groups() if g), None) if m else None
        what = f"reads field {field!r}, which output_schema does not have there" if field else f"fails: {e}"
        return [(f"the widget template {what}",
                 "make the template's names match output_schema (nested objects and list items too)", at)]
    except ValueError as e:  # not JSON, or JSON that is not a widget root
        return [(f"the widget template does not render a ChatKit widget: {_first_error(e)}",
                 "render one Card, ListView or Basic root as JSON; put strings in quotes or use | tojson", at)]
    except Exception as e:  # the template's own expressions: 1/0, "a" + 1, a range too long
        return [(f"the widget template fails on data shaped like output_schema: {type(e).__name__}: {e}",
                 "fix the template's expressions", at)]
    return []


# -- a run's widgets -----------------------------------------------------------------------


def widget_origin(widget: Any) -> tuple[str, str] | None:
    """``(run_id, node_id)`` of a widget :func:`run_widgets` made (its root ``key``), else None."""
    key = widget.get("key") if isinstance(widget, dict) else getattr(widget, "key", None)
    if not isinstance(key, str) or not key.startswith(WIDGET_KEY_PREFIX):
        return None
    parts = key.removeprefix(WIDGET_KEY_PREFIX).split(":")
    return (parts[0], parts[1]) if len(parts) == 3 and all(parts) else None


def run_widgets(spec: Any, steps: list[Any]) -> list[dict[str, Any]]:
    """The widgets of a run's finished steps, oldest first: ``{"node_id", "widget", "data"}``. A
    step whose data does not fill its template is left out (its data still is the answer)."""
    nodes = {n.id: n for n in spec.nodes if getattr(n, "widget", None) is not None}
    out = []
    for step in steps:
        node = nodes.get(step.node_id)
        if node is None or step.error or not isinstance(step.output, dict):
            continue
        data = step.output.get("output_parsed")
        if data is None:
            continue
        try:
            widget = render(node.widget, data, key=f"{WIDGET_KEY_PREFIX}{step.run_id}:{node.id}:{step.seq}")
        except WidgetError:
            continue
        out.append({"node_id": node.id, "widget": widget, "data": data})
    return out


def _walk(doc: Any) -> Iterator[dict[str, Any]]:
    if isinstance(doc, dict):
        yield doc
        for value in doc.values():
            yield from _walk(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _walk(value)


def declared_actions(widget: Any) -> list[dict[str, Any]]:
    """The actions a widget's buttons and forms send (``onClickAction`` / ``onSubmitAction``),
    each marked ``form: true`` when a form sends it (its payload then carries the fields)."""
    doc = widget if isinstance(widget, dict) else widget.model_dump(mode="json", exclude_none=True)
    found = []
    for node in _walk(doc):
        for key in ("onClickAction", "onSubmitAction"):
            action = node.get(key)
            if isinstance(action, dict) and isinstance(action.get("type"), str):
                found.append({**action, "form": key == "onSubmitAction" or node.get("submit") is True})
    return found


def action_allowed(widget: Any, action_type: str, payload: dict[str, Any]) -> bool:
    """Whether ``widget`` declares an action of ``action_type`` whose payload ``payload`` keeps:
    a button's payload exactly; a form's fixed payload keys, plus the fields a person filled in."""
    for declared in declared_actions(widget):
        if declared["type"] != action_type:
            continue
        fixed = declared.get("payload") or {}
        if declared["form"]:
            if all(payload.get(k) == v for k, v in fixed.items()):
                return True
        elif payload == fixed:
            return True
    return False
