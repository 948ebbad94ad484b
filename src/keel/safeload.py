"""YAML, JSON and TOML from files and bodies someone else wrote, with bounds.

A 510-byte YAML document whose aliases nest ten deep ("billion laughs") expands to a
billion values; a document nested ten thousand levels deep makes the parsers recurse
until Python's stack gives out. Every loader of user input goes through here:

- **Depth**: at most :data:`MAX_DEPTH` nested collections (mappings/objects,
  sequences/arrays). A spec, an eval or a dataset row needs a dozen.
- **Aliases** (YAML): allowed, since ``<<: *defaults`` is a common habit, but the
  values they add to the document (each alias counts the size of what it names,
  aliases within aliases included) are at most :data:`MAX_ALIAS_VALUES`. The count is
  kept while composing, so a bomb is refused after a few thousand steps, not after
  it has been expanded.

A document over a bound raises :class:`InputLimitError` (a :class:`~keel.errors.UserError`)
naming the file, the line where it can tell, and the bound. Syntax errors stay the
parsers' own (``yaml.YAMLError``, ``json.JSONDecodeError``, ``tomllib.TOMLDecodeError``),
which callers already turn into messages with a line.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import yaml
from yaml.events import MappingEndEvent, MappingStartEvent, SequenceEndEvent, SequenceStartEvent

from keel.errors import UserError

__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_DEPTH",
    "InputLimitError",
    "compose_yaml",
    "json_too_deep",
    "load_json",
    "load_toml",
    "load_yaml",
]

MAX_DEPTH = 100
"""Collections nested deeper than this are refused."""

MAX_ALIAS_VALUES = 10_000
"""Values YAML aliases may add to a document beyond the ones written out."""


class InputLimitError(UserError):
    """A YAML/JSON/TOML document is nested too deep or its aliases expand too far."""

    def __init__(self, reason: str, *, hint: str, where: str | None = None, line: int | None = None) -> None:
        place = f"{where}, line {line}" if where and line else where or (f"line {line}" if line else "")
        super().__init__(f"{place}: {reason}" if place else reason, hint=hint)
        self.reason = reason
        self.line = line
        self.where = where


_DEPTH_HINT = f"flatten the structure; Keel reads at most {MAX_DEPTH} nested levels"
_ALIAS_HINT = ("write the repeated values out, or alias fewer/smaller parts: aliases may add at most "
               f"{MAX_ALIAS_VALUES:,} values to a document")


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting depth and the size aliases expand to while it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._written = 0  # nodes composed from the text itself
        self._size: dict[int, int] = {}  # id(node) -> values it expands to (itself included)
        self._height: dict[int, int] = {}  # id(node) -> collections nested in it (itself included)

    def compose_node(self, parent: Any, index: Any) -> Any:
        collection = self.check_event(MappingStartEvent, SequenceStartEvent)
        if collection:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise InputLimitError(f"nested deeper than {MAX_DEPTH} levels", hint=_DEPTH_HINT, line=line)
        try:
            node = super().compose_node(parent, index)
        finally:
            if collection:
                self._depth -= 1
        if id(node) not in self._size:  # a new node (an alias returns one composed before)
            self._account(node)
        return node

    def _account(self, node: yaml.Node) -> None:
        self._written += 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            self._size[id(node)] = 1
            self._height[id(node)] = 0
            return
        size = 1 + sum(self._size[id(c)] for c in children)
        height = 1 + max((self._height[id(c)] for c in children), default=0)
        self._size[id(node)], self._height[id(node)] = size, height
        line = node.start_mark.line + 1
        if size - self._written > MAX_ALIAS_VALUES:
            raise InputLimitError(f"aliases expand this document by more than {MAX_ALIAS_VALUES:,} values "
                                  "(an alias bomb?)", hint=_ALIAS_HINT, line=line)
        if height > MAX_DEPTH:
            raise InputLimitError(f"aliases nest values deeper than {MAX_DEPTH} levels", hint=_DEPTH_HINT,
                                  line=line)


def _placed(e: InputLimitError, where: str | None) -> InputLimitError:
    return InputLimitError(e.reason, hint=e.hint or "", where=where, line=e.line) if where else e


def _compose_fast(text: str) -> tuple[bool, yaml.Node | None]:
    """``(True, tree)`` composed by libyaml (C), when the bounded composer would give the same tree
    without an error; ``(False, None)`` otherwise (no libyaml, bad syntax, a bound crossed, a
    recursive alias): the caller then composes in Python, which gives its own error.

    libyaml parses with explicit stacks, but its composer recurses: the depth is counted over
    the parser's events first, so the C composer never sees more than :data:`MAX_DEPTH` levels.
    Then the tree is walked in the bounded composer's order to count what aliases add."""
    if not getattr(yaml, "__with_libyaml__", False):
        return False, None
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, MappingStartEvent | SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return False, None
            elif isinstance(event, MappingEndEvent | SequenceEndEvent):
                depth -= 1
        loader = yaml.CSafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError:
        return False, None
    if root is None:
        return True, None
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_: set[int] = set()
    written = 0

    def walk(node: yaml.Node, level: int) -> bool:
        nonlocal written
        if id(node) in size:
            return True
        if id(node) in open_ or level > MAX_DEPTH + 1:  # a recursive alias, or aliases nesting deep
            return False
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            if node.style == "":  # libyaml's plain style; PyYAML's is None
                node.style = None
            written += 1
            size[id(node)], height[id(node)] = 1, 0
            return True
        open_.add(id(node))
        for child in children:
            if not walk(child, level + 1):
                return False
        open_.discard(id(node))
        written += 1
        size[id(node)] = 1 + sum(size[id(c)] for c in children)
        height[id(node)] = 1 + max((height[id(c)] for c in children), default=0)
        return size[id(node)] - written <= MAX_ALIAS_VALUES and height[id(node)] <= MAX_DEPTH

    return (True, root) if walk(root, 1) else (False, None)


