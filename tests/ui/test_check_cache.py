"""The canvas's check cache (keel.operate.ui.check_cache): a text checked once is not checked again
while the settings and the text stay the same, for at most ``ttl`` seconds, and at most ``size``
texts are kept; through the real canvas API, a reopened workflow reuses its check and a changed
keel.toml is seen at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from keel.operate.ui.check_cache import CheckCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_answers_are_reused_by_text_until_they_expire_and_the_cache_is_bounded() -> None:
    clock, calls = Clock(), []
    cache = CheckCache(size=2, ttl=30, clock=clock)

    def check(text: str, file: str = "f") -> Any:
        return cache.get(text, file, lambda: calls.append(text) or f"checked {text}")

    assert check("a") == "checked a" and check("a") == "checked a" and calls == ["a"]
    check("a", file="g")  # another file name: its own answer (problems name the file)
    assert calls == ["a", "a"]
    clock.now = 31
    check("a")
    assert calls == ["a", "a", "a"]  # expired
    check("b"), check("c")
    assert len(cache) == 2
    check("a", file="g")  # dropped as the least recently used
    assert calls[-1] == "a"


def test_a_changed_setting_is_a_new_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    calls: list[int] = []
    cache = CheckCache()
    cache.get("t", "f", lambda: calls.append(1))
    monkeypatch.setenv("KEEL_DEFAULT_MODEL", "scripted:other")
    cache.get("t", "f", lambda: calls.append(2))
    (tmp_path / "keel.toml").write_text("[models]\nfast = 'scripted:fast'\n")
    cache.get("t", "f", lambda: calls.append(3))
    cache.get("t", "f", lambda: calls.append(4))
    assert calls == [1, 2, 3]


def test_the_canvas_api_reuses_the_check_of_a_reopened_workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from keel.operate.ui import canvas
    from keel.store import open_store
    from keel.workflows.drafts import Drafts
    from tests.ui.demo import Server, make_app

    validate = importlib.import_module("keel.workflows.validate")  # (the package's `validate` is a function)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(canvas, "CHECKS", CheckCache())
    compiled: list[str] = []
    real = validate.compile_workflow
    monkeypatch.setattr(validate, "compile_workflow", lambda spec, *a, **k: compiled.append("cached") or real(spec, *a, **k))
    store = open_store(tmp_path / "home")
    try:
        text = ("name: cached\nnodes:\n  - {id: start, type: start}\n  - {id: bot, type: agent, model: fast, instructions: Hi.}\n"
                "  - {id: done, type: end}\nedges:\n  - {from: start, to: bot}\n  - {from: bot, to: done}\n")
        Drafts(store).save("cached", text, base_revision=0, by="test")
        server = Server(make_app(store)).start()  # a real server on 127.0.0.1
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                first = client.get("/ui/api/canvas/workflows/cached").json()
                assert first["problems"] and "fast" in first["problems"][0]["message"]  # no alias `fast` yet
                assert client.get("/ui/api/canvas/workflows/cached").json()["problems"] == first["problems"]
                assert compiled == ["cached"]  # checked once for two opens
                (tmp_path / "keel.toml").write_text("[models]\nfast = 'scripted:fast'\n")
                assert client.get("/ui/api/canvas/workflows/cached").json()["problems"] == []  # seen at once
                assert compiled == ["cached", "cached"]
        finally:
            server.stop()
    finally:
        store.close()
