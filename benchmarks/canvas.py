"""The workflow canvas in headless chromium (issue 16): how fast a graph opens, pans, opens a
node's inspector and saves, at 50, 500 and 2,000 nodes; and the size of the canvas bundle.

    python benchmarks/canvas.py              # 3 rounds per size (about 2 minutes on 2 cores)
    python benchmarks/canvas.py --rounds 1   # a smoke run

Each graph is a Start node, a chain of Agent / Transform / If-else nodes (an If/else every tenth,
whose else port skips one node) and an End node, with a saved ``layout`` (a grid), served by a real
server on 127.0.0.1 from a temporary ``KEEL_HOME`` that is deleted afterwards. Measured in the page
(``performance.now()``):

- **open**: from setting the hash ``#/workflows/NAME`` (the list page loaded, the bundle cached
  after the first round) to the nodes drawn and two frames painted: the server's document (the
  spec checked as `keel workflows validate` does), the layout, React Flow's first render;
- **deep link**: the same, from typing ``/ui/#/workflows/NAME`` into a new tab (navigation start):
  the page, the bundle and the document, nothing warmed by the list page;
- **pan**: frames painted per second while the mouse drags the pane 60 steps across the view
  (chromium's headless frame clock caps it at 60);
- **fit**: from pressing F (fit to view) to every node drawn and two frames painted;
- **inspector**: from a click on a node (the view fitted and settled) to its inspector's form on screen;
- **save**: from Ctrl+S after an edit to "Saved draft revision N" (a PUT that applies the spec
  onto the YAML text and checks it).

Medians over the rounds. Goals (issue 16): 500 nodes open in <= 1 s, pan at >= 30 frames/s,
open a node in <= 100 ms; the bundle <= 600 KB gzipped.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def graph(n: int) -> str:
    """A workflow of ``n`` nodes with a grid layout, as YAML."""
    lines = [f"name: bench-{n}", "nodes:", "  - {id: start, type: start}"]
    ids = ["start"]
    for i in range(1, n - 1):
        if i % 10 == 0:
            lines.append(f"  - {{id: n{i}, type: if_else, branches: [{{name: go, condition: 'size(input_as_text) > {i}'}}]}}")
        elif i % 2:
            lines.append(f"  - {{id: n{i}, type: agent, model: 'scripted:bench', instructions: Step {i}.}}")
        else:
            lines.append(f"  - {{id: n{i}, type: transform, expression: 'input.output_text'}}")
        ids.append(f"n{i}")
    lines.append("  - {id: done, type: end}")
    ids.append("done")
    lines.append("edges:")
    for i, (a, b) in enumerate(itertools.pairwise(ids)):
        if a.startswith("n") and int(a[1:]) % 10 == 0:
            lines.append(f"  - {{from: {a}, port: go, to: {b}}}")
            lines.append(f"  - {{from: {a}, port: else, to: {ids[min(i + 2, len(ids) - 1)]}}}")
        else:
            lines.append(f"  - {{from: {a}, to: {b}}}")
    lines.append("layout:\n  nodes:")
    for i, node_id in enumerate(ids):
        lines.append(f"    {node_id}: {{x: {(i % 25) * 260}, y: {(i // 25) * 140}}}")
    return "\n".join(lines) + "\n"


def deep_link(page, name: str) -> float:
    """Milliseconds from navigation start to the graph drawn, opening the canvas's address."""
    page.goto(f"/ui/#/workflows/{name}")
    page.wait_for_function("() => document.querySelector('[data-testid=problem-count]') && "
                           "document.querySelectorAll('.react-flow__node').length > 0", timeout=120_000)
    return page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => "
                         "r(performance.now()))))")


