// Charts drawn with uPlot (vendored in /ui/static/vendor): time series and bar charts that
// follow their container's width, with a table fallback for screen readers.
import { h } from "./api.js";

export const PALETTE = ["#1d4ed8", "#c2410c", "#047857", "#7c3aed", "#b91c1c", "#0e7490", "#a16207", "#be185d"];
const CODE_COLORS = { "2": "#047857", "3": "#0e7490", "4": "#a16207", "5": "#b91c1c", ok: "#047857" };
export const codeColor = (code, i) => CODE_COLORS[String(code)[0]] || CODE_COLORS[code] || PALETTE[(i + 3) % PALETTE.length];

/** Counts (``spec.integer``) get whole-number ticks only: no "0, 0.2, 0.4" shown as "0, 0, 0". */
const INT_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6, 1e7];

/** Axis labels without repeats: a label equal to the one before it is left blank. */
export function distinctLabels(labels) {
  return labels.map((l, i) => (i > 0 && l === labels[i - 1] ? "" : l));
}

/** Bar labels that fit: every ``step``-th label, so that none overlaps the next (``px`` per bar). */
export function thinLabels(labels, px) {
  const widest = Math.max(0, ...labels.map((l) => String(l).length)) * 7 + 10;
  const step = Math.max(1, Math.ceil(widest / Math.max(1, px)));
  return labels.map((l, i) => (i % step === 0 ? l : ""));
}

const live = new Set();
const resizer = new ResizeObserver((entries) => {
  for (const e of entries) {
    const c = e.target._chart, width = Math.max(200, Math.floor(e.contentRect.width));
    if (c && Math.abs(c.width - width) > 1) requestAnimationFrame(() => c.setSize({ width, height: c.height }));
  }
});

/** Remove every chart (on leaving a page). */
export function destroyAll() {
  for (const c of live) { c.destroy(); }
  live.clear();
}

/**
 * A chart in a titled figure.
 * spec: {title, x: [numbers], series: [{label, values, color}], kind: "time"|"bars", xLabels, yFmt, height}
 * Returns the figure; update it later with updateChart(figure, spec).
 */
export function chart(spec) {
  const fig = h("figure.chart", {}, h("figcaption", {}, spec.title));
  const box = h("div.chart-box");
  fig.append(box, table(spec));
  fig._spec = spec;
  requestAnimationFrame(() => draw(fig));
  return fig;
}

export function updateChart(fig, spec) {
  const old = fig._spec;
  fig._spec = spec;
  fig.querySelector(".chart-data")?.replaceWith(table(spec));
  const u = fig._uplot;
  const same = u && old && old.series.length === spec.series.length && old.series.every((s, i) => s.label === spec.series[i].label);
  if (same) u.setData(data(spec));
  else draw(fig);
}

function data(spec) {
  return [spec.x, ...spec.series.map((s) => s.values.map((v) => (v == null ? null : v)))];
}

function draw(fig) {
  const spec = fig._spec, box = fig.querySelector(".chart-box");
  if (fig._uplot) { live.delete(fig._uplot); fig._uplot.destroy(); }
  box.replaceChildren();
  if (!window.uPlot) { box.append(h("p.muted", {}, "Charts could not load (uPlot is missing).")); return; }
  const width = Math.max(200, Math.floor(box.getBoundingClientRect().width || 600));
  const bars = spec.kind === "bars";
  const yFmt = spec.yFmt || ((v) => v);
  const opts = {
    width, height: spec.height || 200,
    legend: { show: true, live: !bars },
    cursor: { drag: { x: false, y: false }, points: { show: !bars } },
    scales: { x: { time: !bars, ...(bars ? { range: () => barRange(fig._spec.x) } : {}) }, y: { range: (u, lo, hi) => [Math.min(0, lo), hi > 0 ? hi * 1.1 : 1] } },
    axes: [
      { stroke: "#4b5563", grid: { show: false }, ...(bars ? { splits: () => spec.x,
        values: (u, ticks) => thinLabels(ticks.map((t) => spec.xLabels?.[t] ?? ""), (u.width - 70) / Math.max(1, spec.x.length)) } : {}) },
      { stroke: "#4b5563", grid: { stroke: "#e5e7eb" }, size: 64, ...(spec.integer ? { incrs: INT_INCRS } : {}),
        values: (u, ticks) => distinctLabels(ticks.map(spec.axisFmt || yFmt)) },
    ],
    series: [
      bars ? { label: spec.xTitle || "", value: (u, v) => spec.xLabels?.[v] ?? "" } : { label: "time" },
      ...spec.series.map((s, i) => {
        const color = s.color || PALETTE[i % PALETTE.length];
        const n = spec.series.length;
        return {
          label: s.label, stroke: color, width: bars ? 1 : 2, spanGaps: !!s.spanGaps,
          fill: bars ? color + "cc" : s.fill ? color + "22" : undefined,
          value: (u, v) => (v == null ? "–" : yFmt(v)),
          points: { show: !bars, size: 4 },
          ...(bars ? { paths: barPaths(i, n) } : {}),
        };
      }),
    ],
  };
  const u = new window.uPlot(opts, data(spec), box);
  fig._uplot = u; box._chart = u;
  live.add(u);
  resizer.observe(box);
}

// Half a slot either side of the bars, from the data: uPlot widens a single x (0..0) to 0..100
// before a range function sees it, and one grader's bar was then 1 px wide.
function barRange(xs) {
  return xs.length ? [Math.min(...xs) - 0.5, Math.max(...xs) + 0.5] : [-0.5, 0.5];
}

// Grouped bars: series k of n sits in its own slot around each x.
function barPaths(k, n) {
  const slot = 0.8 / n;
  return (u, seriesIdx, idx0, idx1) => {
    const p = new Path2D();
    const xs = u.data[0], ys = u.data[seriesIdx];
    const y0 = u.valToPos(0, "y", true);
    for (let i = idx0; i <= idx1; i++) {
      if (ys[i] == null) continue;
      const left = u.valToPos(xs[i] - 0.4 + slot * k, "x", true);
      const right = u.valToPos(xs[i] - 0.4 + slot * (k + 1), "x", true);
      const top = u.valToPos(ys[i], "y", true);
      p.rect(left + 1, top, Math.max(1, right - left - 2), y0 - top);
    }
    return { stroke: p, fill: p };
  };
}

// The same numbers as a table, for screen readers and for copying.
function table(spec) {
  const head = h("tr", {}, h("th", { scope: "col" }, spec.kind === "bars" ? (spec.xTitle || "") : "time"), ...spec.series.map((s) => h("th", { scope: "col" }, s.label)));
  const rows = spec.x.map((x, i) => h("tr", {},
    h("th", { scope: "row" }, spec.kind === "bars" ? (spec.xLabels?.[x] ?? x) : new Date(x * 1000).toLocaleTimeString()),
    ...spec.series.map((s) => h("td", {}, s.values[i] == null ? "–" : (spec.yFmt || String)(s.values[i])))));
  // (wrapped: a table cannot be shrunk to 1 px itself, it would stretch the page)
  return h("div.sr-only.chart-data", {}, h("table", {}, h("caption", {}, spec.title), h("thead", {}, head), h("tbody", {}, rows)));
}
