"""Take the template gallery's screenshots in docs/images/ (docs/templates.md shows them).

    python scripts/template_screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]

Starts a real `keel serve` (a subprocess on a free port of 127.0.0.1, open mode, a fresh
KEEL_HOME in a temporary folder), drives headless chromium with Playwright to the gallery and
to each template's page, and writes templates-gallery.png and template-NAME.png for every
template `keel init --template` knows.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--force-device-scale-factor=1", "--hide-scrollbars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    opts = parser.parse_args()
    opts.out.mkdir(parents=True, exist_ok=True)
    from keel.workflows.templates import TEMPLATES

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "KEEL_HOME": str(Path(tmp) / "home")}
        server = subprocess.Popen([sys.executable, "-m", "keel", "serve", "--port", str(port)], cwd=tmp, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("error: keel serve did not start")
                time.sleep(0.2)
            shoot(url, opts.out, opts.chromium, list(TEMPLATES))
        finally:
            server.terminate()
            server.wait(timeout=20)


def shoot(url: str, out: Path, chromium: str, names: list[str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(base_url=url, viewport={"width": 1280, "height": 820})
        page.set_default_timeout(20_000)
        expect.set_options(timeout=20_000)
        page.goto("/ui#/templates")
        expect(page.locator("article.tpl-card")).to_have_count(len(names))
        page.screenshot(path=out / "templates-gallery.png", full_page=True)
        print(f"wrote {out / 'templates-gallery.png'}")
        for name in names:
            page.goto(f"/ui#/templates/{name}")
            expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
            page.mouse.move(0, 0)
            page.screenshot(path=out / f"template-{name}.png")
            print(f"wrote {out / f'template-{name}.png'}")
        browser.close()


if __name__ == "__main__":
    main()
