// Service health: per workflow (the server's requests) and per model (model calls), live.
import { empty, fmtMs, fmtMsAxis, fmtNum, fmtPct, fmtTokens, getJSON, h, showError } from "./api.js";
import { chart, codeColor, destroyAll, updateChart } from "./charts.js";

const REFRESH_MS = 5000;
const SLOW_RANGES = new Set(["24h", "7d"]); // a day of raw rows takes seconds to aggregate: refresh every 30 s
const every = (range) => (SLOW_RANGES.has(range) ? 30000 : REFRESH_MS);
const TARGETS = ["0.9", "0.95", "0.99", "0.995", "0.999"];
let timer = null, alive = false, charts = {}, lastKey = "";

export async function mount(main, { params }) {
  alive = true; charts = {}; lastKey = "";
  const opts = { range: params.get("range") || "1h", workflow: params.get("workflow") || "", model: params.get("model") || "", slo_target: params.get("slo_target") || "0.99" };
  const status = h("span.muted.small", { id: "dash-updated", role: "status" }, "Loading…");
  const sel = (id, label, name, values) => h("div.field", {}, h("label", { for: id }, label),
    h("select", { id, name }, values.map(([v, t]) => h("option", { value: v, selected: v === opts[name] }, t))));
  const live = h("input", { type: "checkbox", id: "dash-live", checked: true, onchange: (e) => (e.target.checked ? schedule(0) : stop()) });
  const form = h("form.filters", { "aria-label": "Dashboard settings", onsubmit: (e) => e.preventDefault(), onchange: (e) => {
    if (e.target === live) return;
    for (const [k, v] of new FormData(form)) opts[k] = v;
    const q = new URLSearchParams(Object.entries(opts).filter(([, v]) => v));
    history.replaceState(null, "", `#/dashboard?${q}`);
    refresh();
  } },
  sel("dash-range", "Time range", "range", [["5m", "Last 5 minutes"], ["15m", "Last 15 minutes"], ["1h", "Last hour"], ["6h", "Last 6 hours"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"]]),
  h("div.field", { id: "dash-wf-field" }), h("div.field", { id: "dash-model-field" }),
  sel("dash-slo", "SLO target", "slo_target", TARGETS.map((t) => [t, fmtPct(Number(t))])),
  h("div.field.check", {}, live, h("label", { for: "dash-live", id: "dash-live-label" }, `Refresh every ${every(opts.range) / 1000} s`)));
  const body = h("div", { id: "dash-body" });
  main.append(h("div.page-head", {}, h("h1", {}, "Service health"), status), form, body);

  let latest = 0; // a slower answer to an older request (settings changed meanwhile) is dropped
  async function refresh() {
    clearTimeout(timer);
    const mine = ++latest;
    const q = new URLSearchParams(Object.entries(opts).filter(([, v]) => v));
    try {
      const d = await getJSON(`/ui/api/metrics?${q}`);
      if (!alive || mine !== latest) return;
      filters(form, opts, d, refresh);
      render(body, d);
      status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      status.classList.remove("bad-text");
    } catch (e) {
      if (!alive || mine !== latest) return;
      status.textContent = "Not updated";
      status.classList.add("bad-text");
      body.querySelector(".alert")?.remove();
      showError(body.querySelector(".dash-error-slot") || body, e, () => refresh());
      return; // no automatic retry after a failure: Retry is the way back
    }
    document.getElementById("dash-live-label").textContent = `Refresh every ${every(opts.range) / 1000} s`;
    if (live.checked) schedule(every(opts.range));
  }
  function schedule(ms) { clearTimeout(timer); timer = setTimeout(refresh, ms); }
  function stop() { clearTimeout(timer); }
  await refresh();
}

export function unmount() {
  alive = false; clearTimeout(timer); destroyAll(); charts = {};
}

function filters(form, opts, d, refresh) {
  const fill = (id, label, name, all, values) => {
    const slot = form.querySelector(`#${id}-field`);
    const current = slot.querySelector("select")?.value ?? opts[name];
    const want = [["", all], ...values.map((v) => [v, v])];
    if (slot.dataset.values === JSON.stringify(want)) return;
    slot.dataset.values = JSON.stringify(want);
    // a long model name is cut with an ellipsis (CSS); its whole name is the title
    const select = h("select", { id, name, title: current || all, onchange: (e) => { e.target.title = e.target.value || all; } },
      want.map(([v, t]) => h("option", { value: v, title: t, selected: v === current }, t)));
    slot.replaceChildren(h("label", { for: id }, label), select);
  };
  fill("dash-wf", "Workflow", "workflow", "All workflows", [...new Set([...d.workflows, ...(opts.workflow ? [opts.workflow] : [])])]);
  fill("dash-model", "Model", "model", "All models", [...new Set([...d.model_names, ...(opts.model ? [opts.model] : [])])]);
}

function render(body, d) {
  const req = d.requests, mod = d.models, runs = d.runs;
  const key = `${d.range}|${d.workflow}|${d.model}`;
  if (!req.total.count && !mod.total.count && !runs.total.count) {
    destroyAll(); charts = {}; lastKey = "";
    body.replaceChildren(empty("No traffic in this time range",
      "Send a message in ", h("a", { href: "#/chat" }, "Chat"), " or call the API (", h("code", {}, "POST /v1/chat/completions"),
      "); requests show up here within 5 seconds. Or pick a longer time range above."));
    return;
  }
  const x = req.series.map((b) => b.start);
  const specs = {
    rpm: { title: "Requests per minute", x, series: [{ label: "requests/min", values: req.series.map((b) => b.per_min), fill: true }], yFmt: (v) => fmtNum(v, 1), spanGaps: true },
    lat: { title: "Request latency", x, series: [["p50", "latency_p50"], ["p95", "latency_p95"], ["p99", "latency_p99"]].map(([l, k]) => ({ label: l, values: req.series.map((b) => b[k]) })), yFmt: fmtMs, axisFmt: fmtMsAxis },
    ttfb: { title: "Time to first byte / token", x, series: [["p50", "first_p50"], ["p95", "first_p95"]].map(([l, k]) => ({ label: l, values: req.series.map((b) => b[k]) })), yFmt: fmtMs, axisFmt: fmtMsAxis },
    err: { title: "Error rate (requests: 5xx or run failed; runs: failed)", x, series: [
      { label: "request errors", color: "#b91c1c", values: req.series.map((b) => (b.count ? b.errors / b.count : null)), fill: true },
      { label: "failed runs", color: "#c2410c", values: runs.series.map((b) => (b.count ? b.errors / b.count : null)) }],
    yFmt: fmtPct, axisFmt: (v) => `${+(v * 100).toFixed(1)}%` },
    codes: { title: "Response codes (requests per bucket)", x, series: codes(req.series).map((c, i) => ({ label: c, color: codeColor(c, i), values: req.series.map((b) => b.codes[c] ?? 0) })), yFmt: (v) => fmtNum(v, 0), integer: true },
    tpm: { title: "Model tokens per minute", x, series: [{ label: "tokens/min", values: mod.series.map((b) => b.tokens_per_min), fill: true }], yFmt: fmtTokens },
    mlat: { title: "Model latency", x, series: [["p50", "latency_p50"], ["p95", "latency_p95"], ["p99", "latency_p99"]].map(([l, k]) => ({ label: l, values: mod.series.map((b) => b[k]) })), yFmt: fmtMs, axisFmt: fmtMsAxis },
    ttft: { title: "Model time to first token", x, series: [["p50", "first_p50"], ["p95", "first_p95"]].map(([l, k]) => ({ label: l, values: mod.series.map((b) => b[k]) })), yFmt: fmtMs, axisFmt: fmtMsAxis },
  };
  const numbers = h("dl.stats.kpis", { "aria-label": "Totals over the range" },
    kpi("Requests", String(req.total.count), `${fmtNum(req.total.per_min, 2)}/min`, "kpi-requests"),
    kpi("Error rate", fmtPct(req.total.error_rate), `${req.total.errors} error${req.total.errors === 1 ? "" : "s"} (5xx or run failed)`, "kpi-errors", req.total.error_rate > 1 - d.slo.target ? "bad" : ""),
    kpi("Failed runs", runs.total.count ? fmtPct(runs.total.error_rate) : "–", `${runs.total.errors} of ${runs.total.count} run${runs.total.count === 1 ? "" : "s"}`, "kpi-failed-runs", runs.total.errors ? "bad" : ""),
    kpi("Latency p50", fmtMs(req.total.latency_p50), `p95 ${fmtMs(req.total.latency_p95)} · p99 ${fmtMs(req.total.latency_p99)}`, "kpi-latency"),
    kpi("First byte p50", fmtMs(req.total.first_p50), `p95 ${fmtMs(req.total.first_p95)}`, "kpi-ttfb"),
    kpi("Model tokens", fmtTokens(mod.total.tokens), `${fmtTokens(mod.total.tokens_per_min)}/min`, "kpi-tokens"),
    kpi("Model TTFT p50", fmtMs(mod.total.first_p50), `${mod.total.count} model calls`, "kpi-ttft"));
  if (key !== lastKey || !body.querySelector(".dash-charts")) {
    destroyAll(); charts = {};
    const slot = h("div.dash-error-slot");
    const reqGrid = h("div.chart-grid.dash-charts"), modGrid = h("div.chart-grid");
    for (const k of ["rpm", "lat", "ttfb", "codes", "err"]) reqGrid.append(charts[k] = chart(specs[k]));
    for (const k of ["tpm", "mlat", "ttft"]) modGrid.append(charts[k] = chart(specs[k]));
    body.replaceChildren(slot, numbers, h("div.dash-top", {}, slo(d.slo)),
      h("h2", {}, "Requests"), reqGrid, h("h3", {}, "Per workflow"), h("div", { id: "dash-by-workflow" }, groups(byWorkflow(req.groups, runs.groups), "Workflow", false)),
      h("h2", {}, "Models"), modGrid, h("h3", {}, "Per model"), h("div", { id: "dash-by-model" }, groups(mod.groups, "Model", true)));
    lastKey = key;
  } else {
    body.querySelector(".alert")?.remove();
    body.querySelector(".kpis").replaceWith(numbers);
    body.querySelector(".slo").replaceWith(slo(d.slo));
    for (const k of Object.keys(charts)) updateChart(charts[k], specs[k]);
    body.querySelector("#dash-by-workflow").replaceChildren(groups(byWorkflow(req.groups, runs.groups), "Workflow", false));
    body.querySelector("#dash-by-model").replaceChildren(groups(mod.groups, "Model", true));
  }
}

function codes(series) {
  return [...new Set(series.flatMap((b) => Object.keys(b.codes)))].sort();
}

function kpi(label, value, sub, id, tone = "") {
  return h("div", { id, class: tone }, h("dt", {}, label), h("dd", {}, h("span.kpi-value", {}, value), h("span.muted.small", {}, sub)));
}

function slo(s) {
  const windowText = s.window_s >= 86400 ? `${Math.round(s.window_s / 86400)} d` : s.window_s >= 3600 ? `${Math.round(s.window_s / 3600)} h` : `${Math.round(s.window_s / 60)} min`;
  const left = s.budget_left == null ? null : Math.max(-1, Math.min(1, s.budget_left));
  const tone = s.met == null ? "" : left < 0 ? "bad" : left < 0.25 ? "warn" : "ok";
  return h("section.slo", { "aria-labelledby": "slo-title", id: "slo" },
    h("h2", { id: "slo-title" }, "SLO ", h("span.muted.small", {}, `availability over the last ${windowText}`)),
    h("dl.stats", {},
      h("div", {}, h("dt", {}, "Target"), h("dd", {}, fmtPct(s.target))),
      h("div", {}, h("dt", {}, "Current"), h("dd", { class: s.met === false ? "bad-text" : s.met ? "ok-text" : "" }, fmtPct(s.current))),
      h("div", {}, h("dt", {}, "Good / total"), h("dd", {}, `${s.good} / ${s.total}`)),
      h("div", {}, h("dt", {}, "Error budget left"), h("dd", { class: `${tone}-text` }, s.budget_left == null ? "–" : fmtPct(s.budget_left)))),
    h("div.budget", { role: "meter", "aria-label": "Error budget left", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": left == null ? "0" : String(Math.round(Math.max(0, left) * 100)) },
      h(`span.budget-fill.${tone}`, { style: `width:${left == null ? 0 : Math.max(0, left) * 100}%` })),
    h("p.muted.small", {}, "A request is good unless the server answered 5xx or the workflow run it ran failed (even when answered 200). The budget is the share of requests allowed to fail (1 − target)."));
}

/** Per workflow: its requests, joined with its runs (a workflow run only from the CLI has no requests). */
function byWorkflow(reqGroups, runGroups) {
  const runs = Object.fromEntries(runGroups.map((g) => [g.key, g]));
  const out = reqGroups.map((g) => ({ ...g, runs: runs[g.key] || null }));
  for (const g of runGroups) {
    if (!reqGroups.some((r) => r.key === g.key)) out.push({ key: g.key, count: 0, per_min: 0, error_rate: null, runs: g });
  }
  return out;
}

function groups(gs, what, model) {
  if (!gs.length) return h("p.muted", {}, model ? "No model calls in this range." : "No requests or runs in this range.");
  const cols = model
    ? [["Calls", (g) => String(g.count)], ["Tokens/min", (g) => fmtTokens(g.tokens_per_min)], ["Latency p50", (g) => fmtMs(g.latency_p50)], ["p95", (g) => fmtMs(g.latency_p95)], ["p99", (g) => fmtMs(g.latency_p99)], ["TTFT p50", (g) => fmtMs(g.first_p50)], ["Errors", (g) => fmtPct(g.error_rate)]]
    : [["Requests", (g) => String(g.count)], ["Req/min", (g) => fmtNum(g.per_min, 2)], ["Latency p50", (g) => fmtMs(g.latency_p50)], ["p95", (g) => fmtMs(g.latency_p95)], ["p99", (g) => fmtMs(g.latency_p99)], ["First byte p50", (g) => fmtMs(g.first_p50)], ["Errors", (g) => (g.count ? fmtPct(g.error_rate) : "–")],
      ["Runs", (g) => String(g.runs?.count ?? 0)], ["Failed runs", (g) => (g.runs?.count ? `${g.runs.errors} (${fmtPct(g.runs.error_rate)})` : "–")]];
  // a long name is cut with an ellipsis; the whole name is its title
  const name = (key) => h("th", { scope: "row" }, h("span.clip", { title: key }, key));
  return h("div.table-wrap", {}, h("table.data", {},
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, what), ...cols.map(([t]) => h("th.num", { scope: "col" }, t)))),
    h("tbody", {}, gs.map((g) => h("tr", { "data-key": g.key }, name(g.key), ...cols.map(([t, f]) => h("td.num", { "data-col": t }, f(g))))))));
}
