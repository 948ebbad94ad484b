"""Every template's eval passes on the scripted model (issue 19): `keel init --template NAME` into a
temporary folder, validate, ingest its sample docs where it searches them, publish, run each of its
eval files with the model aliases pointed at a scripted model that answers as the template
expects (tests/workflows/template_scripts.py), and every item passes every grader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keel.evals import iter_results, load_eval, run_eval
from keel.testing import scripted
from keel.workflows import publish, validate
from keel.workflows.loader import load_spec
from keel.workflows.templates import SAMPLE_COLLECTIONS, TEMPLATES, create_project, template_dir
from tests.workflows.template_scripts import RESPONDERS, dataset

AGENT_BUILDER = {"customer-service", "data-enrichment", "knowledge-assistant", "structured-data-qa",
                 "document-comparison", "planning-helper"}


def test_every_agent_builder_template_and_the_code_reviewer_ship() -> None:
    assert set(TEMPLATES) >= AGENT_BUILDER | {"code-review"}
    assert set(RESPONDERS) == set(TEMPLATES)  # a new template needs its scripted answers here


def test_every_template_has_an_eval_over_its_own_workflow() -> None:
    for name in TEMPLATES:
        evals = sorted((template_dir(name) / "evals").glob("*.yaml"))
        assert evals, f"{name} has no evals/*.yaml"
        for path in evals:
            spec = load_eval(path)
            assert [t.workflow for t in spec.targets] == [f"{name}@1"], path
            assert len(dataset(path)) >= 8, path


@pytest.mark.parametrize("name", list(TEMPLATES))
async def test_template_eval_passes_on_the_scripted_model(name: str, monkeypatch, tmp_path: Path, store) -> None:
    project = create_project(name, tmp_path / name)
    monkeypatch.chdir(project)  # its keel.toml names the models; its tools import from here
    validate("workflow.yaml")
    aliases = {n.model for n in load_spec("workflow.yaml").spec.nodes if n.type == "agent"}
    monkeypatch.setenv("KEEL_MODELS", json.dumps({a: f"scripted:tpl-{name}" for a in aliases}))
    if name in SAMPLE_COLLECTIONS:
        pytest.importorskip("keel.context")
        from keel.context import Collection

        for collection, folder in SAMPLE_COLLECTIONS[name].items():
            with Collection.open(collection, embedder="test-hashing") as col:
                col.add([project / folder])
    version = publish("workflow.yaml", store=store)
    assert version.version == 1
    for path in sorted(Path("evals").glob("*.yaml")):
        items = dataset(path)
        with scripted(f"tpl-{name}") as model:
            model.default = RESPONDERS[name](items)
            summary = await run_eval(store, load_eval(path))
        [target] = summary.targets
        failed = [(r.idx, r.error, (r.sample or {}).get("output_json"), [g for g in r.grades if not g.get("passed")])
                  for r in iter_results(store, summary.run_id) if not r.passed]
        assert target.items == len(items) and target.errored == 0 and target.passed == len(items), failed
        assert model.call_count >= len(items)  # every item reached the model (none short-circuited)
