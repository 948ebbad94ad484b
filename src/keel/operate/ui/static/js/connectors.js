// Connectors: the registry (docs/connectors.md) with each connector's tools and status, read
// by reaching its server with its stored credentials. Admin keys of every workflow only.
import { empty, fmtAgo, fmtTime, getJSON, h, showError, statusBadge } from "./api.js";

export async function mount(main) {
  main.append(h("div.page-head", {}, h("h1", {}, "Connectors"),
    h("p.muted", {}, "MCP servers and HTTP APIs an admin registered with ", h("code", {}, "keel connectors add"),
      ": who may use them, what they offer, and whether they answer. Credentials are never shown.")));
  const body = h("div", { id: "connectors-results" });
  main.append(body);
  await load(body);
}

async function load(body) {
  body.replaceChildren(h("p.muted", { role: "status" }, "Loading connectors…"));
  let data;
  try {
    data = await getJSON("/ui/api/connectors");
  } catch (e) {
    body.replaceChildren();
    showError(body, e, () => load(body));
    return;
  }
  if (!data.connectors.length) {
    body.replaceChildren(empty("No connectors yet", "Add one where Keel runs: an MCP server with ",
      h("code", {}, "keel connectors add NAME --server URL"), ", named in a spec as ",
      h("code", {}, "mcp: [{connector: NAME}]"), "; or an HTTP API with ",
      h("code", {}, "keel connectors add NAME --http URL"), ", named as ",
      h("code", {}, "http: {connector: NAME}"), "."));
    return;
  }
  body.replaceChildren(...data.connectors.map((c) => section(c)));
}

function section(c) {
  const creds = [...c.env.map((n) => `env ${n}`), ...c.headers.map((n) => `header ${n}`)];
  if (c.oauth) creds.push(c.oauth.logged_in ? "OAuth (logged in)" : "OAuth (not logged in)");
  const status = h("span", { class: "connector-status", "aria-live": "polite" }, statusBadge("checking"));
  const tools = h("div", { class: "connector-tools" }, h("p.muted.small", {}, "Reaching its server…"));
  const el = h("section", { class: "connector card", "data-connector": c.name, "aria-labelledby": `connector-${c.name}` },
    h("h2", { id: `connector-${c.name}` }, c.name, " ", status),
    h("dl", { class: "facts" },
      h("dt", {}, "Kind"), h("dd", {}, c.kind === "http" ? "HTTP API (the http tool)" : "MCP server"),
      h("dt", {}, c.kind === "http" ? "Base URL" : "Server"), h("dd", {}, h("code", {}, c.server)),
      h("dt", {}, "Workflows"), h("dd", {}, c.workflows.join(", ")),
      h("dt", {}, "API keys"), h("dd", {}, (c.keys || ["*"]).join(", ")),
      h("dt", {}, "Credentials"), h("dd", {}, creds.length ? creds.join(", ") : "none"),
      h("dt", {}, "Changed"), h("dd", { title: fmtTime(c.updated_at) }, fmtAgo(c.updated_at))),
    tools);
  probe(c.name, status, tools);
  return el;
}

async function probe(name, status, tools) {
  let r;
  try {
    r = await getJSON(`/ui/api/connectors/${encodeURIComponent(name)}/tools`);
  } catch (e) {
    status.replaceChildren(statusBadge("error"));
    tools.replaceChildren();
    showError(tools, e, () => probe(name, status, tools));
    return;
  }
  if (!r.ok) {
    status.replaceChildren(statusBadge("down"));
    status.firstChild.classList.replace("info", "bad");
    tools.replaceChildren(h("p", { class: "connector-error", role: "alert" }, r.error),
      r.hint ? h("p.muted.small", {}, "Fix: ", h("code", {}, r.hint)) : "");
    return;
  }
  status.replaceChildren(statusBadge("ok"));
  if (r.http) {
    tools.replaceChildren(h("p", {}, `An HTTP API for the http tool (http: {connector: ${name}}): it answered HTTP ${r.http.status}; `,
      `the tool may call ${r.http.hosts.join(", ")} with ${r.http.methods.join(", ")}.`));
    return;
  }
  tools.replaceChildren(h("div.table-wrap", {}, h("table.data", {},
    h("caption.sr-only", {}, `Tools of ${name}`),
    h("thead", {}, h("tr", {}, ...["Tool", "Workflows may call it", "Approval", "Description"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, r.tools.map((t) => h("tr", { "data-tool": t.name },
      h("td", {}, h("code", {}, t.name)),
      h("td", {}, t.allowed ? "allowed" : "not allowed"),
      h("td", {}, t.policy === "always" ? "needs approval" : "runs without approval"),
      h("td.muted", {}, (t.description || "").split("\n")[0])))))));
}
