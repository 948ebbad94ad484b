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

from tests.operate.conftest import free_port

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
    assert "created . from the knowledge-assistant template" in out
    assert "ingesting 2 files from" in out and "into collection 'handbook'" in out
    assert "2 indexed" in out and "'handbook' holds 2 documents" in out
    assert "published workflow knowledge-assistant v1" in out
    # No key in this environment: one line says what works and how to add a model.
    assert "export OPENAI_API_KEY=... or keel up --model ollama:llama3.2" in out
    assert {p.name for p in project.iterdir()} >= {"workflow.yaml", "keel.toml", "docs", "README.md"}
    assert tomllib.loads((project / "keel.toml").read_text())["chatkit"] == {"workflow": "knowledge-assistant"}

    # What needs no model works now: search with citations, from the same folder.
    found = json.loads(keel("context", "search", "handbook", "holiday days", "--json", cwd=project).stdout)
    best = found["hits"][0]
    assert best["source"] == "docs/time-off.md" and best["anchor"] == "holidays" and "27 days" in best["text"]
    assert "start it with `keel serve`" in out


def test_up_again_reuses_the_project_and_keeps_the_version(tmp_path: Path) -> None:
    assert keel("up", str(tmp_path / "kb"), "--no-serve", *FAST).returncode == 0
    r = keel("up", str(tmp_path / "kb"), "--no-serve", *FAST)
    assert r.returncode == 0, r.stderr
    assert "using the Keel project in" in r.stdout
    assert "0 indexed" in r.stdout and "2 unchanged" in r.stdout
    assert "published workflow knowledge-assistant v1" in r.stdout
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


def test_up_serves_the_assistant_and_without_a_model_the_chat_says_how_to_add_one(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    proc, url = _start_up(tmp_path / "kb", log)
    try:
        printed = log.read_text()
        assert f"UI       {url}/ui" in printed and f"API      {url}/v1" in printed
        assert f"ChatKit  {url}/chatkit" in printed and f"MCP      {url}/mcp/" in printed
        names = [w["name"] for w in httpx.get(f"{url}/v1/workflows", timeout=30).json()["data"]]
        assert names == ["knowledge-assistant"]
        said = _chat(url, "How many holiday days do I get?")
        assert "\n" not in said and "export OPENAI_API_KEY" in said and "--model ollama:llama3.2" in said
        # The run that got that far is traced: its File search found the time-off document.
        runs = httpx.get(f"{url}/v1/runs", timeout=30).json()["data"]
        trace = httpx.get(f"{url}/v1/runs/{runs[0]['id']}/trace", timeout=30).json()
        assert "time-off.md" in json.dumps(trace) or "handbook" in json.dumps(trace)
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
    assert f"ingesting 1 files from {mine} into collection 'handbook'" in r.stdout
    found = json.loads(keel("context", "search", "handbook", "where do I park", "--json", cwd=tmp_path / "kb").stdout)
    assert found["hits"][0]["source"].endswith("parking.md") and "garage B" in found["hits"][0]["text"]
