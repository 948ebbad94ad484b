"""Hostile folders and patterns (issue 13, finding 8): `keel context add` stays inside the folder
unless asked, reads only regular files, skips the rest with a reason and never aborts; a
catastrophic regex is refused instead of hanging the search. CLI runs are real subprocesses
with a timeout, so a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.context import Collection, RegexError

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(),
                                reason="needs POSIX FIFOs and /dev/zero")


def _keel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keel", "context", *args], capture_output=True, text=True,
                          env={**os.environ}, timeout=120)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A folder holding one document and every kind of trap."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nthe launch code is swordfish\n")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "guide.md").write_text("# Guide\n\nRun keel context add to index a folder.\n")
    (docs / "passwd").symlink_to("/etc/passwd")  # a file outside the folder
    (docs / "zero.txt").symlink_to("/dev/zero")  # a device that never ends
    (docs / "loop-a.md").symlink_to(docs / "loop-b.md")  # a symlink loop
    (docs / "loop-b.md").symlink_to(docs / "loop-a.md")
    (docs / "gone.md").symlink_to(docs / "never-was.md")  # a broken symlink
    (docs / "same.md").symlink_to(docs / "guide.md")  # inside the folder: the same document
    (docs / "elsewhere").symlink_to(outside, target_is_directory=True)  # a folder outside
    (docs / "sub" / "up").symlink_to(docs, target_is_directory=True)  # a folder loop
    os.mkfifo(docs / "pipe.md")  # opening it for reading blocks until a writer comes
    return docs


def _skipped(report: dict) -> dict[str, str]:
    return {Path(s["path"]).name: s["reason"] for s in report["skipped"]}


def test_add_stays_in_the_folder_reads_only_regular_files_and_says_what_it_skipped(hostile: Path) -> None:
    r = _keel("add", "kb", str(hostile), "--embedder", "test-hashing", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["files_indexed"] == 1
    skipped = _skipped(report)
    assert skipped["passwd"] == f"symlink to /etc/passwd, outside {hostile} (pass --follow-symlinks to follow it)"
    assert skipped["zero.txt"].startswith("symlink to /dev/zero, outside")
    assert skipped["loop-a.md"] == skipped["loop-b.md"] == "symlink loop"
    assert skipped["gone.md"] == "broken symlink (its target does not exist)"
    assert skipped["elsewhere"].startswith(f"symlink to the folder {hostile.parent / 'elsewhere'}, outside")
    assert skipped["pipe.md"] == "a FIFO (named pipe), not a regular file"
    assert "up" not in skipped  # a folder inside the folder: walked once, on its own
    with Collection.open("kb") as col:
        assert [Path(s).name for s in col.sources()] == ["guide.md"]
        assert not col.search("root", mode="bm25", k=5)  # /etc/passwd was not indexed
        assert not col.search("swordfish", mode="bm25", k=5)
    # The plain report lists each skipped file with its reason, on stderr.
    r = _keel("add", "kb", str(hostile))
    assert r.returncode == 0 and "skipped" in r.stderr and "symlink loop" in r.stderr and "Traceback" not in r.stderr


def test_follow_symlinks_leaves_the_folder_but_still_reads_only_regular_files(hostile: Path) -> None:
    (hostile / "passwd").unlink()
    r = _keel("add", "kb", str(hostile), "--embedder", "test-hashing", "--json", "--follow-symlinks")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["files_indexed"] == 2  # guide.md and elsewhere/secret.md
    skipped = _skipped(report)
    assert skipped["zero.txt"] == "symlink to /dev/zero, a character device, not a regular file"
    assert skipped["up"] == f"symlink loop (to {hostile}, a folder already walked)"
    assert skipped["pipe.md"] == "a FIFO (named pipe), not a regular file"
    with Collection.open("kb") as col:
        assert col.search("swordfish", mode="bm25", k=5)


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: os.mkfifo(d / "pipe.md") or d / "pipe.md", "is a FIFO (named pipe), not a file Keel can ingest"),
    (lambda d: Path("/dev/zero"), "/dev/zero is a character device, not a file Keel can ingest"),
    (lambda d: (d / "self.md").symlink_to(d / "self.md") or d / "self.md", "is a symlink loop"),
])
def test_a_named_fifo_device_or_loop_is_refused_with_a_clear_error(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    r = _keel("add", "kb", str(path), "--embedder", "test-hashing")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_a_catastrophic_regex_is_refused_instead_of_hanging_the_search(keel_home: Path) -> None:
    with Collection.open("kb", embedder="test-hashing") as col:
        col.add_records([("r1", "aaa", "a" * 3000 + "!", {}), ("r2", "words", "plain words here", {})])
        assert [h.citation.source for h in col.search("", regex=r"plain\s+words", k=5)] == ["r2"]
    # In a subprocess first: with a backtracking engine and no budget this never returns.
    r = _keel("search", "kb", "", "--regex", "(a|aa)+$")
    assert r.returncode == 2, r.stderr
    assert "error: regex '(a|aa)+$' took more than 2 s" in r.stderr and "Traceback" not in r.stderr
    with Collection.open("kb") as col, pytest.raises(RegexError, match="took more than 2 s"):
        col.search("", regex=r"(a|aa)+$", k=5)
