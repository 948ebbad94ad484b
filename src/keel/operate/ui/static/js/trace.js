// A run's trace: the span tree as a waterfall, with each node's timings, tokens, cost,
// input, output and error, and the run's pending approvals.
import { fmtCost, fmtMs, fmtTime, fmtTokens, getJSON, h, postSSE, showError, statusBadge } from "./api.js";

let selected = null;

export async function mount(main, { arg }) {
  main.append(h("p.crumbs", {}, h("a", { href: "#/runs" }, "← Runs")));
  const body = h("div");
  main.append(body);
  await load(body, arg);
}

async function load(body, runId) {
  body.replaceChildren(h("p.muted", { role: "status" }, "Loading the trace…"));
  let r;
  try {
    r = await getJSON(`/ui/api/runs/${encodeURIComponent(runId)}`);
  } catch (e) {
    body.replaceChildren(h("h1", {}, "Run ", h("code", {}, runId)));
    showError(body, e, () => load(body, runId));
    return;
  }
  const run = r.run, t = r.totals;
  const head = h("div.page-head", {},
    h("h1", {}, `${run.workflow} `, h("span.muted", {}, `v${run.version}`), " ", statusBadge(run.status)),
    h("p.muted.small", {}, "Run ", h("code", {}, run.id), ` · started ${fmtTime(run.created_at)}`));
  const stats = h("dl.stats", {},
    stat("Duration", fmtMs(t.duration_ms)), stat("Input tokens", fmtTokens(t.input_tokens)),
    stat("Output tokens", fmtTokens(t.output_tokens)), stat("Cost", fmtCost(t.cost_usd)),
    stat("Model calls", String(r.model_calls.length)), stat("Steps", String(r.steps.length)));
  body.replaceChildren(head, stats);
  if (run.error) body.append(h("div.alert", { role: "alert" }, h("p", {}, h("strong", {}, "The run failed: "), run.error)));
  for (const a of r.approvals.filter((x) => x.status === "pending")) body.append(approval(a, () => load(body, runId)));

  const spans = flatten(r.trace);
  const detail = h("section.span-detail", { "aria-label": "Selected step", id: "span-detail" });
  const t0 = Math.min(...spans.map((s) => s.span.started_at), run.created_at);
  const t1 = Math.max(...spans.map((s) => s.span.ended_at || Date.now() / 1000), t0 + 0.001);
  const list = h("ul.tree", { role: "tree", "aria-label": "Trace" },
    ...r.trace.map((s) => node(s, 1, t0, t1, detail, calls(r.model_calls))));
  body.append(h("div.trace", {}, h("div.tree-wrap", {}, h("h2", {}, "Trace"), spans.length ? list : h("p.muted", {}, "This run has no spans yet.")), detail));
  body.append(io("Input", run.input), io("Output", run.output));
  const first = list.querySelector('[role="treeitem"]');
  if (first) { first.tabIndex = 0; first.click(); }
  list.addEventListener("keydown", (e) => treeKeys(e, list));
}

const stat = (k, v) => h("div", {}, h("dt", {}, k), h("dd", {}, v));

function flatten(roots, out = []) {
  for (const s of roots) { out.push({ span: s }); flatten(s.children, out); }
  return out;
}

const calls = (modelCalls) => Object.fromEntries(modelCalls.map((c) => [c.span_id, c]));

function node(s, level, t0, t1, detail, byspan) {
  const width = Math.max(0.5, (((s.ended_at || Date.now() / 1000) - s.started_at) / (t1 - t0)) * 100);
  const left = ((s.started_at - t0) / (t1 - t0)) * 100;
  const a = s.attributes || {};
  const tokens = (a["gen_ai.usage.input_tokens"] || 0) + (a["gen_ai.usage.output_tokens"] || 0);
  const label = h("div.span-row", {
    role: "treeitem", tabindex: "-1", "aria-level": String(level), "aria-selected": "false",
    "aria-expanded": s.children.length ? "true" : null, "data-span": s.span_id,
    onclick: (e) => { e.stopPropagation(); select(label, s, detail, byspan); },
  },
  h("span.span-name", {}, h(`span.kind.${s.kind}`, {}, s.kind), " ", s.name, s.status === "error" ? h("span.badge.bad", {}, "error") : ""),
  h("span.span-meta.muted.small", {}, tokens ? `${fmtTokens(tokens)} tok · ` : "", fmtMs(s.duration_ms)),
  h("span.bar-track", { "aria-hidden": "true" }, h(`span.bar.${s.status === "error" ? "bad" : s.kind}`, { style: `left:${left}%;width:${Math.min(width, 100 - left)}%` })));
  const li = h("li", { role: "none" }, label);
  if (s.children.length) li.append(h("ul", { role: "group" }, ...s.children.map((c) => node(c, level + 1, t0, t1, detail, byspan))));
  return li;
}

