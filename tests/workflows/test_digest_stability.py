"""A spec published by an earlier Keel keeps its digest, so publishing it again is not a new version.

The digests below were computed by the Keel of commit 36a4982 (before issue 19's Agent node
fields and limits) from the specs in ``pinned_specs/``. A new spec field must be left out of
the digest while unset (``keel.workflows.versions._LATER_NODE_FIELDS``), or these fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.store import open_store
from keel.workflows.loader import parse_spec
from keel.workflows.versions import Versions, spec_digest

PINNED = Path(__file__).parent / "pinned_specs"

DIGESTS = {
    "customer-service": "a7dcfb8dca784027324f1e21733bb4d9a5ea80cc12ba2a06cd8ed345ed8d5f58",
    "data-enrichment": "706789bed5a037c484ed366e586cf99cb510f572ff6e71ebc80c41b67822da80",
    "knowledge-assistant": "d1cc396a651165417c173c3541a01e3c59b820ba79a1ab2e6c333c4e1f538640",
    "with-limits": "fef92ea77f8e2660dfe0a97a00633b098848490148bc85eb13ae0ecd4885c215",
}


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_a_spec_published_by_an_earlier_keel_keeps_its_digest(name: str) -> None:
    text = (PINNED / f"{name}.yaml").read_text(encoding="utf-8")
    assert spec_digest(parse_spec(text, file=f"{name}.yaml").spec) == DIGESTS[name]


def test_setting_a_later_field_does_change_the_digest() -> None:
    text = (PINNED / "with-limits.yaml").read_text(encoding="utf-8")
    changed = text.replace("  max_steps: 50\n", "  max_steps: 50\n  max_agent_turns: 10\n")
    assert changed != text
    assert spec_digest(parse_spec(changed, file="x.yaml").spec) != DIGESTS["with-limits"]


def test_publishing_the_same_spec_again_is_the_same_version(tmp_path: Path) -> None:
    text = (PINNED / "knowledge-assistant.yaml").read_text(encoding="utf-8")
    store = open_store(tmp_path)
    versions = Versions(store)
    first, created = versions.publish(parse_spec(text, file="a.yaml"), models={})
    again, created_again = versions.publish(parse_spec(text, file="a.yaml"), models={})
    assert created and not created_again and again.version == first.version
    assert first.digest == DIGESTS["knowledge-assistant"]
