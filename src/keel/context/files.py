"""Which files an ingest reads: the walk of the folders it is given, and the bounded read.

A folder may hold things that are not documents: a symlink to ``/etc/passwd`` or to a
home directory, a symlink loop, a FIFO (opening it blocks until someone writes), a
device (``/dev/zero`` never ends), a socket. The rules:

- **Folders stay closed**: a symlink (to a file or a folder) whose target is outside
  the folder being added is skipped with the reason, unless ``follow_symlinks`` asks
  to follow every symlink. A symlink to a file inside the folder is read (once).
- **Loops and broken links** are skipped with the reason; the walk goes on.
- **Only regular files are read**: devices, FIFOs and sockets are skipped with the
  reason. :func:`read_file` opens without blocking (``O_NONBLOCK``), checks the opened
  descriptor is a regular file, and reads at most ``max_bytes + 1`` bytes, so neither a
  file swapped after the walk nor one that keeps growing can hang the ingest or fill memory.
- A path named on the command line that is none of a folder or a regular file (a
  FIFO, ``/dev/zero``) is refused before anything is read.

Hidden entries and the folders in :data:`SKIP_DIRS` are not entered.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from keel.context.types import SkippedFile
from keel.errors import UserError

__all__ = ["SKIP_DIRS", "Gathered", "SkipFile", "gather", "kind_of", "read_file"]

SKIP_DIRS = frozenset({"__pycache__", "node_modules", ".git", ".venv", "venv", ".tox", ".mypy_cache",
                       "site-packages"})

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | \
    getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class SkipFile(Exception):
    """This file cannot be ingested; ``reason`` says why (the ingest reports it and goes on)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Gathered:
    """What a walk found."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    """``(path as found, real absolute path)`` of each regular file to read, in walk order."""
    roots: list[Path] = field(default_factory=list)
    """The real paths of the folders walked (files gone from them leave the index)."""
    skipped: list[SkippedFile] = field(default_factory=list)


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _display(path: Path) -> str:
    try:
        return str(Path(os.path.abspath(path)).relative_to(Path.cwd()))
    except ValueError:
        return os.path.abspath(path)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _link_problem(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "symlink loop"
    if e.errno == errno.ENOENT:
        return "broken symlink (its target does not exist)"
    return f"unreadable symlink: {e.strerror or e}"


def gather(paths: list[Path], *, follow_symlinks: bool = False) -> Gathered:
    """The regular files under ``paths`` (see the module docstring); raises :class:`UserError`
    for a named path that does not exist or is not a folder or a regular file."""
    out = Gathered()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UserError(f"{p} is a symlink loop", hint="point the symlink at a real file or folder") from None
            raise UserError(f"no such file or directory: {p}",
                            hint="check the path (relative to the current directory)") from None
        if stat.S_ISDIR(st.st_mode):
            root = os.path.realpath(p)
            out.roots.append(Path(root))
            _walk(p, root, out, follow_symlinks=follow_symlinks)
        elif stat.S_ISREG(st.st_mode):
            out.files.append((p, os.path.realpath(p)))
        else:
            raise UserError(f"{p} is {kind_of(st.st_mode)}, not a file Keel can ingest",
                            hint="name regular files or folders; devices, FIFOs and sockets are never read")
    return out


def _walk(top: Path, root: str, out: Gathered, *, follow_symlinks: bool) -> None:
    visited = {root}  # real paths of folders entered: a symlink back to one is a loop
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            out.skipped.append(SkippedFile(_display(folder), f"unreadable folder: {e.strerror or e}"))
            continue
        subdirs: list[Path] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_symlink():
                    _symlink(entry, path, root, out, subdirs, visited, follow_symlinks=follow_symlinks)
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as e:
                out.skipped.append(SkippedFile(_display(path), f"unreadable: {e.strerror or e}"))
                continue
            if stat.S_ISDIR(mode):
                if entry.name not in SKIP_DIRS:
                    visited.add(os.path.realpath(path))
                    subdirs.append(path)
            elif stat.S_ISREG(mode):
                out.files.append((path, os.path.realpath(path)))
            else:
                out.skipped.append(SkippedFile(_display(path), f"{kind_of(mode)}, not a regular file"))
        stack.extend(reversed(subdirs))


def _symlink(entry: os.DirEntry, path: Path, root: str, out: Gathered, subdirs: list[Path], visited: set[str], *,
             follow_symlinks: bool) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        out.skipped.append(SkippedFile(_display(path), _link_problem(e)))
        return
    target = os.path.realpath(path)
    inside = _within(target, root)
    if stat.S_ISDIR(mode):
        if entry.name in SKIP_DIRS or (inside and not follow_symlinks):
            return  # a folder inside the one being added is walked on its own
        if not follow_symlinks:
            out.skipped.append(SkippedFile(_display(path), f"symlink to the folder {target}, outside {root} "
                                                           "(pass --follow-symlinks to follow it)"))
        elif any(_within(v, target) or v == target for v in visited):
            out.skipped.append(SkippedFile(_display(path), f"symlink loop (to {target}, a folder already walked)"))
        else:
            visited.add(target)
            subdirs.append(path)
        return
    if not inside and not follow_symlinks:
        out.skipped.append(SkippedFile(_display(path), f"symlink to {target}, outside {root} "
                                                       "(pass --follow-symlinks to follow it)"))
    elif stat.S_ISREG(mode):
        out.files.append((path, target))
    else:
        out.skipped.append(SkippedFile(_display(path), f"symlink to {target}, {kind_of(mode)}, not a regular file"))


def read_file(real_path: str, *, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``real_path`` (symlinks already resolved), at most
    ``max_bytes``; raises :class:`SkipFile` for anything else or anything larger."""
    limit = f"{max_bytes / 1e6:.1f} MB limit"
    try:
        fd = os.open(real_path, _OPEN_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SkipFile("became a symlink after it was listed") from None
        raise SkipFile(f"unreadable: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SkipFile(f"{kind_of(st.st_mode)}, not a regular file")
        if st.st_size > max_bytes:
            raise SkipFile(f"too large ({st.st_size / 1e6:.1f} MB > {limit})")
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise SkipFile(f"unreadable: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise SkipFile(f"too large (grew past the {limit} while being read)")
    return data