def measure(page, name: str, node: str, count: int) -> dict[str, float]:
    page.goto("/ui/#/workflows")
    page.wait_for_selector("#workflows-list table, #workflows-list .empty")
    page.evaluate("(n) => { window.__t0 = performance.now(); location.hash = '#/workflows/' + n; }", name)
    page.wait_for_function("() => document.querySelector('[data-testid=problem-count]') && "
                           "document.querySelectorAll('.react-flow__node').length > 0", timeout=120_000)
    open_ms = page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => "
                            "r(performance.now() - window.__t0))))")
    time.sleep(0.5)  # let the first fit settle
    pane = page.locator(".react-flow__pane").bounding_box()
    page.evaluate("() => { window.__frames = 0; const tick = () => { window.__frames++; if (window.__pan) "
                  "requestAnimationFrame(tick); }; window.__pan = true; window.__p0 = performance.now(); "
                  "requestAnimationFrame(tick); }")
    x0, y0 = pane["x"] + pane["width"] * 0.7, pane["y"] + pane["height"] * 0.6
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(60):
        page.mouse.move(x0 - i * 6, y0 - i * 3)
    page.mouse.up()
    fps = page.evaluate("() => { window.__pan = false; return window.__frames / ((performance.now() - window.__p0) / 1000); }")
    page.evaluate("() => { window.__f0 = performance.now(); }")
    page.keyboard.press("f")  # fit: every node on screen (and drawn), then click one
    page.wait_for_function(f"() => document.querySelectorAll('.react-flow__node').length >= {count}", timeout=120_000)
    fit_ms = page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => "
                           "r(performance.now() - window.__f0))))")
    time.sleep(0.5)  # the inspector is timed from a settled view
    target = page.locator(f'.react-flow__node[data-id="{node}"]')
    target.scroll_into_view_if_needed()
    page.evaluate("() => { window.__c0 = null; document.addEventListener('pointerdown', () => { window.__c0 = "
                  "performance.now(); }, { capture: true, once: true }); }")
    target.click(force=True)
    page.wait_for_selector(f'.inspector[data-inspector-node="{node}"]')
    inspector_ms = page.evaluate("() => new Promise((r) => requestAnimationFrame(() => r(performance.now() - window.__c0)))")
    page.locator('.inspector [data-pointer="/title"] input').fill("edited")
    page.locator(".react-flow__pane").click(position={"x": 5, "y": 5})
    page.evaluate("() => { window.__s0 = performance.now(); }")
    page.keyboard.press("Control+s")
    page.wait_for_function("() => /Saved draft revision/.test(document.querySelector('.canvas-message').textContent)",
                           timeout=120_000)
    save_ms = page.evaluate("() => performance.now() - window.__s0")
    return {"open_ms": open_ms, "fps": fps, "fit_ms": fit_ms, "inspector_ms": inspector_ms, "save_ms": save_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="50,500,2000")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    from tests.ui.demo import Server, make_app

    from keel.store import open_store
    from keel.workflows.drafts import Drafts

    static = ROOT / "src" / "keel" / "operate" / "ui" / "static" / "canvas"
    js, css = (static / "canvas.js").read_bytes(), (static / "canvas.css").read_bytes()
    print(f"bundle: canvas.js {len(js) / 1000:.0f} kB ({len(gzip.compress(js, 9)) / 1000:.0f} kB gzipped), "
          f"canvas.css {len(css) / 1000:.0f} kB ({len(gzip.compress(css, 9)) / 1000:.0f} kB gzipped)")
    print(f"machine: {platform.machine()}, {platform.system()} {platform.release()}, python {platform.python_version()}, "
          f"{__import__('os').cpu_count()} cores; date {time.strftime('%Y-%m-%d')}")
    home = Path(tempfile.mkdtemp(prefix="keel-canvas-bench-"))
    store = open_store(home)
    sizes = [int(s) for s in args.sizes.split(",")]
    try:
        for n in sizes:
            Drafts(store).save(f"bench-{n}", graph(n), base_revision=0, by="bench")
        server = Server(make_app(store)).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                print(f"chromium {browser.version}")
                print("| nodes | open (ms) | deep link (ms) | pan (frames/s) | fit (ms) | inspector (ms) | save (ms) |")
                print("|---:|---:|---:|---:|---:|---:|---:|")
                for n in sizes:
                    rows = []
                    for _ in range(args.rounds):
                        page = browser.new_page(base_url=server.url, viewport={"width": 1400, "height": 900})
                        row = measure(page, f"bench-{n}", f"n{(n // 2) | 1}", n)
                        page.close()
                        page = browser.new_page(base_url=server.url, viewport={"width": 1400, "height": 900})
                        row["deep_ms"] = deep_link(page, f"bench-{n}")
                        page.close()
                        rows.append(row)
                    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                    print(f"| {n:,} | {med['open_ms']:.0f} | {med['deep_ms']:.0f} | {med['fps']:.0f} | {med['fit_ms']:.0f} | "
                          f"{med['inspector_ms']:.0f} | "
                          f"{med['save_ms']:.0f} |", flush=True)
                browser.close()
        finally:
            server.stop()
    finally:
        store.close()
        shutil.rmtree(home, ignore_errors=True)  # scratch stores are cleaned up (CONTRIBUTING rule 21)


if __name__ == "__main__":
    main()
