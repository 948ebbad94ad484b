"""``keel up``: from an empty folder to a served knowledge assistant, as a user runs it
(real subprocesses, the real context engine, a real server on a free port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx

from tests.operate.conftest import echo3, free_port

FAST = ("--embedder", "test-hashing")  # instant, deterministic embeddings; the pipeline is the real one


def keel(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keel", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=dict(os.environ))


def test_up_in_an_empty_folder_creates_ingests_and_publishes(tmp_path: Path) -> None:
    project = tmp_path / "kb"
    project.mkdir()
    r = keel("up", "--no-serve", *FAST, cwd=project)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # The project's own names, from its folder (kb): no other project shares them.
    assert "created . from the knowledge-assistant template (workflow.yaml, keel.toml, docs/): workflow 'kb', " \
           "collection 'kb-handbook'" in out
    assert "ingesting 2 files from" in out and "into collection 'kb-handbook'" in out
    assert "2 indexed" in out and "'kb-handbook' holds 2 documents" in out
    assert "published workflow kb v1" in out
    # No key in this environment: the project answers offline (extractive), and one line says
    # how to switch to a model.
    assert "answerer: extractive (no model: quotes the sentences of your docs that answer, with citations)" in out
    assert "export OPENAI_API_KEY=... and keel up --model openai:gpt-4.1-mini, or keel up --model ollama:llama3.2" \
        in out
    assert tomllib.loads((project / "keel.toml").read_text())["models"] == {"kb-answer": "extractive"}
    assert "workflow: kb@1" in (project / "evals" / "handbook.yaml").read_text()
    doctor = keel("doctor", "--offline", cwd=project)  # says which answerer is in use, and the switch
    assert "alias kb-answer (extractive): answerer: extractive, no model" in doctor.stdout, doctor.stdout
    assert "switch to a model in one line: keel up --model openai:gpt-4.1-mini" in doctor.stdout
    assert {p.name for p in project.iterdir()} >= {"workflow.yaml", "keel.toml", "docs", "README.md"}
    assert tomllib.loads((project / "keel.toml").read_text())["chatkit"] == {"workflow": "kb"}
    assert "keel context add kb-handbook ./docs" in (project / "README.md").read_text()

    # What needs no model works now: search with citations, from the same folder.
    found = json.loads(keel("context", "search", "kb-handbook", "holiday days", "--json", cwd=project).stdout)
    best = found["hits"][0]
    assert best["source"] == "docs/time-off.md" and best["anchor"] == "holidays" and "27 days" in best["text"]
    assert "start it with `keel serve`" in out


def test_up_again_reuses_the_project_and_keeps_the_version(tmp_path: Path) -> None:
    assert keel("up", str(tmp_path / "kb"), "--no-serve", *FAST).returncode == 0
    r = keel("up", str(tmp_path / "kb"), "--no-serve", *FAST)
    assert r.returncode == 0, r.stderr
    assert "using the Keel project in" in r.stdout
    assert "0 indexed" in r.stdout and "2 unchanged" in r.stdout
    assert "published workflow kb v1" in r.stdout
    assert f"start it with `cd {tmp_path / 'kb'} && keel serve`" in r.stdout


def test_up_model_option_rewrites_the_aliases(tmp_path: Path) -> None:
    r = keel("up", str(tmp_path / "kb"), "--no-serve", "--model", "ollama:llama3.2", *FAST)
    assert r.returncode == 0, r.stderr
    toml = tomllib.loads((tmp_path / "kb" / "keel.toml").read_text())
    assert toml["models"] == {"kb-answer": "ollama:llama3.2"}
    assert "models: ollama:llama3.2" in r.stdout


def assert_clean_failure(r: subprocess.CompletedProcess[str], says: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and says in r.stderr and "fix: " in r.stderr


def test_up_refuses_a_folder_that_is_neither_empty_nor_a_project(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    r = keel("up", "--no-serve", cwd=tmp_path)
    assert_clean_failure(r, "is not empty and is not a Keel project")
    assert "keel up my-assistant" in r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # nothing written


def test_up_bad_options_are_clear_errors(tmp_path: Path) -> None:
    assert_clean_failure(keel("up", str(tmp_path / "a"), "--no-serve", "--model", "nonsense"), "nonsense")
    assert_clean_failure(keel("up", str(tmp_path / "b"), "--no-serve", "--docs", str(tmp_path / "none")),
                         "is not a folder")


def _wait_for(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"keel up exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"keel up did not serve within 120 s:\n{log.read_text()}")


def _chat_item(url: str, text: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "threads.create", "params": {"input": {
        "content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}}}}
    r = httpx.post(f"{url}/chatkit", json=doc, timeout=60)
    assert r.status_code == 200, r.text
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    return next(e["item"] for e in events if e["type"] == "thread.item.done"
                and e["item"]["type"] == "assistant_message")["content"][0]


def _chat(url: str, text: str) -> str:
    return _chat_item(url, text)["text"]


def _start_up(project: Path, log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "keel", "up", str(project), "--port", str(port), *FAST],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    _wait_for(proc, url, log)
    return proc, url


def test_up_with_a_model_answers_from_the_docs_with_their_sources(tmp_path: Path, openai_stub: Any) -> None:
    openai_stub.answer("Full-time employees have 27 days of paid holiday a year, plus public holidays [1].")
    log = tmp_path / "up.log"
    proc, url = _start_up(tmp_path / "kb", log, {"OPENAI_BASE_URL": openai_stub.base_url,
                                                 "OPENAI_API_KEY": "sk-test-not-real"})
    try:
        assert "models: openai:gpt-4.1-mini" in log.read_text()
        said = _chat_item(url, "How many holiday days do I get?")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert said["text"] == "Full-time employees have 27 days of paid holiday a year, plus public holidays [1]."
    assert "docs/time-off.md" in [a["source"]["filename"] for a in said["annotations"]]
    # The model was given the retrieved passage as numbered, cited data.
    sent = json.dumps(openai_stub.requests[0].body)
    assert "27 days of paid holiday" in sent and "[1] docs/time-off.md" in sent


def test_up_serves_the_assistant_and_without_a_model_the_chat_answers_from_the_docs(tmp_path: Path) -> None:
    # A workflow another folder published in the same KEEL_HOME, first by name.
    other = tmp_path / "other"
    other.mkdir()
    (other / "keel.toml").write_text('[models]\nbot = "scripted:echo"\n', encoding="utf-8")
    (other / "aaa.yaml").write_text(echo3("aaa").replace('"scripted:echo"', "bot"), encoding="utf-8")
    assert keel("workflows", "publish", "aaa.yaml", cwd=other).returncode == 0
    log = tmp_path / "up.log"
    proc, url = _start_up(tmp_path / "kb", log)
    try:
        printed = log.read_text()
        assert f"UI       {url}/ui" in printed and f"API      {url}/v1" in printed
        assert f"ChatKit  {url}/chatkit" in printed and f"MCP      {url}/mcp/" in printed
        names = [w["name"] for w in httpx.get(f"{url}/v1/workflows", timeout=30).json()["data"]]
        assert names == ["aaa", "kb"]
        # The UI opens this project's workflow, not the first by name.
        listed = httpx.get(f"{url}/ui/api/workflows", timeout=30).json()
        assert listed["default"] == "kb"
        # The chat page says the answers come from no model, and the one line to switch (issue 19).
        answerers = {w["name"]: w["answerer"] for w in listed["workflows"]}
        assert answerers["aaa"] is None and answerers["kb"]["name"] == "extractive"
        assert "keel up --model openai:gpt-4.1-mini" in answerers["kb"]["switch"]
        # ... said where to run it: the page's reader is not in the project's folder.
        assert answerers["kb"]["switch"].startswith(f"in {(tmp_path / 'kb').resolve()}: keel up --model")
        # The other folder's workflow runs with the alias it was published with, although
        # this server's keel.toml does not define `bot`.
        r = httpx.post(f"{url}/v1/workflows/aaa/runs", json={"input": "hello there"}, timeout=60)
        assert r.status_code == 200 and r.json()["output"] == "hello there", r.text
        # Issue 19: no key, no model, and the chat answers from the docs, quoting and citing them.
        said = _chat_item(url, "How many holiday days do I get?")
        assert said["text"].startswith("Full-time employees have 27 days of paid holiday a year"), said
        assert "[1]" in said["text"] and "docs/time-off.md" in [a["source"]["filename"] for a in said["annotations"]]
        said = _chat_item(url, "When are expense claims paid?")
        assert "Claims are paid with the next monthly salary." in said["text"], said
        assert "docs/expenses.md" in [a["source"]["filename"] for a in said["annotations"]]
        # The run is traced: its File search found the time-off document, its answer is a model call.
        runs = httpx.get(f"{url}/v1/runs", timeout=30).json()["data"]
        trace = httpx.get(f"{url}/v1/runs/{runs[0]['id']}/trace", timeout=30).json()
        assert "time-off.md" in json.dumps(trace) or "handbook" in json.dumps(trace)
        assert "extractive:default" in json.dumps(trace)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()


def test_up_docs_option_ingests_your_own_folder(tmp_path: Path) -> None:
    mine = tmp_path / "handbook"
    mine.mkdir()
    (mine / "parking.md").write_text("# Parking\n\nStaff park in garage B, level 2, with the blue badge.\n",
                                     encoding="utf-8")
    r = keel("up", str(tmp_path / "kb"), "--no-serve", "--docs", str(mine), *FAST)
    assert r.returncode == 0, r.stderr
    assert f"ingesting 1 files from {mine} into collection 'kb-handbook'" in r.stdout
    found = json.loads(keel("context", "search", "kb-handbook", "where do I park", "--json",
                            cwd=tmp_path / "kb").stdout)
    assert found["hits"][0]["source"].endswith("parking.md") and "garage B" in found["hits"][0]["text"]


def test_two_projects_share_no_collection_or_workflow(tmp_path: Path) -> None:
    """Issue 14: `keel up demo3 --docs ./mydocs` and the README's `keel context add handbook ...`
    poured into the demo's knowledge base when every project used `handbook`."""
    mydocs = tmp_path / "mydocs"
    mydocs.mkdir()
    (mydocs / "parking.md").write_text("# Parking\n\nStaff park in garage B.\n", encoding="utf-8")
    notes = tmp_path / "handbook"
    notes.mkdir()
    (notes / "keys.md").write_text("# Keys\n\nRotate API keys every 90 days.\n", encoding="utf-8")
    assert keel("up", "demo", "--no-serve", *FAST, cwd=tmp_path).returncode == 0
    r = keel("up", "demo3", "--docs", "mydocs", "--no-serve", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "workflow 'demo3', collection 'demo3-handbook'" in r.stdout
    assert keel("context", "add", "handbook", "./handbook", *FAST, cwd=tmp_path).returncode == 0

    def documents(collection: str) -> int:
        r = keel("context", "stats", collection, "--json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["documents"]

    assert (documents("demo-handbook"), documents("demo3-handbook"), documents("handbook")) == (2, 1, 1)
    listed = keel("workflows", "list", cwd=tmp_path).stdout
    assert "demo " in listed and "demo3" in listed and "knowledge-assistant" not in listed
    # A folder of the same name elsewhere gets the next free names, printed.
    (tmp_path / "other").mkdir()
    r = keel("up", "demo", "--no-serve", *FAST, cwd=tmp_path / "other")
    assert r.returncode == 0, r.stderr
    assert "workflow 'demo-2', collection 'demo-2-handbook'" in r.stdout
    assert "published workflow demo-2 v1" in r.stdout


def test_up_model_local_path_is_made_absolute_and_checked(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "x.gguf").write_bytes(b"GGUF")
    r = keel("up", "demo", "--no-serve", "--model", "local:./models/x.gguf", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    wanted = f"local:{tmp_path / 'models' / 'x.gguf'}"
    assert tomllib.loads((tmp_path / "demo" / "keel.toml").read_text())["models"] == {"kb-answer": wanted}
    r = keel("up", "demo4", "--no-serve", "--model", "local:./nope.gguf", *FAST, cwd=tmp_path)
    assert_clean_failure(r, f"--model local:./nope.gguf: no model file at {tmp_path / 'nope.gguf'}")
    assert ".gguf" in r.stderr.split("fix: ", 1)[1]
    assert not (tmp_path / "demo4").exists()  # nothing written


def test_up_hints_name_the_folder_you_ran_it_from(tmp_path: Path) -> None:
    r = keel("up", "demo", "--no-serve", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # From tmp_path, `keel up --model ...` would target tmp_path itself (not a project).
    assert "or keel up demo --model ollama:llama3.2" in r.stdout
    assert "start it with `cd " in r.stdout


def test_up_on_a_taken_port_says_so_before_saying_it_is_up(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        r = keel("up", "demo", "--port", str(port), *FAST, cwd=tmp_path)
        served = keel("serve", "--port", str(port), cwd=tmp_path)  # keel serve checks the same way
    assert_clean_failure(served, f"port {port} on 127.0.0.1 is taken")
    assert "keel serve --port 0" in served.stderr
    assert_clean_failure(r, f"port {port} on 127.0.0.1 is taken")
    assert "keel up demo --port 0" in r.stderr
    assert "Keel is up" not in r.stdout
    assert not (tmp_path / "demo").exists()  # found out before creating and ingesting anything


def test_the_offline_default_answers_the_handbook_eval(tmp_path: Path) -> None:
    """Issue 19's goal: with no key, the demo's default answerer gets at least 80% of the
    handbook's 30 questions right with a citation into the right document (the template's own
    eval, run by `keel eval` over the published workflow; the local MiniLM embedder, as a user
    gets it)."""
    r = keel("up", "demo", "--no-serve", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = keel("eval", "run", "evals/handbook.yaml", "--json", cwd=tmp_path / "demo")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    [target] = summary["targets"]
    assert target["target"] == "demo@1" and target["items"] == 30 and target["errored"] == 0, target
    assert target["passed"] >= 24, target  # >= 80%, words and citation both right
