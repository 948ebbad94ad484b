"""A self-contained HTML report: inline SVG charts, no scripts, no network.

It shows, per run: pass rate per target (the side-by-side comparison of models
and prompts), pass rate per grader and target, each grader's score distribution,
the errored and failing items, and, given a baseline, the regressions item by item.
"""

from __future__ import annotations

import html
from itertools import islice

from keel.evals.results import Comparison, ItemResult, RunSummary, iter_results
from keel.store import SQLiteStore

__all__ = ["format_score", "render_html"]

_PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#0ea5e9", "#84cc16", "#ec4899")
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#111827;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.3rem}
.meta{color:#6b7280}.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #e5e7eb;border-radius:8px;padding:.8rem 1rem;min-width:180px}
.card b{font-size:1.6rem;display:block}.bad{color:#b91c1c}.good{color:#047857}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border-bottom:1px solid #f3f4f6;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f9fafb}td.n{text-align:right;font-variant-numeric:tabular-nums}.small{display:flex;flex-wrap:wrap;gap:1rem}
pre{white-space:pre-wrap;margin:0;max-height:8em;overflow:auto;font-size:12px}.legend span{margin-right:1rem}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f}%"


def format_score(x: object) -> str:
    """A score as a person reads it: at most three decimals, no trailing zeros (``0.182``,
    ``1``, ``0.5``); ``–`` for none; anything not a number as text."""
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if x != x or x in (float("inf"), float("-inf")):
        return str(x)
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _hbars(rows: list[tuple[str, float, str]], *, width: int = 640) -> str:
    """Horizontal bars for values in [0, 1]."""
    label_w, bar_w, h = 260, width - 330, 22
    out = [f'<svg width="{width}" height="{h * len(rows) + 10}" role="img">']
    for i, (label, value, color) in enumerate(rows):
        y = i * h + 5
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12">{_e(label[:40])}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w}" height="{h - 8}" fill="#f3f4f6"/>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{max(0.0, value) * bar_w:.1f}" height="{h - 8}" fill="{color}"/>')
        out.append(f'<text x="{label_w + bar_w + 6}" y="{y + 15}" font-size="12">{_pct(value)}</text>')
    out.append("</svg>")
    return "".join(out)


def _histogram(title: str, series: list[tuple[str, list[int], str]], low: float, high: float) -> str:
    w, h, pad = 300, 150, 28
    bins = len(series[0][1]) if series else 10
    top = max((max(c) for _, c, _ in series if c), default=1) or 1
    group_w = (w - pad - 6) / bins
    bar_w = group_w / max(1, len(series))
    out = [f'<svg width="{w}" height="{h + 30}" role="img"><text x="{pad}" y="12" font-size="12" font-weight="600">{_e(title)}</text>']
    for s, (_, counts, color) in enumerate(series):
        for b, c in enumerate(counts):
            bh = c / top * (h - 30)
            x = pad + b * group_w + s * bar_w
            out.append(f'<rect x="{x:.1f}" y="{h - bh:.1f}" width="{max(1.0, bar_w - 1):.1f}" height="{bh:.1f}" fill="{color}"><title>{c}</title></rect>')
    out.append(f'<line x1="{pad}" y1="{h}" x2="{w - 6}" y2="{h}" stroke="#9ca3af"/>')
    out.append(f'<text x="{pad}" y="{h + 14}" font-size="11">{format_score(low)}</text>')
    out.append(f'<text x="{w - 6}" y="{h + 14}" font-size="11" text-anchor="end">{format_score(high)}</text>')
    out.append(f'<text x="2" y="24" font-size="11">{top}</text></svg>')
    return "".join(out)


def _items_table(rows: list[ItemResult]) -> str:
    out = ["<table><tr><th>target</th><th>item</th><th>output</th><th>grades</th><th>error</th></tr>"]
    for r in rows:
        grades = "<br>".join(
            f"{_e(g['name'])}: {format_score(g.get('score')) if g.get('error') is None else 'error'}"
            + (f" ({_e(g['label'])})" if g.get("label") else "") for g in r.grades)
        text = (r.sample or {}).get("output_text", "")
        run = f"<br><small>run {_e(r.workflow_run_id)}</small>" if r.workflow_run_id else ""
        out.append(f"<tr><td>{_e(r.target)}</td><td class=n>{r.idx}{run}</td><td><pre>{_e(str(text)[:600])}</pre></td>"
                   f"<td>{grades}</td><td class=bad>{_e(r.error or '')}</td></tr>")
    out.append("</table>")
    return "".join(out)


def render_html(store: SQLiteStore, summary: RunSummary, *, comparison: Comparison | None = None,
                max_items: int = 50) -> str:
    """The report as one HTML document (write it anywhere; it needs nothing else)."""
    colors = {t.target: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(summary.targets)}
    items = sum(t.items for t in summary.targets)
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>Keel eval {_e(summary.name)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Eval {_e(summary.name)}</h1><div class=meta>run {_e(summary.run_id)} · dataset "
             f"{_e(summary.dataset)} · {summary.status} · {items} graded items</div>", "<div class=cards>"]
    for t in summary.targets:
        cls = "bad" if t.errored else ""
        parts.append(f"<div class=card>{_e(t.target)}<b>{_pct(t.pass_rate)}</b>{t.passed}/{t.items} passed"
                     f"<div class='{cls}'>{t.errored} errored</div></div>")
    parts.append("</div>")
    if len(summary.targets) > 1:
        parts.append("<h2>Models and prompts side by side</h2>")
        parts.append(_hbars([(t.target, t.pass_rate, colors[t.target]) for t in summary.targets]))
    parts.append("<h2>Pass rate per grader</h2>")
    legend = "".join(f"<span><i style='background:{c}'></i>{_e(n)}</span>" for n, c in colors.items())
    parts.append(f"<div class=legend>{legend}</div>")
    rows = []
    grader_names = list(dict.fromkeys(g.name for t in summary.targets for g in t.graders))
    for name in grader_names:
        for t in summary.targets:
            g = next((g for g in t.graders if g.name == name), None)
            if g is not None:
                rate = g.pass_rate if g.pass_rate is not None else (g.mean or 0.0)
                rows.append((f"{name}{'' if g.pass_rate is not None else ' (mean)'} · {t.target}" if len(summary.targets) > 1
                             else f"{name}{'' if g.pass_rate is not None else ' (mean score)'}", rate, colors[t.target]))
    parts.append(_hbars(rows))
    parts.append("<h2>Score distributions</h2><div class=small>")
    for name in grader_names:
        series = [(t.target, g.histogram, colors[t.target]) for t in summary.targets
                  for g in t.graders if g.name == name]
        first = next(g for t in summary.targets for g in t.graders if g.name == name)
        parts.append(_histogram(name, series, first.low, first.high))
    parts.append("</div>")
    if comparison is not None:
        parts.append(f"<h2>Regressions against {_e(comparison.run_a)}</h2><table><tr><th>target</th>"
                     "<th>before</th><th>after</th><th>delta</th><th>regressed</th><th>improved</th></tr>")
        for c in comparison.targets:
            cls = "bad" if c.delta < 0 else "good"
            parts.append(f"<tr><td>{_e(c.target_b)}</td><td class=n>{_pct(c.pass_rate_a)}</td><td class=n>"
                         f"{_pct(c.pass_rate_b)}</td><td class='n {cls}'>{c.delta * 100:+.1f} pts</td>"
                         f"<td class=n>{c.regressions}</td><td class=n>{c.improvements}</td></tr>")
        parts.append("</table><table><tr><th>target</th><th>item</th><th>score before</th><th>after</th><th>now failing</th></tr>")
        for c in comparison.targets:
            for r in c.regressed_items[:max_items]:
                parts.append(f"<tr><td>{_e(r.target)}</td><td class=n>{r.idx}</td><td class=n>{format_score(r.before)}</td>"
                             f"<td class=n>{format_score(r.after)}</td><td>{_e(', '.join(r.failed_graders))}</td></tr>")
        parts.append("</table>")
    errored = list(islice((r for r in iter_results(store, summary.run_id) if r.status == "error"), max_items))
    if errored:
        parts.append(f"<h2>Errored items (first {len(errored)})</h2>" + _items_table(errored))
    failing = list(islice((r for r in iter_results(store, summary.run_id) if r.status == "ok" and not r.passed),
                          max_items))
    if failing:
        parts.append(f"<h2>Failing items (first {len(failing)})</h2>" + _items_table(failing))
    parts.append("<p class=meta>Made by Keel. Self-contained: no scripts, no external resources.</p></body></html>")
    return "".join(parts)
