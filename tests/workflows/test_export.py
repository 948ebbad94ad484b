"""`keel workflows export NAME --python`: the script builds the same graph and gives the same output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from keel.workflows import Runs, arun, publish
from tests.workflows.test_cli import REPO, keel

FLOW = """
name: export-me
description: every kind of simple node, and an agent
nodes:
  - {id: start, type: start, state: {n: 0, seen: []}}
  - {id: note, type: note, text: "a comment survives the trip"}
  - {id: loop, type: while, condition: "state.n < 2", max_iterations: 5}
  - {id: inc, type: set_state, assign: {n: "state.n + 1", seen: "state.seen + [input_as_text]"}}
  - id: bot
    type: agent
    model: scripted:echo
    instructions: "Repeat: {{ input_as_text }}"
    input: "'say ' + input_as_text"
    temperature: 0
  - id: check
    type: guardrails
    checks: [pii, {type: moderation, blocklist: [forbidden]}]
  - id: route
    type: if_else
    branches:
      - {name: long, condition: "size(input.output_text) > 10"}
  - id: shape
    type: transform
    fields: {text: "nodes.bot.output_text", n: "state.n", seen: "state.seen", kind: "'long'"}
  - {id: short, type: end, output: "'short'"}
  - {id: done, type: end}
  - {id: blocked, type: end, output: "input.output_parsed.failed"}
edges:
  - {from: start, to: loop}
  - {from: loop, port: body, to: inc}
  - {from: inc, to: loop}
  - {from: loop, to: bot}
  - {from: bot, to: check}
  - {from: check, port: pass, to: route}
  - {from: check, port: fail, to: blocked}
  - {from: route, port: long, to: shape}
  - {from: route, port: else, to: short}
  - {from: shape, to: done}
"""


async def test_exported_script_runs_the_same_graph(spec_file, store, keel_home, tmp_path) -> None:
    path = spec_file(FLOW)
    version = publish(path, store=store)
    expected = await arun("export-me", "hello world", store=store)
    blocked = await arun("export-me", "forbidden words", store=store)
    assert expected.output == {"text": "say hello world", "n": 2, "seen": ["hello world", "hello world"],
                               "kind": "long"}
    assert blocked.output == ["moderation"]

    script = tmp_path / "export_me.py"
    r = keel("workflows", "export", "export-me", "--python", "-o", str(script))
    assert r.returncode == 0, r.stderr
    source = script.read_text()
    assert "AgentNode(" in source and "WorkflowSpec(" in source and "model='scripted:echo'" in source
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for text, want in (("hello world", expected.output), ("forbidden words", blocked.output)):
        # what `keel run` prints ...
        r = keel("run", "export-me", "--input", text, "--json")
        assert r.returncode == 0, r.stderr
        by_cli = json.loads(r.stdout)
        assert by_cli["status"] == "succeeded" and by_cli["output"] == want
        # ... is what the exported script prints
        r = subprocess.run([sys.executable, str(script), "--input", text, "--json"], capture_output=True,
                           text=True, timeout=120, env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["status"] == "succeeded" and doc["output"] == by_cli["output"]
        assert doc["run_id"] != by_cli["run_id"]
        # the same graph: publishing it from Python kept the version
        assert Runs(store).get(doc["run_id"]).version == version.version
        assert [s.node_id for s in Runs(store).steps(doc["run_id"])] == \
            [s.node_id for s in Runs(store).steps(by_cli["run_id"])]


def test_export_needs_a_format_and_a_published_name() -> None:
    r = keel("workflows", "export", "nope", "--python")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    r = keel("workflows", "export", "nope")
    assert "--python" in r.stderr and "Traceback" not in r.stderr