def compose_yaml(text: str, *, where: str | None = None) -> yaml.Node | None:
    """The node tree of ``text`` (None when empty), within the bounds; for callers that need
    each value's line. Raises ``yaml.YAMLError`` on bad syntax, :class:`InputLimitError` over a bound.

    Composed by libyaml when it is installed and the document is within the bounds (a 500-node
    workflow: about 10x faster); otherwise, and for every error, by PyYAML's Python composer."""
    ok, root = _compose_fast(text)
    if ok:
        return root
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    except InputLimitError as e:
        raise _placed(e, where) from None
    finally:
        loader.dispose()


def load_yaml(text: str, *, where: str | None = None) -> Any:
    """``yaml.safe_load`` within the bounds."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except InputLimitError as e:
        raise _placed(e, where) from None
    finally:
        loader.dispose()


def json_too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON) nests more than ``limit`` lists/dicts."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _deep_line(text: str, limit: int) -> int | None:
    """The line where ``text`` first opens its ``limit + 1``-th nested bracket (outside strings)."""
    depth, in_string, escaped, line = 0, False, False, 1
    for ch in text:
        if ch == "\n":
            line += 1
        if in_string:
            escaped = not escaped and ch == "\\"
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"':
            in_string, escaped = True, False
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth -= 1
    return None


def load_json(text: str | bytes, *, where: str | None = None) -> Any:
    """``json.loads`` within the depth bound."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
    else:
        # Few brackets cannot nest deep: skip the walk (the common case, a flat document).
        brackets = text.count("[" if isinstance(text, str) else b"[") + \
            text.count("{" if isinstance(text, str) else b"{")
        if brackets <= MAX_DEPTH or not json_too_deep(value):
            return value
    s = text if isinstance(text, str) else text.decode("utf-8", "replace")
    raise InputLimitError(f"nested deeper than {MAX_DEPTH} levels", hint=_DEPTH_HINT, where=where,
                          line=_deep_line(s, MAX_DEPTH))


def load_toml(text: str, *, where: str | None = None) -> dict[str, Any]:
    """``tomllib.loads``; a document nested so deep that the parser runs out of stack is refused."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise InputLimitError("nested too deep to read", hint=_DEPTH_HINT, where=where) from None
