// Runs: every workflow run, newest first, filtered by workflow, status and time.
import { empty, fmtAgo, fmtMs, fmtTime, getJSON, h, showError, statusBadge } from "./api.js";

const SINCE = [["", "Any time"], ["900", "Last 15 minutes"], ["3600", "Last hour"], ["86400", "Last 24 hours"], ["604800", "Last 7 days"]];
const STATUS = ["", "running", "waiting", "succeeded", "failed"];

export async function mount(main, { params }) {
  main.append(h("div.page-head", {}, h("h1", {}, "Runs"), h("p.muted", {}, "Every workflow run, newest first. Open one to see its trace.")));
  const results = h("div", { id: "runs-results" });
  let workflows = [];
  try {
    workflows = (await getJSON("/ui/api/workflows")).workflows.map((w) => w.name);
  } catch { /* the list below reports the error */ }
  const select = (id, label, options, value) => h("div.field", {}, h("label", { for: id }, label),
    h("select", { id, name: id.replace("runs-", "") }, options.map(([v, t]) => h("option", { value: v, selected: v === (value || "") }, t))));
  const form = h("form.filters", { role: "search", "aria-label": "Filter runs", onchange: () => apply(), onsubmit: (e) => { e.preventDefault(); apply(); } },
    select("runs-workflow", "Workflow", [["", "All workflows"], ...workflows.map((w) => [w, w])], params.get("workflow")),
    select("runs-status", "Status", STATUS.map((s) => [s, s || "Any status"]), params.get("status")),
    select("runs-since", "Started", SINCE, params.get("since")),
    h("button.secondary", { type: "submit" }, "Refresh"));
  main.append(form, results);
  const apply = () => {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    history.replaceState(null, "", `#/runs${q.toString() ? "?" + q : ""}`);
    load(results, q);
  };
  const q = new URLSearchParams();
  for (const k of ["workflow", "status", "since"]) if (params.get(k)) q.set(k, params.get(k));
  await load(results, q);
}

// Each load numbers its request; a slower answer to an older request (the unfiltered list
// still in flight when a filter changes) is dropped instead of replacing the newer one.
let latest = 0;

async function load(results, q) {
  const mine = ++latest;
  results.replaceChildren(h("p.muted", { role: "status" }, "Loading runs…"));
  let data;
  try {
    data = await getJSON(`/ui/api/runs?${q}`);
  } catch (e) {
    if (mine !== latest) return;
    results.replaceChildren();
    showError(results, e, () => load(results, q));
    return;
  }
  if (mine !== latest) return;
  if (!data.runs.length) {
    results.replaceChildren(q.toString()
      ? empty("No runs match these filters", "Widen the time range or pick another status.")
      : empty("No runs yet", "Runs appear here once a workflow runs: send a message in ", h("a", { href: "#/chat" }, "Chat"), ", call the API, or use ", h("code", {}, "keel run"), "."));
    return;
  }
  const rows = data.runs.map((r) => h("tr", {},
    h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(r.id)}` }, h("code", {}, r.id.slice(0, 12)))),
    h("td", {}, `${r.workflow} `, h("span.muted", {}, `v${r.version}`)),
    h("td", {}, statusBadge(r.status), r.error ? h("span.muted.small.clip", { title: r.error }, ` ${r.error}`) : ""),
    h("td", { title: fmtTime(r.created_at) }, fmtAgo(r.created_at)),
    h("td.num.wide-only", {}, r.finished_at ? fmtMs((r.finished_at - r.created_at) * 1000) : "–")));
  results.replaceChildren(h("div.table-wrap", {}, h("table.data", {},
    h("caption.sr-only", {}, "Runs"),
    h("thead", {}, h("tr", {}, ...["Run", "Workflow", "Status", "Started", "Duration"].map((t) => h("th", { scope: "col", class: t === "Duration" ? "num wide-only" : "" }, t)))),
    h("tbody", {}, rows))), h("p.muted.small", {}, `${data.runs.length} run${data.runs.length === 1 ? "" : "s"}`));
}
