// Templates: the gallery of `keel init --template` projects (#/templates), and one template's
// page (#/templates/NAME): its graph drawn from the spec, the command, models, evals, files, README.
import { empty, getJSON, h, showError } from "./api.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 150, H = 46, GX = 60, GY = 22; // node size and gaps, in SVG units

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** Columns by the longest path from the start node over the graph without its back edges (a
 * loop's way back), rows in order of discovery. */
function layout(nodes, edges) {
  const out = new Map(nodes.map((n) => [n.id, []]));
  edges.forEach((e) => out.has(e.from) && out.get(e.from).push(e.to));
  const start = nodes.find((n) => n.type === "start") || nodes[0];
  const forward = [], state = new Map(); // 1: on the DFS stack, 2: done
  const visit = (id) => {
    state.set(id, 1);
    for (const next of out.get(id) || []) {
      if (state.get(next) === 1) continue; // a back edge
      forward.push([id, next]);
      if (!state.has(next)) visit(next);
    }
    state.set(id, 2);
  };
  visit(start.id);
  const col = new Map([[start.id, 0]]);
  for (let i = 0; i < nodes.length; i++) {
    for (const [a, b] of forward) if (col.has(a) && (col.get(b) ?? -1) < col.get(a) + 1) col.set(b, col.get(a) + 1);
  }
  let spare = Math.max(0, ...col.values()) + 1;
  nodes.forEach((n) => col.has(n.id) || col.set(n.id, spare)); // unreachable nodes (agents used as tools) at the end
  const rows = new Map(), pos = new Map();
  nodes.forEach((n) => {
    const c = col.get(n.id), r = rows.get(c) || 0;
    rows.set(c, r + 1);
    pos.set(n.id, { x: c * (W + GX), y: r * (H + GY) });
  });
  return { pos, width: Math.max(...[...pos.values()].map((p) => p.x)) + W, height: Math.max(...[...pos.values()].map((p) => p.y)) + H };
}

export function graph(t) {
  const { pos, width, height } = layout(t.nodes, t.edges);
  const svg = s("svg", { viewBox: `-8 -8 ${width + 16} ${height + 16}`, class: "tpl-graph", role: "img",
    "aria-label": `${t.name}: ${t.nodes.length} nodes, ${t.edges.length} edges` });
  for (const e of t.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const back = x2 <= a.x;
    const d = back ? `M${x1},${y1} C${x1 + 40},${y1 + 60} ${x2 - 40},${y2 + 60} ${x2},${y2}`
      : `M${x1},${y1} C${(x1 + x2) / 2},${y1} ${(x1 + x2) / 2},${y2} ${x2},${y2}`;
    svg.append(s("path", { d, class: `tpl-edge${e.port && /fail|reject|timeout|else/.test(e.port) ? " alt" : ""}` }));
    if (e.port) svg.append(s("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, class: "tpl-port", "text-anchor": "middle" }, e.port));
  }
  for (const n of t.nodes) {
    const p = pos.get(n.id);
    svg.append(s("g", { class: `tpl-node t-${n.type}`, transform: `translate(${p.x},${p.y})`, "data-node": n.id },
      s("rect", { width: W, height: H, rx: 8 }),
      s("text", { x: 10, y: 19, class: "tpl-id" }, n.id.length > 20 ? `${n.id.slice(0, 19)}…` : n.id),
      s("text", { x: 10, y: 36, class: "tpl-type" }, n.type.replace("_", " ") + (n.label ? ` · ${n.label}` : ""))));
  }
  return svg;
}

function card(t) {
  const agents = t.nodes.filter((n) => n.type === "agent").length;
  const items = t.evals.reduce((a, e) => a + e.items, 0);
  return h("article.card.tpl-card", { "data-template": t.name },
    h("h2", {}, h("a", { href: `#/templates/${encodeURIComponent(t.name)}` }, t.name)),
    h("p", {}, t.description),
    h("div.tpl-graph-box", {}, graph(t)),
    h("p.muted", {}, `${t.nodes.length} nodes · ${agents} agent${agents === 1 ? "" : "s"} · eval of ${items} items`),
    h("code.tpl-command", {}, t.command));
}

async function detail(main, name) {
  const data = await getJSON("/ui/api/templates");
  const t = data.templates.find((x) => x.name === name);
  if (!t) {
    main.append(empty(`No template named ${name}.`, "Templates: ", data.templates.map((x) => x.name).join(", ")));
    return;
  }
  main.append(
    h("div.page-head", {}, h("h1", {}, t.name), h("p", {}, h("a", { href: "#/templates" }, "All templates"))),
    h("p.tpl-description", {}, t.description),
    h("div.tpl-graph-box.wide", { "data-template": t.name }, graph(t)),
    h("section.tpl-facts", {},
      h("div", {}, h("h2", {}, "Start from it"), h("code.tpl-command", {}, t.command),
        h("p.muted", {}, "Then read its README (below): it says how to run it and what to ingest first.")),
      h("div", {}, h("h2", {}, "Models"), h("ul", {}, Object.entries(t.models).map(([alias, model]) =>
        h("li", {}, h("code", {}, alias), " → ", h("code", {}, model)))),
        h("p.muted", {}, "Aliases in keel.toml: point them at any provider, or a local model.")),
      h("div", {}, h("h2", {}, "Evals"), h("ul", {}, t.evals.map((e) => h("li", {}, h("code", {}, e.file), ` · ${e.items} items`)))),
      Object.keys(t.collections).length ? h("div", {}, h("h2", {}, "Ingest first"), h("ul", {},
        Object.entries(t.collections).map(([c, folder]) => h("li", {}, h("code", {}, `keel context add ${c} ./${folder}`))))) : null,
      h("div", {}, h("h2", {}, "Files"), h("ul.tpl-files", {}, t.files.map((f) => h("li", {}, h("code", {}, f)))))),
    h("details.tpl-readme", {}, h("summary", {}, "README.md"), h("pre", {}, t.readme)));
}

export async function mount(main, { arg }) {
  if (!document.getElementById("templates-css")) {
    document.head.append(h("link", { id: "templates-css", rel: "stylesheet", href: "/ui/static/templates.css" }));
  }
  try {
    if (arg) return await detail(main, arg);
    main.append(h("div.page-head", {}, h("h1", {}, "Templates"),
      h("p.muted", {}, "Runnable projects with sample data and an eval: start one with keel init --template NAME.")));
    const data = await getJSON("/ui/api/templates");
    main.append(h("div.tpl-gallery", {}, data.templates.map(card)));
  } catch (e) {
    showError(main, e, () => { main.replaceChildren(); mount(main, { arg }); });
  }
}

export function unmount() {}
