"""Take the screenshots in docs/images/ of the web UI, with demo data.

    python scripts/ui_screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]

Starts the UI on a fresh store in a temporary KEEL_HOME (the demo workflows of
tests/ui/demo.py, two eval runs and an hour of seeded traffic), drives headless chromium
with Playwright through each page, and writes ui-chat.png, ui-trace.png, ui-evals.png,
ui-dashboard.png and ui-narrow.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--force-device-scale-factor=1", "--hide-scrollbars"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["KEEL_HOME"] = str(Path(tmp) / "home")
        shoot(Path(tmp), opts.out, opts.chromium)


def shoot(tmp: Path, out: Path, chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright
    from tests.ui.demo import (
        Server,
        make_app,
        publish_demo,
        queue_helper_replies,
        run_evals,
        seed_traffic,
    )

    from keel.store import open_store

    store = open_store(tmp / "home")
    publish_demo(store, tmp)
    baseline, candidate = run_evals(store, tmp)
    seed_traffic(store)
    server = Server(make_app(store)).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(base_url=server.url, viewport={"width": 1280, "height": 820})
            page.set_default_timeout(20_000)
            expect.set_options(timeout=20_000)

            queue_helper_replies()
            page.goto("/ui#/chat?workflow=order-helper")
            box = page.get_by_role("textbox", name="Message")
            box.fill("Where is my order A-1001?")
            box.press("Enter")
            expect(page.locator(".msg.assistant .badge")).to_have_text("succeeded")
            page.locator("details.tool summary").click()
            page.mouse.move(0, 0)
            page.screenshot(path=out / "ui-chat.png")

            page.goto("/ui#/chat?workflow=refund")
            box = page.get_by_role("textbox", name="Message")
            box.fill("Please refund order A-1001, it arrived broken.")
            box.press("Enter")
            page.get_by_role("button", name="Approve").click()
            expect(page.locator(".msg.assistant .badge")).to_have_text("succeeded")
            page.get_by_role("link", name="Open trace").click()
            page.get_by_role("treeitem").filter(has_text="node ask").click()
            page.screenshot(path=out / "ui-trace.png")

            page.goto(f"/ui#/evals/{candidate}?baseline={baseline}")
            expect(page.locator("figure.chart canvas")).to_have_count(4)
            page.wait_for_timeout(300)
            page.screenshot(path=out / "ui-evals.png", full_page=True)

            page.goto("/ui#/dashboard?range=1h")
            expect(page.locator("figure.chart canvas")).to_have_count(8)
            page.wait_for_timeout(300)
            page.screenshot(path=out / "ui-dashboard.png", full_page=True)

            narrow = browser.new_page(base_url=server.url, viewport={"width": 390, "height": 844})
            narrow.set_default_timeout(20_000)
            narrow.goto("/ui#/chat?workflow=refund")
            box = narrow.get_by_role("textbox", name="Message")
            box.fill("Please refund order A-1001")
            box.press("Enter")
            expect(narrow.get_by_role("button", name="Approve")).to_be_visible()
            narrow.screenshot(path=out / "ui-narrow.png")
            browser.close()
    finally:
        server.stop()
        store.close()
    for name in ("ui-chat", "ui-trace", "ui-evals", "ui-dashboard", "ui-narrow"):
        print(out / f"{name}.png")


if __name__ == "__main__":
    main()
