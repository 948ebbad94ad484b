"""The context-rot report: an HTML page with an inline SVG plot, and the terminal table.

Self-contained like the eval report (:mod:`keel.evals.html`, whose CSS and palette it
reuses): no scripts, no network.
"""

from __future__ import annotations

from keel.context.rot import RotResult
from keel.evals.html import _CSS, _PALETTE, _e

__all__ = ["format_table", "render_html"]


def _label(context: str, distractors: bool) -> str:
    return f"{context} context, {'with' if distractors else 'no'} distractors"


def _plot(result: RotResult, colors: dict[tuple[str, bool], str]) -> str:
    """Accuracy (mean over depths) against length: one line per context kind and distractor setting."""
    import math

    w, h, left, bottom, top, right = 720, 320, 48, 40, 16, 16
    xs = result.lengths
    lo, hi = math.log(xs[0]), math.log(xs[-1])

    def x(n: int) -> float:
        return left + (0.5 if hi == lo else (math.log(n) - lo) / (hi - lo)) * (w - left - right)

    def y(a: float) -> float:
        return top + (1 - a) * (h - top - bottom)

    out = [f'<svg width="{w}" height="{h}" role="img" aria-label="accuracy against context length">']
    for a in (0, 0.25, 0.5, 0.75, 1):
        out.append(f'<line x1="{left}" y1="{y(a):.1f}" x2="{w - right}" y2="{y(a):.1f}" stroke="#e5e7eb"/>'
                   f'<text x="{left - 6}" y="{y(a) + 4:.1f}" font-size="11" text-anchor="end">{a * 100:.0f}%</text>')
    for n in xs:
        out.append(f'<text x="{x(n):.1f}" y="{h - bottom + 16}" font-size="11" text-anchor="middle">{n:,}</text>')
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 6}" font-size="12" text-anchor="middle">'
               f'context length (tokens, log scale)</text>')
    for key in result.series():
        pts = result.curve(*key)
        color = colors[key]
        dash = ' stroke-dasharray="6 4"' if key[1] else ""
        path = " ".join(f"{x(n):.1f},{y(a):.1f}" for n, a in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for n, a in pts:
            out.append(f'<circle cx="{x(n):.1f}" cy="{y(a):.1f}" r="3.5" fill="{color}">'
                       f'<title>{_e(_label(*key))}: {a * 100:.1f}% at {n:,} tokens</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _shade(a: float) -> str:
    # white (0%) to green (100%), readable text either way
    g = int(255 - a * 120)
    r = int(255 - a * 200)
    return f"rgb({r},{g + 0},{int(255 - a * 160)})"


def render_html(result: RotResult) -> str:
    """The report as one self-contained HTML document (inline SVG, no scripts, no network)."""
    colors = {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(result.series())}
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>Keel context rot: {_e(result.collection)}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>Context rot: {_e(result.collection)}</h1><div class=meta>model {_e(result.model)} · "
             f"{result.needles} needles ({_e(result.needle_source)}) · lengths counted with {_e(result.tokenizer)}"
             f" · assembled context capped at {result.assembled_tokens:,} tokens · {result.seconds:.0f} s</div>",
             "<div class=cards>"]
    for key in result.series():
        pts = result.curve(*key)
        first, last = pts[0], pts[-1]
        parts.append(f"<div class=card>{_e(_label(*key))}<b>{first[1] * 100:.0f}% → {last[1] * 100:.0f}%</b>"
                     f"{first[0]:,} → {last[0]:,} tokens</div>")
    parts.append("</div><h2>Accuracy against context length</h2>")
    legend = "".join(f"<span><i style='background:{c}'></i>{_e(_label(*k))}"
                     f"{' (dashed)' if k[1] else ''}</span>" for k, c in colors.items())
    parts.append(f"<div class=legend>{legend}</div>{_plot(result, colors)}")
    parts.append("<h2>By depth of the needle (full context)</h2><p class=meta>Share of needles answered "
                 "correctly; distracted = answered with a distractor's value.</p>")
    for with_d in dict.fromkeys(c.distractors for c in result.cells if c.context == "full"):
        parts.append(f"<h3>{'with' if with_d else 'no'} distractors</h3><table><tr><th>length</th>"
                     + "".join(f"<th>depth {d:g}</th>" for d in result.depths) + "<th>distracted</th></tr>")
        for n in result.lengths:
            row = [result.cell("full", with_d, n, d) for d in result.depths]
            cells = "".join(f"<td class=n style='background:{_shade(c.accuracy)}'>{c.accuracy * 100:.0f}%</td>"
                            if c else "<td>–</td>" for c in row)
            dist = sum(c.distracted for c in row if c)
            parts.append(f"<tr><td class=n>{n:,}</td>{cells}<td class=n>{dist}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Every cell</h2><table><tr><th>context</th><th>distractors</th><th>length</th><th>depth</th>"
                 "<th>correct</th><th>distracted</th><th>accuracy</th><th>mean prompt tokens</th></tr>")
    for c in result.cells:
        parts.append(f"<tr><td>{c.context}</td><td>{'yes' if c.distractors else 'no'}</td><td class=n>{c.length:,}"
                     f"</td><td class=n>{'any' if c.depth is None else f'{c.depth:g}'}</td><td class=n>"
                     f"{c.correct}/{c.needles}</td><td class=n>{c.distracted}</td><td class=n>"
                     f"{c.accuracy * 100:.0f}%</td><td class=n>{c.prompt_tokens:,.0f}</td></tr>")
    parts.append("</table><p class=meta>Made by Keel (keel context rot). Self-contained: no scripts, no external "
                 "resources.</p></body></html>")
    return "".join(parts)


def format_table(result: RotResult) -> str:
    """The terminal table: one row per context kind and distractor setting, accuracy per length."""
    head = f"{'context':<34}" + "".join(f"{n:>9,}" for n in result.lengths)
    lines = [head]
    for key in result.series():
        acc = dict(result.curve(*key))
        lines.append(f"{_label(*key):<34}" + "".join(
            f"{acc[n] * 100:>8.0f}%" if n in acc else f"{'–':>9}" for n in result.lengths))
    return "\n".join(lines)
