"""The template gallery (issue 19): every `keel init` template rendered in the web UI, in headless
chromium against a real server — a card per template with its graph drawn from its spec, and a
page per template with the command, models, evals, what to ingest and the README."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("playwright.sync_api", reason="browser tests need the `playwright` package (the dev extra)")
from playwright.sync_api import Page, expect

from keel.workflows.loader import load_spec
from keel.workflows.templates import TEMPLATES, template_dir


def _nodes(name: str) -> list[str]:
    return [n.id for n in load_spec(template_dir(name) / "workflow.yaml").spec.nodes if n.type != "note"]


def test_the_api_lists_every_template_with_its_graph(server) -> None:
    r = httpx.get(f"{server.url}/ui/api/templates", timeout=30)
    assert r.status_code == 200, r.text
    got = {t["name"]: t for t in r.json()["templates"]}
    assert list(got) == list(TEMPLATES)
    for name, t in got.items():
        assert t["description"] == TEMPLATES[name] and t["command"] == f"keel init --template {name}"
        assert [n["id"] for n in t["nodes"]] == _nodes(name)
        assert t["evals"] and all(e["items"] >= 8 for e in t["evals"]), name
        assert "workflow.yaml" in t["files"] and "keel.toml" in t["files"] and t["readme"].startswith("# ")
    assert got["code-review"]["collections"] == {"repo": "repo"}
    assert got["structured-data-qa"]["models"] == {"data-analyst": "openai:gpt-4.1-mini"}


def test_the_gallery_shows_a_card_per_template_and_a_page_each(page: Page) -> None:
    page.goto("/ui#/templates")
    cards = page.locator("article.tpl-card")
    expect(cards).to_have_count(len(TEMPLATES))
    for name in TEMPLATES:
        card = page.locator(f'article.tpl-card[data-template="{name}"]')
        expect(card.locator("code.tpl-command")).to_have_text(f"keel init --template {name}")
        expect(card.locator("g.tpl-node")).to_have_count(len(_nodes(name)))  # the spec's graph, every node
    expect(page.get_by_role("link", name="Templates")).to_have_attribute("aria-current", "page")
    page.get_by_role("link", name="code-review", exact=True).click()
    expect(page.get_by_role("heading", name="code-review", level=1)).to_be_visible()
    expect(page.locator("svg.tpl-graph g.tpl-node")).to_have_count(len(_nodes("code-review")))
    expect(page.get_by_text("keel context add repo ./repo", exact=True)).to_be_visible()
    expect(page.get_by_role("listitem").filter(has_text="evals/reviews.yaml · 8 items")).to_be_visible()
    page.locator("details.tpl-readme summary").click()
    expect(page.locator("details.tpl-readme pre")).to_contain_text("Reviews a diff against the intent")
    page.goto("/ui#/templates/chatbot")  # a name that does not exist: says so and lists the names
    expect(page.get_by_text("No template named chatbot.")).to_be_visible()
    expect(page.locator(".empty")).to_contain_text("knowledge-assistant")