function select(label, s, detail, byspan) {
  if (selected) { selected.setAttribute("aria-selected", "false"); selected.tabIndex = -1; }
  selected = label; label.setAttribute("aria-selected", "true"); label.tabIndex = 0;
  const a = s.attributes || {}, c = byspan[s.span_id];
  const rows = [
    ["Kind", s.kind], ["Status", s.status], ["Started", fmtTime(s.started_at)], ["Duration", fmtMs(s.duration_ms)],
    a["gen_ai.request.model"] && ["Model", a["gen_ai.request.model"]],
    a["gen_ai.usage.input_tokens"] != null && ["Input tokens", fmtTokens(a["gen_ai.usage.input_tokens"])],
    a["gen_ai.usage.output_tokens"] != null && ["Output tokens", fmtTokens(a["gen_ai.usage.output_tokens"])],
    (a["keel.cost_usd"] != null || c) && ["Cost", fmtCost(a["keel.cost_usd"] ?? c?.cost_usd)],
    c && c.ttft_ms != null && ["Time to first token", fmtMs(c.ttft_ms)],
    s.port && ["Took edge", s.port],
  ].filter(Boolean);
  const other = Object.entries(a).filter(([k]) => !["gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "keel.cost_usd"].includes(k));
  detail.replaceChildren(h("h2", {}, s.name),
    s.error ? h("div.alert", { role: "alert" }, h("p", {}, h("strong", {}, "Error: "), s.error)) : "",
    h("dl.kv-list", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    "input" in s ? io("Input", s.input) : "", "output" in s ? io("Output", s.output) : "",
    other.length ? h("details", {}, h("summary", {}, `Attributes (${other.length})`),
      h("dl.kv-list", {}, other.map(([k, v]) => [h("dt", {}, h("code", {}, k)), h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))]))) : "");
}

function io(title, value) {
  const text = value == null ? "(none)" : typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return h("div.io", {}, h("h3", {}, title), h("pre", {}, text));
}

function treeKeys(e, list) {
  const items = [...list.querySelectorAll('[role="treeitem"]')].filter((el) => el.offsetParent !== null);
  const i = items.indexOf(document.activeElement);
  if (i < 0) return;
  let next = null;
  if (e.key === "ArrowDown") next = items[i + 1];
  else if (e.key === "ArrowUp") next = items[i - 1];
  else if (e.key === "Home") next = items[0];
  else if (e.key === "End") next = items[items.length - 1];
  else if (e.key === "Enter" || e.key === " ") { document.activeElement.click(); e.preventDefault(); return; }
  else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
    const el = document.activeElement, group = el.parentElement.querySelector(":scope > ul");
    if (group) { const open = e.key === "ArrowRight"; group.hidden = !open; el.setAttribute("aria-expanded", String(open)); }
    e.preventDefault(); return;
  }
  if (next) { e.preventDefault(); next.click(); next.focus(); }
}

function approval(a, reload) {
  const box = h("div.approval", { role: "group", "aria-labelledby": `ap-${a.id}` },
    h("p", { id: `ap-${a.id}` }, h("strong", {}, "Waiting for approval: "), a.message));
  const decide = async (decision) => {
    box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      for await (const { event, data } of postSSE(`/ui/api/approvals/${encodeURIComponent(a.id)}/${decision}`, {})) {
        if (event === "error") throw Object.assign(new Error(data.message), { hint: data.hint });
      }
      reload();
    } catch (e) {
      box.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      showError(box, e, () => decide(decision));
    }
  };
  box.append(h("div.row", {},
    h("button.approve", { type: "button", onclick: () => decide("approve") }, "Approve"),
    h("button.danger", { type: "button", onclick: () => decide("reject") }, "Reject")));
  return box;
}
