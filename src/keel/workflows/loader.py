"""Read a spec from YAML or JSON text, keeping the line of every value for error messages.

JSON is read by the YAML parser too (a JSON document is YAML), so both get line
numbers. A malformed document or a value of the wrong shape becomes a
:class:`SpecError` naming file, line, node id and field — never a traceback.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from keel.safeload import InputLimitError, compose_yaml
from keel.workflows.errors import Problem, SpecError
from keel.workflows.spec import CHECK_TYPES, NODE_TYPES, WorkflowSpec

__all__ = ["LoadedSpec", "SourceMap", "load_spec", "parse_spec", "read_document", "spec_from_document"]

PathKey = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Where each value of the document came from: field path -> 1-based line."""

    file: str | None = None
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: PathKey) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def node_line(self, spec: WorkflowSpec, node_id: str) -> int | None:
        for i, n in enumerate(spec.nodes):
            if n.id == node_id:
                return self.line(("nodes", i))
        return None


@dataclass
class LoadedSpec:
    """A spec with its source text and line map."""

    spec: WorkflowSpec
    source: str
    where: SourceMap


def _to_python(node: yaml.Node, path: PathKey, lines: dict[PathKey, int],
               loader: yaml.SafeLoader | None = None) -> Any:
    # One constructor per document (making a loader per scalar was a third of reading a big spec).
    loader = loader if loader is not None else yaml.SafeLoader("")
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # merge keys (`<<: *defaults`) into the mapping
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node)) if not isinstance(key_node, yaml.ScalarNode) \
                else _scalar(key_node, loader)
            out[key] = _to_python(value_node, (*path, str(key)), lines, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*path, i), lines, loader) for i, v in enumerate(node.value)]
    return _scalar(node, loader)


