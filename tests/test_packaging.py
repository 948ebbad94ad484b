"""What the wheel and the sdist carry: the canvas's built bundle, never its sources' node_modules
(53 MB of development tools), and never the canvas sources in the wheel (issue 16). Built with the
project's real build backend (hatchling) from this checkout into a temporary folder."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CANVAS = "keel/operate/ui/static/canvas/"


def _builder(kind: str):  # hatchling's WheelBuilder or SdistBuilder
    pytest.importorskip("hatchling", reason="the packaging tests need hatchling (the dev extra)")
    if kind == "wheel":
        from hatchling.builders.wheel import WheelBuilder

        return WheelBuilder(str(ROOT))
    from hatchling.builders.sdist import SdistBuilder

    return SdistBuilder(str(ROOT))


def test_the_wheel_ships_the_built_canvas_and_not_its_sources(tmp_path: Path) -> None:
    wheel = Path(next(_builder("wheel").build(directory=str(tmp_path), versions=["standard"])))
    names = zipfile.ZipFile(wheel).namelist()
    assert f"{CANVAS}canvas.js" in names and f"{CANVAS}canvas.css" in names
    assert "keel/operate/ui/static/js/workflows.js" in names  # the page that imports the bundle
    assert {f"keel/workflows/widget_gallery/{n}.widget" for n in ("card", "list", "form", "table")} <= set(names)
    leaked = [n for n in names if "canvas-src" in n or "node_modules" in n]
    assert not leaked, f"{len(leaked)} development files in the wheel, e.g. {leaked[:3]}"
    assert wheel.stat().st_size < 20_000_000


def test_the_sdist_keeps_the_canvas_sources_without_node_modules(tmp_path: Path) -> None:
    if not (ROOT / "src/keel/operate/ui/canvas-src/package.json").exists():
        pytest.skip("no canvas sources in this checkout")
    sdist = Path(next(_builder("sdist").build(directory=str(tmp_path), versions=["standard"])))
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert any(n.endswith("src/keel/operate/ui/canvas-src/package-lock.json") for n in names)
    assert any(n.endswith("src/keel/operate/ui/static/canvas/canvas.js") for n in names)
    leaked = [n for n in names if "/node_modules/" in n]
    assert not leaked, f"{len(leaked)} node_modules files in the sdist, e.g. {leaked[:3]}"
