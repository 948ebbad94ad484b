"""Source code chunking by symbol (Python).

Each top-level function and class becomes a chunk named by its symbol, with its
signature attached. A class longer than ``max_chars`` is split: a head chunk (the
class line, docstring and class attributes) and one chunk per method, named
``Class.method``. Module-level code between symbols (imports, constants) is
packed into ``<module>`` chunks. Decorators stay with what they decorate.

The parser is tree-sitter (``tree-sitter`` + ``tree-sitter-python``): it keeps
going past syntax errors, so a half-edited file still yields its good symbols.
Without it, the standard library's ``ast`` does the same for files that parse,
and a file that does not parse is chunked as plain text.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from keel.context.chunk_text import chunk_text
from keel.context.types import ChunkDraft

__all__ = ["chunk_python"]


@dataclass
class _Symbol:
    name: str
    kind: str  # "function" | "class"
    start: int  # 0-based line, inclusive (decorators included)
    end: int  # 0-based line, inclusive
    body_start: int  # first line of the body (for the class head)
    children: list[_Symbol]


def _ts_symbols(source: bytes) -> list[_Symbol] | None:
    try:
        import tree_sitter
        import tree_sitter_python
    except ImportError:
        return None
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_python.language()))
    tree = parser.parse(source)

    def walk(node, into_class: bool) -> list[_Symbol]:
        out = []
        for child in node.children:
            start = child.start_point[0]
            target = child
            if child.type == "decorated_definition":
                target = child.child_by_field_name("definition") or child
            if target.type not in ("function_definition", "class_definition"):
                continue
            name_node = target.child_by_field_name("name")
            if name_node is None:
                continue
            name = name_node.text.decode("utf-8", "replace")
            body = target.child_by_field_name("body")
            kids = walk(body, True) if (target.type == "class_definition" and body is not None) else []
            out.append(_Symbol(
                name=name, kind="class" if target.type == "class_definition" else "function",
                start=start, end=child.end_point[0],
                body_start=body.start_point[0] if body is not None else target.start_point[0], children=kids,
            ))
        return out

    return walk(tree.root_node, False)


def _ast_symbols(text: str) -> list[_Symbol] | None:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None

    def walk(nodes: list[ast.stmt]) -> list[_Symbol]:
        out = []
        for node in nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
                is_class = isinstance(node, ast.ClassDef)
                out.append(_Symbol(
                    name=node.name, kind="class" if is_class else "function", start=start,
                    end=(node.end_lineno or node.lineno) - 1, body_start=node.body[0].lineno - 1,
                    children=walk(node.body) if is_class else [],
                ))
        return out

    return walk(tree.body)


def _signature(lines: list[str], sym: _Symbol) -> str:
    """The ``def``/``class`` line(s) up to the colon that opens the body."""
    out = []
    for line in lines[sym.start : sym.end + 1]:
        if line.lstrip().startswith("@") and not out:
            continue
        out.append(line.strip())
        if line.rstrip().endswith(":"):
            break
        if len(out) > 12:
            break
    return " ".join(out).rstrip(":")


def chunk_python(text: str, *, module: str = "", max_chars: int = 1500) -> list[ChunkDraft]:
    """Chunks of a Python source file (see the module docstring)."""
    symbols = _ts_symbols(text.encode("utf-8"))
    if symbols is None:
        symbols = _ast_symbols(text)
    if symbols is None:
        return chunk_text(text, max_chars=max_chars, kind="code", meta={"lang": "python"})
    lines = text.splitlines()
    chunks: list[ChunkDraft] = []
    meta = {"lang": "python"}

    def emit(start: int, end: int, *, symbols: tuple[str, ...], signature: str = "") -> None:
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end].strip():
            end -= 1
        body = "\n".join(lines[start : end + 1])
        if body.strip():
            chunks.append(ChunkDraft(
                text=body, kind="code", title=module, heading_path=(module, *symbols[:1]) if module else symbols[:1],
                anchor=f"L{start + 1}-L{end + 1}", start_line=start + 1, end_line=end + 1,
                symbols=symbols, signature=signature, meta=dict(meta),
            ))

    def emit_loose(start: int, end: int) -> None:
        """Module-level code between symbols, packed to max_chars."""
        cur = start
        while cur <= end:
            size, stop = 0, cur
            while stop <= end and (size == 0 or size + len(lines[stop]) <= max_chars):
                size += len(lines[stop]) + 1
                stop += 1
            emit(cur, stop - 1, symbols=("<module>",))
            cur = stop

    prev = 0
    for sym in symbols:
        if sym.start > prev:
            emit_loose(prev, sym.start - 1)
        size = sum(len(line) + 1 for line in lines[sym.start : sym.end + 1])
        sig = _signature(lines, sym)
        if sym.kind == "class" and size > max_chars and sym.children:
            first = sym.children[0].start
            emit(sym.start, first - 1, symbols=(sym.name,), signature=sig)
            for i, child in enumerate(sym.children):
                end = sym.children[i + 1].start - 1 if i + 1 < len(sym.children) else sym.end
                emit(child.start, end, symbols=(f"{sym.name}.{child.name}",), signature=_signature(lines, child))
        else:
            names = (sym.name, *(f"{sym.name}.{c.name}" for c in sym.children))
            emit(sym.start, sym.end, symbols=names, signature=sig)
        prev = sym.end + 1
    if prev < len(lines):
        emit_loose(prev, len(lines) - 1)
    return chunks