def _scalar(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    return loader.construct_object(node, deep=True)  # type: ignore[arg-type]


def parse_spec(text: str, *, file: str | None = None) -> LoadedSpec:
    """Parse and type-check a spec (structure only; see :func:`keel.workflows.validate`)."""
    data, where = read_document(text, file=file)
    return spec_from_document(data, where, text)


def spec_from_document(data: dict[str, Any], where: SourceMap, text: str) -> LoadedSpec:
    """:func:`parse_spec` after :func:`read_document`: for callers that need the plain data too
    (the canvas shows it), so the text is read once. ``data`` is not changed."""
    problems, spec = _type_problems(data, where)
    if problems:
        raise SpecError(sorted(problems, key=lambda p: p.line or 0))
    return LoadedSpec(spec if spec is not None else WorkflowSpec.model_validate(data), text, where)


def read_document(text: str, *, file: str | None = None) -> tuple[dict[str, Any], SourceMap]:
    """The document as plain data (what it means, before any type check) with the line of each
    value; :class:`SpecError` unless it is a mapping (malformed YAML/JSON, empty, a list...)."""
    where = SourceMap(file=file)
    try:
        root = compose_yaml(text)
    except yaml.YAMLError as e:
        raise SpecError([_yaml_problem(e, file)]) from None
    except InputLimitError as e:
        raise SpecError([Problem(e.reason, e.hint or "", file=file, line=e.line)]) from None
    if root is None:
        raise SpecError([Problem("the spec is empty", "start from `keel workflows schema` or docs/workflows.md",
                                 file=file, line=1)])
    try:
        data = _to_python(root, (), where.lines)
    except yaml.YAMLError as e:  # a merge key (<<) of something that is not a mapping
        raise SpecError([_yaml_problem(e, file)]) from None
    if not isinstance(data, dict):
        raise SpecError([Problem("the spec must be a mapping with name, nodes and edges",
                                 "see docs/workflows.md for an example", file=file, line=1)])
    return data, where


def _yaml_problem(e: yaml.YAMLError, file: str | None) -> Problem:
    """The parser's own account (context and problem, each with its line), placed at the real
    line: an unclosed quote where it opened, not at the end of the file."""
    mark, context_mark = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
    what = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    if mark is not None:
        what += f" (line {mark.line + 1}, column {mark.column + 1})"
    if context and context_mark is not None:
        what = f"{context} at line {context_mark.line + 1}, column {context_mark.column + 1}: {what}"
    elif context:
        what = f"{context}: {what}"
    # "while scanning a quoted scalar" names a token left open (its end is the end of the file);
    # "while parsing a block mapping" names the enclosing block, the problem is at its own mark.
    scanning = bool(context) and str(context).startswith("while scanning")
    at = context_mark if (scanning and context_mark is not None) or mark is None else mark
    return Problem(f"malformed YAML/JSON: {what}", "fix the syntax at that line", file=file,
                   line=at.line + 1 if at is not None else None)


def load_spec(path: str | Path) -> LoadedSpec:
    """Read and parse the spec file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem(f"{p} does not exist", "check the path", file=str(p))]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError([Problem(f"cannot read {p}: {e}", "check the file", file=str(p))]) from None
    return parse_spec(text, file=str(p))


def _type_problems(data: dict, where: SourceMap) -> tuple[list[Problem], WorkflowSpec | None]:
    """The type problems of ``data``, and the spec when pydantic accepts it (validated once)."""
    problems: list[Problem] = []
    spec: WorkflowSpec | None = None
    nodes = data.get("nodes")
    # Unknown node types get their own message: pydantic's union error lists every member.
    if isinstance(nodes, list):
        for i, n in enumerate(nodes):
            if isinstance(n, dict) and n.get("type") not in NODE_TYPES:
                t = n.get("type")
                close = difflib.get_close_matches(str(t), NODE_TYPES, n=1)
                problems.append(Problem(
                    f"unknown node type {t!r}" if t is not None else "node has no type",
                    (f"did you mean {close[0]!r}? " if close else "") + f"types: {', '.join(NODE_TYPES)}",
                    file=where.file, line=where.line(("nodes", i, "type")),
                    node_id=str(n.get("id")) if n.get("id") is not None else None, path=f"nodes[{i}].type",
                ))
    if isinstance(nodes, list):
        problems += _check_type_problems(nodes, where)
    # Nodes already reported (unknown type or check) get no second, vaguer error from pydantic;
    # the other nodes' problems are still listed.
    reported = {p.path.split("]")[0] + "]" for p in problems if p.path and p.path.startswith("nodes[")}
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            # A Guardrails check is a name or an object: for an object, the error of the name branch
            # says nothing useful; the object branch's tag is noise in the path.
            if any(isinstance(part, str) and part.startswith("literal[") for part in loc) \
                    and not isinstance(_at(data, loc), str):
                continue
            loc = _drop_check_tag(loc)
            # pydantic puts the union tag in the path (nodes.2.agent.model); drop it.
            clean: list[str | int] = []
            for k, part in enumerate(loc):
                # only the tag right after the node's index (a field such as an Agent's `mcp` shares a name)
                if k == 2 and clean and clean[0] == "nodes" and isinstance(clean[-1], int) and part in NODE_TYPES \
                        and len(clean) == 2:
                    continue
                clean.append(part)
            node_id = None
            if len(clean) >= 2 and clean[0] == "nodes" and isinstance(clean[1], int) \
                    and isinstance(nodes, list) and clean[1] < len(nodes) and isinstance(nodes[clean[1]], dict):
                node_id = nodes[clean[1]].get("id")
            field_path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in clean).lstrip(".")
            if len(clean) >= 2 and clean[0] == "nodes" and f"nodes[{clean[1]}]" in reported:
                continue
            msg = err["msg"]
            hint = "see `keel workflows schema` for the fields each node type takes"
            if err["type"] == "extra_forbidden":
                msg = f"unknown field {clean[-1]!r}"
                known = _known_fields(tuple(err["loc"]))
                close = difflib.get_close_matches(str(clean[-1]), known, n=1)
                hint = (f"did you mean {close[0]!r}? " if close else "") + (
                    f"fields here: {', '.join(known)}" if known
                    else "remove it, or check its spelling against `keel workflows schema`")
                if clean[-1] == "position" and len(clean) == 3 and clean[0] == "nodes":
                    hint = ("node positions live in the top-level `layout:` section: "
                            f"layout: {{nodes: {{{node_id or 'ID'}: {{x: ..., y: ...}}}}}} (docs/workflows.md#layout)")
            elif err["type"] == "missing":
                msg = f"missing required field {clean[-1]!r}"
            problems.append(Problem(f"{field_path}: {msg}", hint, file=where.file,
                                    line=where.line(tuple(str(p) if not isinstance(p, int) else p for p in clean)),
                                    node_id=str(node_id) if node_id is not None else None, path=field_path))
    return problems, spec


def _known_fields(loc: tuple) -> list[str]:
    """The fields the object holding ``loc[-1]`` may have, found by walking the spec's models along
    the error location (whose union tags, e.g. ``transform``, name the member); [] if unsure."""
    import typing

    from pydantic import BaseModel

    def members(tp: Any) -> list[Any]:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            return members(typing.get_args(tp)[0])
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            return [m for a in typing.get_args(tp) for m in members(a)]
        return [tp]

    current: list[Any] = [WorkflowSpec]
    for part in loc[:-1]:
        nxt: list[Any] = []
        for tp in current:
            origin = typing.get_origin(tp)
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                if isinstance(part, str) and part in tp.model_fields:
                    nxt += members(tp.model_fields[part].annotation)
                elif isinstance(part, str) and part.split("[", 1)[0] in ("tagged-union", "literal"):
                    nxt.append(tp)
                elif isinstance(part, str) and "type" in tp.model_fields:
                    tag = typing.get_args(tp.model_fields["type"].annotation)
                    if part in tag:
                        nxt.append(tp)
            elif origin in (list, tuple) and isinstance(part, int):
                nxt += [m for a in typing.get_args(tp) if a is not Ellipsis for m in members(a)]
            elif origin is dict and isinstance(part, str):
                nxt += members(typing.get_args(tp)[1])
            elif isinstance(part, str) and part.split("[", 1)[0] in ("tagged-union", "literal"):
                nxt.append(tp)
        current = [m for t in nxt for m in members(t)]
    # After the last tag, several members may remain (a union before its tag): pick models only.
    models = [t for t in current if isinstance(t, type) and issubclass(t, BaseModel)]
    if len(models) != 1:
        return []
    return [f for f in models[0].model_fields if f != "type"]


def _at(data: Any, loc: tuple) -> Any:
    """The value at pydantic error location ``loc`` (skipping union tags), or None."""
    value = data
    for part in loc:
        if (isinstance(part, int) and isinstance(value, list) and part < len(value)) or (isinstance(part, str) and isinstance(value, dict) and part in value):
            value = value[part]
        elif isinstance(part, str) and (part in NODE_TYPES or part in CHECK_TYPES or "[" in part):
            continue
        else:
            return None
    return value


def _drop_check_tag(loc: tuple) -> tuple:
    """``(..., 'checks', 1, 'tagged-union[...]', 'pii', 'entities', 0)`` -> ``(..., 'checks', 1, 'entities', 0)``."""
    out: list[Any] = []
    skip = 0
    for part in loc:
        if skip:
            skip -= 1
            continue
        if isinstance(part, str) and part.startswith("tagged-union["):
            skip = 1
            continue
        out.append(part)
    return tuple(out)


def _check_type_problems(nodes: list, where: SourceMap) -> list[Problem]:
    """Unknown Guardrails checks, named plainly (pydantic's union error lists every member)."""
    problems: list[Problem] = []
    named = CHECK_TYPES[:3]
    for i, n in enumerate(nodes):
        if not isinstance(n, dict) or n.get("type") != "guardrails" or not isinstance(n.get("checks"), list):
            continue
        for j, c in enumerate(n["checks"]):
            if isinstance(c, str):
                if c in named:
                    continue
                what, known, path = c, named, ("nodes", i, "checks", j)
                hint_tail = f"checks by name: {', '.join(named)}; others take an object, e.g. " \
                            "`{type: hallucination, sources: ...}`"
                if c in CHECK_TYPES:
                    problems.append(Problem(
                        f"checks[{j}]: the {c} check needs options", f"write it as an object: `{{type: {c}, ...}}` "
                        "(see docs/workflows.md#guardrails)", file=where.file, line=where.line(path),
                        node_id=str(n.get("id")), path=f"nodes[{i}].checks[{j}]"))
                    continue
            elif isinstance(c, dict) and c.get("type") not in CHECK_TYPES:
                what, known, path = c.get("type"), CHECK_TYPES, ("nodes", i, "checks", j, "type")
                hint_tail = f"check types: {', '.join(CHECK_TYPES)}"
                if what is None:
                    problems.append(Problem(f"checks[{j}]: a guardrails check has no type", hint_tail, file=where.file,
                                            line=where.line(path), node_id=str(n.get("id")),
                                            path=f"nodes[{i}].checks[{j}]"))
                    continue
            else:
                continue
            close = difflib.get_close_matches(str(what), known, n=1)
            problems.append(Problem(
                f"checks[{j}]: unknown guardrails check {what!r}", (f"did you mean {close[0]!r}? " if close else "") + hint_tail,
                file=where.file, line=where.line(path), node_id=str(n.get("id")),
                path=f"nodes[{i}].checks[{j}]"))
    return problems
