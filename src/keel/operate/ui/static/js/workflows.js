// Workflows: the list (drafts and published versions), and #/workflows/NAME: the canvas, a
// React Flow bundle built from ../../canvas-src (static/canvas/canvas.js) and mounted here.
import { apiKey, empty, fmtAgo, getJSON, h, postSSE, showError } from "./api.js";

let canvas = null; // the loaded bundle, while the canvas page is open

export async function mount(main, { arg }) {
  if (arg) return openCanvas(main, arg);
  main.append(h("div.page-head", {}, h("h1", {}, "Workflows"),
    h("p.muted", {}, "Open one to see and edit its graph; drafts are saved apart from published versions.")));
  const form = h("form.filters", { "aria-label": "New workflow", onsubmit: (e) => {
    e.preventDefault();
    const name = form.querySelector("input").value.trim();
    const bad = form.querySelector(".problem");
    if (!/^[a-z0-9][a-z0-9_.-]{0,99}$/.test(name)) {
      bad.textContent = "A workflow name is lowercase letters, digits, _, - and ., starting with a letter or digit.";
      return;
    }
    location.hash = `#/workflows/${encodeURIComponent(name)}`;
  } },
  h("div.field", {}, h("label", { for: "new-workflow" }, "New workflow"), h("input", { id: "new-workflow", placeholder: "name", autocomplete: "off" })),
  h("button", { type: "submit" }, "Create"), h("p.problem.error", { role: "alert" }));
  const list = h("div", { id: "workflows-list" });
  main.append(form, list);
  preload();
  await load(list);
}

/** The list is the way in to a canvas: fetch and parse its bundle meanwhile, so opening a
 * workflow does not wait for 510 kB of script (docs/benchmarks.md, "Workflow canvas"). */
function preload() {
  if (!document.getElementById("canvas-css")) {
    document.head.append(h("link", { id: "canvas-css", rel: "stylesheet", href: "/ui/static/canvas/canvas.css" }));
  }
  if (!document.getElementById("canvas-js")) {
    document.head.append(h("link", { id: "canvas-js", rel: "modulepreload", href: "/ui/static/canvas/canvas.js" }));
  }
}

async function load(list) {
  list.replaceChildren(h("p.muted", { role: "status" }, "Loading workflows…"));
  let data;
  try {
    data = await getJSON("/ui/api/canvas/workflows");
  } catch (e) {
    list.replaceChildren();
    showError(list, e, () => load(list));
    return;
  }
  if (!data.workflows.length) {
    list.replaceChildren(empty("No workflows yet.", "Create one above, or publish a spec: ", h("code", {}, "keel workflows publish support.yaml")));
    return;
  }
  list.replaceChildren(h("table.wf-table", {},
    h("thead", {}, h("tr", {}, ["Workflow", "Description", "Published", "Draft", "Changed"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, data.workflows.map((w) => h("tr", { "data-workflow": w.name },
      h("td", {}, h("a", { href: `#/workflows/${encodeURIComponent(w.name)}` }, w.name)),
      h("td", {}, w.description || ""),
      h("td", {}, w.version ? `v${w.version}` : "–"),
      h("td", {}, w.has_draft ? `r${w.revision}${w.draft_changed ? " (unpublished changes)" : ""}` : "–"),
      h("td", {}, w.updated_at ? fmtAgo(w.updated_at) : "–"))))));
}

async function openCanvas(main, name) {
  preload();
  canvas = await import("/ui/static/canvas/canvas.js");
  canvas.mountCanvas(main, { name, host: { apiKey, postSSE } });
}

export function unmount() {
  if (canvas) { canvas.unmountCanvas(); canvas = null; }
}
