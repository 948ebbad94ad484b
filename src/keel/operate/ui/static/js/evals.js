// Evals: the list of eval runs, one run's report (the charts of the HTML report) and the
// comparison of two runs.
import { empty, fmtAgo, fmtPct, fmtTime, getJSON, h, showError, statusBadge } from "./api.js";
import { PALETTE, chart, destroyAll } from "./charts.js";

export async function mount(main, { arg, params }) {
  const body = h("div");
  main.append(body);
  if (arg) await report(body, arg, params.get("baseline"));
  else await list(body);
}

export function unmount() { destroyAll(); }

async function list(body) {
  body.replaceChildren(h("div.page-head", {}, h("h1", {}, "Evals"),
    h("p.muted", {}, "Eval runs, newest first. Open one for its report, or tick two and compare them.")));
  let data;
  try {
    data = await getJSON("/ui/api/evals");
  } catch (e) {
    showError(body, e, () => list(body));
    return;
  }
  if (!data.evals.length) {
    body.append(empty("No eval runs yet", "Run one with ", h("code", {}, "keel eval run my-eval.yaml"),
      "; its report shows up here with score distributions and pass rates."));
    return;
  }
  const picked = [];
  const compare = h("button", { type: "button", id: "compare", disabled: true, onclick: () => {
    const [a, b] = [...picked].sort((x, y) => x.created_at - y.created_at);
    location.hash = `#/evals/${encodeURIComponent(b.id)}?baseline=${encodeURIComponent(a.id)}`;
  } }, "Compare selected");
  const hint = h("span.muted.small", { "aria-live": "polite" }, "Select two runs to compare.");
  const rows = data.evals.map((e) => {
    const box = h("input", { type: "checkbox", "aria-label": `Select ${e.name} (${e.id}) for comparison`, onchange: (ev) => {
      if (ev.target.checked) picked.push(e); else picked.splice(picked.indexOf(e), 1);
      while (picked.length > 2) { const old = picked.shift(); body.querySelector(`input[data-id="${CSS.escape(old.id)}"]`).checked = false; }
      compare.disabled = picked.length !== 2;
      hint.textContent = picked.length === 2 ? `Compare ${picked[1].id} against ${picked[0].id}.` : "Select two runs to compare.";
    } });
    box.dataset.id = e.id;
    const s = e.summary || {};
    const rate = s.targets ? Math.min(...s.targets.map((t) => t.pass_rate)) : null;
    return h("tr", {}, h("td", {}, box),
      h("td", {}, h("a", { href: `#/evals/${encodeURIComponent(e.id)}` }, e.name), h("div.muted.small", {}, h("code", {}, e.id))),
      h("td", {}, statusBadge(e.status)),
      h("td.num", {}, rate == null || !isFinite(rate) ? "–" : fmtPct(rate)),
      h("td", { title: fmtTime(e.created_at) }, fmtAgo(e.created_at)));
  });
  body.append(h("div.toolbar", {}, compare, hint),
    h("div.table-wrap", {}, h("table.data", {}, h("caption.sr-only", {}, "Eval runs"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span.sr-only", {}, "Select")), ...["Eval", "Status", "Pass rate", "Started"].map((t) => h("th", { scope: "col", class: t === "Pass rate" ? "num" : "" }, t)))),
      h("tbody", {}, rows))));
}

async function report(body, id, baseline) {
  body.replaceChildren(h("p.crumbs", {}, h("a", { href: "#/evals" }, "← Evals")), h("p.muted", { role: "status" }, "Loading the report…"));
  let s, cmp = null;
  try {
    [s, cmp] = await Promise.all([getJSON(`/ui/api/evals/${encodeURIComponent(id)}`),
      baseline ? getJSON(`/ui/api/evals/${encodeURIComponent(baseline)}/compare/${encodeURIComponent(id)}`) : null]);
  } catch (e) {
    body.lastChild.remove();
    showError(body, e, () => report(body, id, baseline));
    return;
  }
  body.lastChild.remove();
  const items = s.targets.reduce((n, t) => n + t.items, 0);
  const link = `/ui/api/evals/${encodeURIComponent(id)}/report${baseline ? `?baseline=${encodeURIComponent(baseline)}` : ""}`;
  body.append(h("div.page-head", {}, h("h1", {}, `Eval ${s.name} `, statusBadge(s.status)),
    h("p.muted.small", {}, "Run ", h("code", {}, s.run_id), ` · dataset ${s.dataset} · ${items} graded items · ${fmtTime(s.created_at)} · `,
      h("a", { href: link, target: "_blank", rel: "noopener" }, "standalone HTML report"))));
  const colors = Object.fromEntries(s.targets.map((t, i) => [t.target, PALETTE[i % PALETTE.length]]));
  body.append(h("div.cards", {}, s.targets.map((t) => h("div.card", {},
    h("div.card-label", {}, h("i.swatch", { style: `background:${colors[t.target]}`, "aria-hidden": "true" }), t.target),
    h("div.card-value", {}, fmtPct(t.pass_rate)),
    h("div.muted.small", {}, `${t.passed}/${t.items} passed`, t.errored ? h("span.bad-text", {}, ` · ${t.errored} errored`) : "")))));
  if (cmp) body.append(comparison(cmp));
  if (!items) {
    body.append(empty("Nothing graded yet", "This run has no graded items: it may still be running, or every item errored."));
    return;
  }
  const graders = [...new Set(s.targets.flatMap((t) => t.graders.map((g) => g.name)))];
  const grid = h("div.chart-grid");
  if (s.targets.length > 1) {
    grid.append(chart({ title: "Pass rate per model / prompt", kind: "bars", x: s.targets.map((_, i) => i), xLabels: s.targets.map((t) => t.target),
      series: [{ label: "pass rate", values: s.targets.map((t) => t.pass_rate), color: PALETTE[0] }], yFmt: pct }));
  }
  grid.append(chart({ title: "Pass rate per grader", kind: "bars", x: graders.map((_, i) => i), xLabels: graders, xTitle: "grader",
    series: s.targets.map((t) => ({ label: t.target, color: colors[t.target],
      values: graders.map((n) => { const g = t.graders.find((x) => x.name === n); return g ? (g.pass_rate ?? g.mean) : null; }) })),
    yFmt: pct }));
  body.append(h("h2", {}, "Pass rates"), grid);
  const dist = h("div.chart-grid");
  for (const name of graders) {
    const first = s.targets.flatMap((t) => t.graders).find((g) => g.name === name);
    const bins = first.histogram.length, w = (first.high - first.low) / bins;
    const labels = first.histogram.map((_, i) => `${(first.low + i * w).toFixed(1)}–${(first.low + (i + 1) * w).toFixed(1)}`);
    dist.append(chart({ title: `Scores: ${name}`, kind: "bars", x: labels.map((_, i) => i), xLabels: labels, xTitle: "score",
      series: s.targets.map((t) => ({ label: t.target, color: colors[t.target], values: (t.graders.find((g) => g.name === name) || { histogram: [] }).histogram })),
      yFmt: (v) => (Number.isInteger(v) ? String(v) : ""), integer: true }));
  }
  body.append(h("h2", {}, "Score distributions"), dist);
}

const pct = (v) => `${Math.round(v * 100)}%`;
/** A score with at most three decimals and no trailing zeros (0.182, not 0.18181818181818177). */
const fmtScore = (v) => (v == null ? "–" : typeof v === "number" ? String(+v.toFixed(3)) : String(v));

function comparison(c) {
  const rows = c.targets.map((t) => h("tr", {},
    h("td", {}, t.target_a === t.target_b ? t.target_a : `${t.target_a} → ${t.target_b}`),
    h("td.num", {}, fmtPct(t.pass_rate_a)), h("td.num", {}, fmtPct(t.pass_rate_b)),
    h("td.num", { class: `num ${t.delta < 0 ? "bad-text" : t.delta > 0 ? "ok-text" : ""}` }, `${t.delta > 0 ? "+" : ""}${(t.delta * 100).toFixed(1)} pt`),
    h("td.num", {}, String(t.regressions)), h("td.num", {}, String(t.improvements))));
  const regressed = c.targets.flatMap((t) => t.regressed_items.map((r) => ({ ...r, target: t.target_b })));
  return h("section.compare", { "aria-labelledby": "cmp-title" },
    h("h2", { id: "cmp-title" }, "Compared with ", h("a", { href: `#/evals/${encodeURIComponent(c.run_a)}` }, h("code", {}, c.run_a))),
    h("div.table-wrap", {}, h("table.data", {}, h("thead", {}, h("tr", {}, ...["Target", "Before", "After", "Change", "Regressed", "Improved"].map((t, i) => h("th", { scope: "col", class: i ? "num" : "" }, t)))), h("tbody", {}, rows))),
    regressed.length ? h("details", {}, h("summary", {}, `${regressed.length} regressed item${regressed.length === 1 ? "" : "s"}`),
      h("ul", {}, regressed.slice(0, 50).map((r) => h("li", {}, `#${r.idx} (${r.target}): ${fmtScore(r.before)} → ${fmtScore(r.after)}`, r.failed_graders.length ? ` · failed ${r.failed_graders.join(", ")}` : "")))) : "");
}
