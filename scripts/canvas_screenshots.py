"""Screenshots of the workflow canvas for docs/ui.md (docs/images/canvas*.png): the
customer-service template on scripted models, its inspector with a CEL problem, a preview run
waiting for the refund's approval, and the diff of two versions. Run from the repository root:

    python scripts/canvas_screenshots.py

Uses a temporary KEEL_HOME (deleted afterwards), a real server on 127.0.0.1 and Debian's chromium.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IMAGES = ROOT / "docs" / "images"


def main() -> None:
    from playwright.sync_api import expect, sync_playwright
    from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.ui.demo import Server, make_app
    from tests.ui.test_canvas import _built_spec

    from keel.store import open_store
    from keel.testing import get_script
    from keel.workflows.drafts import Drafts

    home = Path(tempfile.mkdtemp(prefix="keel-canvas-shots-"))
    store = open_store(home)
    try:
        spec = _built_spec()
        drafts = Drafts(store)
        drafts.save("customer-service", json.dumps(spec), base_revision=0, by="docs")
        drafts.publish("customer-service", revision=1)
        spec["nodes"][3]["instructions"] += " Be concise."
        spec["nodes"].append({"id": "audit", "type": "set_state", "assign": {"last_intent": "input.output_parsed.intent"}})
        spec["edges"] = [e for e in spec["edges"] if e["from"] != "triage"] + [{"from": "triage", "to": "audit"},
                                                                                {"from": "audit", "to": "route"}]
        drafts.save("customer-service", json.dumps(spec), base_revision=1, by="docs")
        drafts.publish("customer-service", revision=2)
        server = Server(make_app(store)).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(base_url=server.url, viewport={"width": 1440, "height": 860})
                page.goto("/ui/#/workflows/customer-service")
                expect(page.locator('[data-node-id="triage"]')).to_be_visible()
                page.wait_for_timeout(600)
                page.screenshot(path=str(IMAGES / "canvas.png"))
                page.locator('[data-node-id="route"]').click()
                box = page.locator('.inspector [data-pointer="/branches/1/condition"] textarea')
                box.fill('input.output_parsed.intent == "order_status" &&')
                expect(page.locator('[data-node-id="route"] .kn-problems')).to_be_visible()
                page.screenshot(path=str(IMAGES / "canvas-inspector.png"))
                box.fill('input.output_parsed.intent == "order_status"')
                expect(page.locator('[data-node-id="route"] .kn-problems')).to_have_count(0)
                page.get_by_role("tab", name="Versions").click()
                page.locator("#diff-a").select_option("1")
                page.locator("#diff-b").select_option("2")
                page.get_by_role("button", name="Compare").click()
                expect(page.locator(".diff-summary")).to_be_visible()
                page.screenshot(path=str(IMAGES / "canvas-diff.png"))
                page.get_by_role("button", name="Clear diff").click()
                get_script("cs-triage").reply(json.dumps({"intent": "refund", "order_id": 1001,
                                                          "reason": "The parcel arrived broken."}))
                page.get_by_role("tab", name="Preview").click()
                page.get_by_label("Input").fill("Please refund order 1001, it arrived broken.")
                page.get_by_role("button", name="Run draft").click()
                expect(page.get_by_role("group", name="Approval")).to_be_visible()
                page.locator('[data-node-id="triage"]').click()
                expect(page.get_by_role("region", name="Run of triage")).to_be_visible()
                page.screenshot(path=str(IMAGES / "canvas-preview.png"))
                browser.close()
        finally:
            server.stop()
    finally:
        store.close()
        shutil.rmtree(home, ignore_errors=True)
    print("wrote", ", ".join(f"docs/images/{n}.png" for n in ("canvas", "canvas-inspector", "canvas-diff", "canvas-preview")))


if __name__ == "__main__":
    main()
