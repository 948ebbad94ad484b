"""Save a structured spec (plain JSON data, as a visual editor holds it) onto the YAML text it
came from, changing only what changed: the user's comments, key order, quoting and layout of
every part they did not edit survive.

:func:`apply_data` compares the old document's *meaning* (the data Keel's loader reads from it,
:func:`keel.workflows.loader.read_document`) with the new data, and edits only the differing
places of the round-trip tree ruamel.yaml keeps of the text (mappings key by key, lists matched
by node ``id`` or by value). An unchanged save returns the text byte for byte. The result is
read back with Keel's loader and must mean exactly the new data; when it does not (a value
ruamel.yaml writes in a way PyYAML reads otherwise) the document is written afresh from the data,
and the result says that comments were not kept. So the meaning never changes silently.

The canvas API (:mod:`keel.operate.ui.canvas`) uses it for every structured save.
"""

from __future__ import annotations

import difflib
import io
import json
from dataclasses import dataclass
from typing import Any

from keel.workflows.loader import read_document

__all__ = ["ApplyResult", "apply_data", "fresh_yaml", "same", "to_json"]

_INDENTS = ((2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (3, 3, 0))
"""(mapping, sequence, dash offset) styles tried, to write the document the way it was written."""


@dataclass(frozen=True)
class ApplyResult:
    text: str
    """The new YAML text."""
    changed: bool
    """Whether the meaning changed at all (False: ``text`` is the old text, byte for byte)."""
    comments_kept: bool
    """False when the document had to be written afresh (comments and formatting lost)."""


def same(a: Any, b: Any) -> bool:
    """Whether two plain values mean the same: ``1 == 1.0``, but ``True != 1``, and mapping key
    order does not count (a canvas may send the keys in any order)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def to_json(value: Any) -> Any:
    """``value`` (a document's data) as JSON-compatible data: dates and other YAML-only scalars
    become strings, keys become strings."""
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def apply_data(text: str, new: dict[str, Any]) -> ApplyResult:
    """``text`` (a YAML or JSON spec) edited to mean ``new``; see the module docstring.

    Raises :class:`~keel.workflows.errors.SpecError` when ``text`` is not a YAML mapping (the
    caller then writes ``new`` afresh with :func:`fresh_yaml`)."""
    old, _ = read_document(text)
    if same(old, new):
        return ApplyResult(text, changed=False, comments_kept=True)
    spliced = _splice(text, old, new)
    if spliced is not None:
        return ApplyResult(spliced, changed=True, comments_kept=True)
    from ruamel.yaml.comments import CommentedMap

    try:
        doc = _rt().load(text)
    except Exception:  # ruamel.yaml refuses what PyYAML read (rare: YAML 1.1 oddities)
        doc = None
    if isinstance(doc, CommentedMap):
        indent = _indent_of(doc, text)
        _merge_map(doc, old, new)
        out = _dump(doc, indent)
        try:
            if same(read_document(out)[0], new):
                return ApplyResult(out, changed=True, comments_kept=True)
        except Exception:  # any failure to read it back: write afresh below
            pass
    return ApplyResult(fresh_yaml(new), changed=True, comments_kept=False)


def fresh_yaml(data: dict[str, Any]) -> str:
    """``data`` as readable YAML (block strings for multi-line text), key order kept."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    _Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


# -- splicing: only the changed parts go through ruamel.yaml ------------------------------------

_MAX_PIECES = 200
"""More changed pieces than this: the whole document goes through ruamel.yaml instead."""


class _Bail(Exception):
    """The document's shape is not one :func:`_splice` handles: take the whole-document path."""


def _splice(text: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """``text`` edited to mean ``new`` by rewriting only the pieces that changed, or None.

    Reading a 500-node spec into ruamel.yaml's round-trip tree and writing it back takes
    seconds; an edit on the canvas changes a few nodes. So the text is cut along its block
    structure (the C parser's line of every entry and item): each changed entry of a block
    mapping, or item of a block sequence, is one piece, and only the pieces go through
    ruamel.yaml, merged as :func:`apply_data` merges the whole document. Everything else stays
    byte for byte. None (the caller takes the whole-document path) when the shape is not plain
    block YAML (flow style or aliases on the way down, keys added or removed, lists that change
    length, a piece whose text ruamel.yaml would not write back as it is), or when the result,
    read back, does not mean ``new``."""
    from keel.safeload import compose_yaml

    if any(ch in text for ch in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        return None  # line breaks other than \n: the parser's line numbers and ours could differ
    try:
        root = compose_yaml(text)
        lines = text.split("\n")
        pieces: list[tuple[int, int, Any, Any, Any]] = []
        _shared_nodes(root)
        _splice_map(root, old, new, len(lines), pieces)
        if not pieces or len(pieces) > _MAX_PIECES:
            return None
        out_lines: list[str] = []
        pos = 0
        for start, end, kind, old_v, new_v in sorted(pieces, key=lambda p: (p[0], p[1])):
            if start < pos or end > len(lines):
                raise _Bail  # pieces overlap (an entry changed and keys added after it)
            out_lines += lines[pos:start]
            out_lines += _rewrite(lines[start:end], end == len(lines), kind, old_v, new_v)
            pos = end
        out_lines += lines[pos:]
        out = "\n".join(out_lines)
        if same(read_document(out)[0], new):
            return out
    except _Bail:
        return None
    except Exception:  # any surprise: the whole-document path decides
        return None
    return None


def _shared_nodes(root: Any) -> None:
    """:class:`_Bail` when a node appears twice (an alias: editing one place edits both)."""
    import yaml

    seen: set[int] = set()
    todo = [root]
    while todo:
        n = todo.pop()
        if id(n) in seen:
            raise _Bail
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            todo += [x for pair in n.value for x in pair]
        elif isinstance(n, yaml.SequenceNode):
            todo += n.value


def _block(node: Any, kind: type) -> bool:
    return isinstance(node, kind) and not node.flow_style


def _splice_map(node: Any, old: dict[str, Any], new: dict[str, Any], end: int, pieces: list) -> None:
    """Pieces for the changed entries of block mapping ``node`` (meaning ``old``, to mean ``new``),
    whose last entry ends before line ``end``."""
    import yaml

    if not _block(node, yaml.MappingNode) or not isinstance(old, dict) or not isinstance(new, dict):
        raise _Bail
    keys = [k for k, _ in node.value]
    if not keys or not all(isinstance(k, yaml.ScalarNode) and k.tag == "tag:yaml.org,2002:str" for k in keys) \
            or [k.value for k in keys] != list(old) or not set(old) <= set(new):
        raise _Bail
    added = {k: v for k, v in new.items() if k not in old}
    if added:  # new keys (a layout's viewport, say) go after the last entry's last line, as ruamel.yaml puts them
        at = _last_line(node) + 1
        pieces.append((at, at, ("insert", keys[0].start_mark.column), None, added))
    for j, (k, v) in enumerate(node.value):
        stop = keys[j + 1].start_mark.line if j + 1 < len(keys) else end
        if same(old[k.value], new[k.value]):
            continue
        ov, nv = old[k.value], new[k.value]
        if _block(v, yaml.MappingNode) and isinstance(ov, dict) and isinstance(nv, dict) and set(ov) <= set(nv) \
                and v.start_mark.line > k.start_mark.line:
            _splice_map(v, ov, nv, stop, pieces)
        elif _block(v, yaml.SequenceNode) and isinstance(ov, list) and isinstance(nv, list) and len(ov) == len(nv) \
                and v.start_mark.line > k.start_mark.line:
            _splice_seq(v, ov, nv, stop, pieces)
        else:
            pieces.append((k.start_mark.line, stop, ("entry", k.start_mark.column), {k.value: ov}, {k.value: nv}))


def _splice_seq(node: Any, old: list[Any], new: list[Any], end: int, pieces: list) -> None:
    """Pieces for the changed items of block sequence ``node``: each changed item is rewritten whole."""
    items = node.value
    if len(items) != len(old):
        raise _Bail
    for i, item in enumerate(items):
        stop = items[i + 1].start_mark.line if i + 1 < len(items) else end
        if same(old[i], new[i]):
            continue
        pieces.append((item.start_mark.line, stop, ("item", item.start_mark.column), old[i], new[i]))


def _last_line(node: Any) -> int:
    """The last line (0-based) holding part of ``node``'s value."""
    import yaml

    if _block(node, yaml.MappingNode) and node.value:
        return _last_line(node.value[-1][1])
    if _block(node, yaml.SequenceNode) and node.value:
        return _last_line(node.value[-1])
    end = node.end_mark
    return end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line


def _inserted(added: dict[str, Any], column: int) -> list[str]:
    """Lines for new mapping entries at ``column``: one line each (small flat values), else :class:`_Bail`."""
    from ruamel.yaml.comments import CommentedMap

    out = _dump(CommentedMap((k, _new(v)) for k, v in added.items()), _INDENTS[0])
    if out.count("\n") != len(added) or not out.endswith("\n"):
        raise _Bail  # a block value: its indentation style is the document's, which only a rewrite knows
    return [" " * column + line for line in out[:-1].split("\n")]


def _rewrite(chunk: list[str], at_end: bool, kind: tuple[str, int], old: Any, new: Any) -> list[str]:
    """The lines of one piece, merged through ruamel.yaml: the piece is shifted to a small document
    of its own (an entry as a one-key mapping; an item as a one-item list under a key), which
    must write back byte for byte before the merge, then shifted back."""
    what, column = kind
    if what == "insert":
        return _inserted(new, column)
    first = chunk[0]
    if what == "item":
        dash = len(first) - len(first.lstrip(" "))
        if not first[dash:].startswith("-") or column <= dash:
            raise _Bail  # the dash is not on the item's first line
    else:
        dash = column
        if len(first) - len(first.lstrip(" ")) != column:
            raise _Bail
    for cand in _INDENTS:
        at = cand[2] if what == "item" else 0
        shift = dash - at
        if shift < 0:
            continue
        if any(line.strip() == "" and line != "" for line in chunk) or \
                any(line and not line.startswith(" " * shift) for line in chunk):
            raise _Bail
        body = "\n".join(line[shift:] for line in chunk) + ("" if at_end else "\n")
        snippet = ("_:\n" + body) if what == "item" else body
        try:
            doc = _rt(cand).load(snippet)
        except Exception:
            raise _Bail from None
        if _dump(doc, cand) != snippet:
            continue
        if what == "item":
            _merge_value(doc["_"], 0, old, new)
        else:
            _merge_map(doc, old, new)
        out = _dump(doc, cand)
        if what == "item":
            if not out.startswith("_:\n"):
                raise _Bail
            out = out[3:]
        if not at_end:  # the piece's lines, as ``text.split("\n")`` cuts them
            if not out.endswith("\n"):
                raise _Bail
            out = out[:-1]
        return [(" " * shift + line) if line else line for line in out.split("\n")]
    raise _Bail


# -- ruamel.yaml ----------------------------------------------------------------------------


def _rt(indent: tuple[int, int, int] = (2, 4, 2)) -> Any:
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap the user's long lines
    y.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
    return y


def _dump(doc: Any, indent: tuple[int, int, int]) -> str:
    buf = io.StringIO()
    _rt(indent).dump(doc, buf)
    return buf.getvalue()


def _indent_of(doc: Any, text: str) -> tuple[int, int, int]:
    """The indentation style that writes ``doc`` back as ``text`` (or the closest one)."""
    best, score = _INDENTS[0], -1.0
    for cand in _INDENTS:
        out = _dump(doc, cand)
        if out == text:
            return cand
        ratio = difflib.SequenceMatcher(None, out.splitlines(), text.splitlines(), autojunk=False).ratio()
        if ratio > score:
            best, score = cand, ratio
    return best


def _key(item: Any) -> tuple[str, str]:
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        return ("id", item["id"])
    return ("value", json.dumps(item, sort_keys=True, default=str))


def _merge_map(m: Any, old: dict[str, Any], new: dict[str, Any]) -> None:
    for k in [k for k in m if k not in new]:
        del m[k]
    for k, v in new.items():
        if k in old and k in m:
            if not same(old[k], v):
                _merge_value(m, k, old[k], v)
        else:
            m[k] = _new(v)


def _merge_value(container: Any, at: Any, old: Any, new: Any) -> None:
    """Make ``container[at]`` (which means ``old``) mean ``new``, in place where it can."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    cur = container[at]
    if isinstance(old, dict) and isinstance(new, dict) and isinstance(cur, CommentedMap):
        _merge_map(cur, old, new)
    elif isinstance(old, list) and isinstance(new, list) and isinstance(cur, CommentedSeq):
        _merge_seq(cur, old, new)
    else:
        container[at] = _new(new)


def _merge_seq(seq: Any, old: list[Any], new: list[Any]) -> None:
    """Lists are matched item by item: nodes by ``id``, anything else by value, so deleting or
    inserting one item leaves the others (and their comments) alone."""
    ops = difflib.SequenceMatcher(None, [_key(x) for x in old], [_key(x) for x in new], autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in reversed(ops):  # from the end: earlier indices stay valid
        if tag == "delete":
            for i in reversed(range(i1, i2)):
                del seq[i]
        elif tag == "insert":
            for k, j in enumerate(range(j1, j2)):
                seq.insert(i1 + k, _new(new[j]))
        else:  # equal (same keys, content may differ) or replace (edit in place, pairwise)
            n = min(i2 - i1, j2 - j1)
            for i in reversed(range(i1 + n, i2)):
                del seq[i]
            for k, j in enumerate(range(j1 + n, j2)):
                seq.insert(i1 + n + k, _new(new[j]))
            for k in range(n):
                if not same(old[i1 + k], new[j1 + k]):
                    _merge_value(seq, i1 + k, old[i1 + k], new[j1 + k])


def _flat(value: dict | list) -> bool:
    """Small and scalar-only: written in flow style (``{from: a, to: b}``, ``[pii, jailbreak]``)."""
    items = value.values() if isinstance(value, dict) else value
    if any(isinstance(v, dict | list) or (isinstance(v, str) and "\n" in v) for v in items):
        return False
    return len(json.dumps(value, default=str)) <= 90


def _new(value: Any) -> Any:
    """A fresh value for the tree: mappings and lists as ruamel.yaml's (flow style when small and
    flat), multi-line strings as literal blocks, strings PyYAML would read as something else
    (``on``, ``1_000``, ``12:30``...) quoted."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

    if isinstance(value, dict):
        m = CommentedMap((k, _new(v)) for k, v in value.items())
        if value and _flat(value):
            m.fa.set_flow_style()
        return m
    if isinstance(value, list):
        s = CommentedSeq(_new(v) for v in value)
        if value and _flat(value):
            s.fa.set_flow_style()
        return s
    if isinstance(value, str):
        if "\n" in value and not any(line != line.rstrip() for line in value.split("\n")) \
                and not value.startswith((" ", "\n")):
            return LiteralScalarString(value)
        if not _plain_is_str(value):
            return DoubleQuotedScalarString(value)
    return value


def _plain_is_str(text: str) -> bool:
    import yaml

    return yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str"
