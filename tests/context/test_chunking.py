"""Chunkers on real files: the Agents SDK docs, stdlib Python source, an HTML page, bad files."""

from __future__ import annotations

import json as stdlib_json
from pathlib import Path

import pytest

from keel.context.chunk_code import chunk_python
from keel.context.chunk_markdown import chunk_markdown, slugify
from keel.context.parse import SkipFile, chunk_file
from tests.context._data import dataset


def test_markdown_keeps_code_blocks_and_tables_whole_on_the_sdk_docs() -> None:
    docs = dataset("agents-sdk-docs")
    files = sorted(docs.rglob("*.md"))
    assert len(files) > 30
    n_code = n_table = 0
    for f in files:
        text = f.read_text(encoding="utf-8")
        lines = text.splitlines()
        for c in chunk_markdown(text):
            # every fence opened in a chunk is closed in the same chunk
            fences = [ln for ln in c.text.splitlines() if ln.lstrip().startswith(("```", "~~~"))]
            assert len(fences) % 2 == 0, (f, c.start_line, c.text[:200])
            n_code += bool(fences)
            # a table's rows are never split: the chunk holding the header holds every row
            rows = [i for i, ln in enumerate(c.text.splitlines()) if ln.lstrip().startswith("|")]
            if rows:
                n_table += 1
                last = c.start_line - 1 + max(rows)
                if last + 1 < len(lines):
                    assert not lines[last + 1].lstrip().startswith("|"), (f, c.start_line)
            # the line range points at the chunk's own text
            assert c.text.splitlines()[0] in lines[c.start_line - 1]
            assert c.text.splitlines()[-1] in lines[c.end_line - 1]
            assert c.heading_path and c.anchor
    assert n_code > 50 and n_table > 5


def test_markdown_heading_paths_and_anchors() -> None:
    text = (dataset("agents-sdk-docs") / "agents.md").read_text(encoding="utf-8")
    chunks = chunk_markdown(text)
    paths = {c.heading_path for c in chunks}
    assert ("Agents", "Basic configuration") in paths
    cfg = next(c for c in chunks if c.heading_path == ("Agents", "Basic configuration"))
    assert cfg.anchor == "basic-configuration"
    assert cfg.title == "Agents"
    assert slugify("Dynamic `instructions` & more!") == "dynamic-instructions--more"


def test_markdown_heading_inside_code_is_not_a_heading() -> None:
    text = "# Title\n\nIntro.\n\n```bash\n# install\npip install x\n```\n\n## Next\n\nBody.\n"
    chunks = chunk_markdown(text)
    assert [c.heading_path for c in chunks] == [("Title",), ("Title", "Next")]
    assert "# install" in chunks[0].text


def test_python_by_symbol_on_a_real_stdlib_file() -> None:
    path = Path(stdlib_json.__file__).parent / "decoder.py"
    text = path.read_text(encoding="utf-8")
    chunks = chunk_python(text, module="decoder")
    symbols = {s for c in chunks for s in c.symbols}
    assert {"JSONDecoder", "JSONDecodeError", "py_scanstring"} <= symbols
    dec = next(c for c in chunks if "JSONDecoder.decode" in c.symbols or c.symbols == ("JSONDecoder",))
    assert dec.signature.startswith("class JSONDecoder")
    lines = text.splitlines()
    for c in chunks:
        assert c.text.splitlines()[0] == lines[c.start_line - 1]
        assert c.kind == "code" and c.meta["lang"] == "python"


def test_python_with_a_syntax_error_still_yields_its_good_symbols() -> None:
    text = "import os\n\ndef good(a, b):\n    return a + b\n\ndef broken(:\n    pass\n\nclass K:\n    x = 1\n"
    chunks = chunk_python(text, module="m")
    names = {s for c in chunks for s in c.symbols}
    assert "good" in names and "K" in names


def test_large_class_is_split_into_methods() -> None:
    body = "\n".join(f"    def m{i}(self, x):\n        return x + {i}  # {'pad ' * 30}\n" for i in range(12))
    text = f'class Big:\n    """Doc."""\n\n{body}'
    chunks = chunk_python(text, module="big", max_chars=600)
    assert chunks[0].symbols == ("Big",)
    assert ("Big.m3",) in {c.symbols for c in chunks}
    m3 = next(c for c in chunks if c.symbols == ("Big.m3",))
    assert m3.signature == "def m3(self, x)"


HTML = """<!doctype html><html><head><title>Keel — Install guide</title><style>h1{color:red}</style>
<script>var x = "<h2>not a heading</h2>";</script></head>
<body><nav><a href="/">Home</a></nav>
<h1 id="install">Installing Keel</h1>
<p>Keel runs on <b>Python 3.11</b> or later.</p>
<h2 id="pip-setup">With pip</h2>
<pre>pip install keel
keel doctor</pre>
<table><tr><th>Extra</th><th>What</th></tr><tr><td>local</td><td>llama.cpp</td></tr></table>
<h2>Troubleshooting &amp; FAQ</h2><ul><li>Run <code>keel doctor</code></li><li>Check KEEL_HOME</li></ul>
<footer>Copyright</footer></body></html>"""


def test_html_page(tmp_path: Path) -> None:
    f = tmp_path / "install.html"
    f.write_text(HTML, encoding="utf-8")
    chunks = chunk_file(f)
    assert all(c.title == "Keel — Install guide" for c in chunks)
    text = "\n".join(c.text for c in chunks)
    assert "not a heading" not in text and "Home" not in text and "Copyright" not in text
    pip = next(c for c in chunks if "pip install keel" in c.text)
    assert pip.heading_path == ("Installing Keel", "With pip") and pip.anchor == "pip-setup"
    assert "```" in pip.text and "| Extra | What |" in pip.text
    faq = next(c for c in chunks if "keel doctor" in c.text and c is not pip)
    assert faq.anchor == "troubleshooting--faq"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("blank.txt", b"  \n\n ", "empty file"),
        ("image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"), "not valid UTF-8"),
        ("data.bin", b"abc", "unsupported file type"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "PDF"),
    ],
)
def test_bad_files_are_skipped_with_a_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    f = tmp_path / name
    f.write_bytes(data)
    with pytest.raises(SkipFile) as e:
        chunk_file(f)
    assert reason in e.value.reason


def test_huge_file_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "huge.txt"
    f.write_text("word " * 1000)
    with pytest.raises(SkipFile, match="too large"):
        chunk_file(f, max_bytes=1000)


def test_plain_text_line_ranges(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    paras = [f"Paragraph {i} " + "lorem ipsum " * 40 for i in range(10)]
    f.write_text("\n\n".join(paras), encoding="utf-8")
    chunks = chunk_file(f, max_chars=1200)
    assert len(chunks) > 3
    lines = f.read_text().splitlines()
    for c in chunks:
        assert lines[c.start_line - 1].startswith(c.text[:30])
