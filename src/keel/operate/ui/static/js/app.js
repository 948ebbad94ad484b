// The single-page app: a hash router over four pages, and the API-key dialog.
import { apiKey, keyButton, keyRemembered, setApiKey } from "./api.js";

const pages = {
  chat: () => import("./chat.js"),
  runs: () => import("./runs.js"),
  trace: () => import("./trace.js"),
  evals: () => import("./evals.js"),
  dashboard: () => import("./dashboard.js"),
  workflows: () => import("./workflows.js"), // the list, and #/workflows/NAME: the canvas
  templates: () => import("./templates.js"), // the gallery, and #/templates/NAME: one template
  connectors: () => import("./connectors.js"), // the connector registry (admin keys)
};
let current = null;

async function route() {
  const hash = location.hash.replace(/^#\/?/, "") || "chat";
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  let name = parts[0], arg = parts[1];
  if (name === "runs" && arg) name = "trace";
  if (!pages[name]) name = "chat";
  document.querySelectorAll("nav a").forEach((a) => {
    const on = a.dataset.page === (name === "trace" ? "runs" : name);
    on ? a.setAttribute("aria-current", "page") : a.removeAttribute("aria-current");
  });
  if (current && current.unmount) current.unmount();
  document.title = `${{ chat: "Chat", runs: "Runs", trace: "Trace", evals: "Evals", dashboard: "Service health", connectors: "Connectors", workflows: arg ? arg : "Workflows", templates: arg ? arg : "Templates" }[name]} · Keel`;
  const main = document.getElementById("main");
  main.classList.toggle("canvas-main", name === "workflows" && !!arg);
  main.replaceChildren();
  document.getElementById("notice").replaceChildren(); // a key banner comes back if this page is refused too
  const mod = await pages[name]();
  current = mod;
  try {
    await mod.mount(main, { arg, params: new URLSearchParams(query) });
  } catch (e) {
    console.error(e);
    const { showError } = await import("./api.js");
    showError(main, e, () => route());
  }
}

function keyDialog() {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input"), remember = document.getElementById("key-remember");
  keyButton();
  document.getElementById("key-button").addEventListener("click", () => {
    input.value = apiKey(); remember.checked = keyRemembered(); dialog.showModal();
  });
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save") setApiKey(input.value.trim(), { remember: remember.checked });
    if (dialog.returnValue === "clear") setApiKey("");
    if (dialog.returnValue === "save" || dialog.returnValue === "clear") route(); // read the page again with the new key
  });
}

keyDialog();
window.addEventListener("hashchange", () => { route(); document.getElementById("main").focus(); });
route();
