"""A published version keeps the model aliases it was published with: a run uses them wherever
the process runs (issue 14: a workflow published from one folder failed in a server started in
another, whose keel.toml did not define its aliases)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.testing import scripted
from keel.workflows import Versions, arun, load, publish

SPEC = """
name: asker
description: asks its model
nodes:
  - {id: start, type: start}
  - {id: bot, type: agent, model: helper, instructions: Answer.}
  - {id: done, type: end}
edges:
  - {from: start, to: bot}
  - {from: bot, to: done}
"""


def project(folder: Path, models: str) -> Path:
    folder.mkdir()
    (folder / "keel.toml").write_text(f"[models]\n{models}\n", encoding="utf-8")
    (folder / "workflow.yaml").write_text(SPEC, encoding="utf-8")
    return folder


async def test_a_version_runs_with_the_aliases_it_was_published_with(tmp_path: Path, store,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    a = project(tmp_path / "a", 'helper = "scripted:alpha"')
    b = project(tmp_path / "b", 'helper = "scripted:beta"')
    monkeypatch.chdir(a)
    v1 = publish(a / "workflow.yaml", store=store)
    assert v1.models == {"helper": "scripted:alpha"}
    assert publish(a / "workflow.yaml", store=store).version == 1  # same spec, same models

    monkeypatch.chdir(b)  # a server running in another project's folder
    with scripted("alpha") as alpha, scripted("beta") as beta:
        alpha.reply("from alpha")
        result = await arun("asker", "hi", store=store)
        assert (result.status, result.output) == ("succeeded", "from alpha")
        assert not beta.calls

        # Published again from b: other models, so a new version; version 1 keeps its own.
        v2 = publish(b / "workflow.yaml", store=store)
        assert (v2.version, v2.models) == (2, {"helper": "scripted:beta"})
        beta.reply("from beta")
        alpha.reply("alpha again")
        assert (await arun("asker", "hi", store=store)).output == "from beta"
        assert (await arun("asker", "hi", version=1, store=store)).output == "alpha again"
    # Read back from the store (not the cache of the publishing object).
    assert Versions(store).get("asker", 1).models == {"helper": "scripted:alpha"}


async def test_a_version_published_before_keel_stored_models_resolves_where_it_runs(
        tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch) -> None:
    a = project(tmp_path / "a", "")
    assert Versions(store).publish(load(a / "workflow.yaml"), models={})[0].models == {}  # as before 0303
    b = project(tmp_path / "b", 'helper = "scripted:beta"')
    monkeypatch.chdir(b)
    with scripted("beta") as beta:
        beta.reply("from beta")
        assert (await arun("asker", "hi", store=store)).output == "from beta"


def test_relative_local_paths_are_stored_absolute(tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch) -> None:
    a = project(tmp_path / "a", 'helper = "local:./models/tiny.gguf"')
    monkeypatch.chdir(a)
    assert publish(a / "workflow.yaml", store=store).models == {"helper": f"local:{a / 'models' / 'tiny.gguf'}"}
