"""HTML chunking: the page is turned into markdown (headings, paragraphs, lists,
``<pre>`` code, tables as pipe rows) and chunked like markdown, so headings give
the heading path and anchors (an element's ``id`` wins over the slug).

Scripts, styles, navigation, headers and footers are dropped. Only the standard
library's parser is used; it never raises on malformed HTML.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from keel.context.chunk_markdown import chunk_markdown, slugify
from keel.context.types import ChunkDraft

__all__ = ["chunk_html", "html_to_markdown"]

_SKIP = {"script", "style", "nav", "header", "footer", "noscript", "svg", "template"}
_BLOCK = {"p", "div", "section", "article", "main", "blockquote", "ul", "ol", "dl", "br", "hr", "table", "body"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"}


class _ToMarkdown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.title = ""
        self.ids: dict[str, str] = {}  # heading text -> element id
        self._skip = 0
        self._in_title = False
        self._pre = 0
        self._heading: tuple[int, str | None] | None = None
        self._heading_text: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._rows_in_table = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
            return
        if self._skip:
            return
        if tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = (int(tag[1]), dict(attrs).get("id"))
            self._heading_text = []
        elif tag == "pre":
            self._pre += 1
            self.out.append("\n\n```\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag == "table":
            self._rows_in_table = 0
            self.out.append("\n\n")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in _BLOCK:
            self.out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag) and self._heading:
            level, hid = self._heading
            text = " ".join("".join(self._heading_text).split())
            if hid:
                self.ids[text] = hid
            self.out.append(f"\n\n{'#' * level} {text}\n\n")
            self._heading = None
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self.out.append("\n```\n\n")
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()).replace("|", "\\|"))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.out.append("| " + " | ".join(self._row) + " |\n")
            if self._rows_in_table == 0:
                self.out.append("|" + " --- |" * len(self._row) + "\n")
            self._rows_in_table += 1
            self._row = None
        elif tag == "table":
            self.out.append("\n")
        elif tag in _BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data
        elif self._heading is not None:
            self._heading_text.append(data)
        elif self._cell is not None:
            self._cell.append(data)
        elif self._pre:
            self.out.append(data)
        else:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_markdown(html: str) -> tuple[str, str, dict[str, str]]:
    """``(markdown, title, heading ids)`` for an HTML page."""
    p = _ToMarkdown()
    p.feed(html)
    p.close()
    text = "".join(p.out)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    return text, " ".join(p.title.split()), p.ids


def chunk_html(html: str, *, max_chars: int = 1200) -> list[ChunkDraft]:
    """Chunks of an HTML page. Line ranges refer to the converted text, not the HTML source."""
    text, title, ids = html_to_markdown(html)
    chunks = chunk_markdown(text, max_chars=max_chars, kind="html")
    slug_to_id = {slugify(k): v for k, v in ids.items()}
    for c in chunks:
        if title:
            c.title = title
        if c.anchor in slug_to_id:
            c.anchor = slug_to_id[c.anchor]
    return chunks
