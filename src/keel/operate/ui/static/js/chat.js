// Chat: pick a workflow, talk to it, see tools, citations and approvals inline.
import { ApiError, empty, getJSON, h, postSSE, showError, statusBadge } from "./api.js";
import { renderWidget } from "./widgets.js";

// The thread is kept in sessionStorage (this tab): back from a trace, or after a reload, every
// answer comes back with its tools, sources, status, trace link, a failed run's error and a
// pending approval. Only the user's messages and succeeded answers go back to the workflow.
const THREAD_KEY = "keel.chat.thread";
let state = { workflows: [], workflow: "", version: "", messages: [], busy: false, ...restoreThread() };
let root = null, abort = null;

function restoreThread() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(THREAD_KEY) || "null");
    if (saved && Array.isArray(saved.messages)) return { workflow: saved.workflow || "", version: saved.version || "", messages: saved.messages };
  } catch { /* unreadable: start afresh */ }
  return {};
}

function saveThread() {
  try {
    sessionStorage.setItem(THREAD_KEY, JSON.stringify({ workflow: state.workflow, version: state.version, messages: state.messages }));
  } catch { /* full or disabled storage: the thread lives in this page only */ }
}

/** The thread's record of the answer in ``li`` (made, and added to the thread, on first use), with ``fields``. */
function record(li, fields = {}) {
  if (!li._rec) {
    li._rec = { role: "assistant", content: "", status: "running", run_id: null, error: null, tools: [], citations: [], approval: null };
    state.messages.push(li._rec);
  }
  Object.assign(li._rec, fields);
  saveThread();
  return li._rec;
}

export async function mount(main, { params }) {
  root = main;
  main.append(h("h1.sr-only", {}, "Chat"));
  const body = h("div.chat");
  main.append(body);
  let data;
  try {
    data = await getJSON("/ui/api/workflows");
  } catch (e) {
    showError(main, e, () => { main.replaceChildren(); mount(main, { params }); }); // full width, not the sidebar's column
    return;
  }
  state.workflows = data.workflows;
  if (!state.workflows.length) {
    body.append(empty("No workflows yet",
      "Publish one to chat with it: ", h("code", {}, "keel workflows publish my-workflow.yaml"),
      ". Then reload this page."));
    return;
  }
  const wanted = params.get("workflow");
  if (wanted && wanted !== state.workflow && state.workflows.some((w) => w.name === wanted)) {
    state.workflow = wanted; state.version = ""; state.messages = [];
  }
  if (!state.workflows.some((w) => w.name === state.workflow)) {
    // The server's own project first (keel up's workflow), else the latest published.
    state.workflow = data.default || state.workflows[0].name; state.version = ""; state.messages = [];
  }
  body.append(sidebar(), conversation());
  renderThread();
}

export function unmount() {
  if (abort) abort.abort();
  root = null;
}

function sidebar() {
  const wf = h("select", { id: "chat-workflow", onchange: (e) => { state.workflow = e.target.value; state.version = ""; newThread(); fillVersions(); } },
    state.workflows.map((w) => h("option", { value: w.name, selected: w.name === state.workflow }, w.name)));
  const ver = h("select", { id: "chat-version", onchange: (e) => { state.version = e.target.value; newThread(); } });
  const fillVersions = () => {
    const w = state.workflows.find((x) => x.name === state.workflow);
    ver.replaceChildren(h("option", { value: "" }, `latest (v${w.versions[0]})`),
      ...w.versions.map((v) => h("option", { value: String(v), selected: String(v) === state.version }, `v${v}`)));
    const d = document.getElementById("chat-desc");
    if (d) d.textContent = w.description || "";
    const a = document.getElementById("chat-answerer");  // issue 19: no model, and how to add one
    if (a) a.textContent = w.answerer ? `Answers without a model: the extractive answerer quotes the sentences of the `
      + `documents that answer, with citations. Switch to a model in one line: ${w.answerer.switch}` : "";
  };
  const w = state.workflows.find((x) => x.name === state.workflow);
  const aside = h("aside.chat-side", { "aria-label": "Conversation settings" },
    h("div.field", {}, h("label", { for: "chat-workflow" }, "Workflow"), wf),
    h("div.field", {}, h("label", { for: "chat-version" }, "Version"), ver),
    h("p.muted.small", { id: "chat-desc" }, w.description || ""),
    h("p.muted.small", { id: "chat-answerer" }),
    h("button.secondary", { type: "button", id: "new-thread", onclick: () => { newThread(); document.getElementById("chat-input")?.focus(); } }, "New thread"));
  queueMicrotask(fillVersions);
  return aside;
}

function conversation() {
  const input = h("textarea", { id: "chat-input", rows: "2", placeholder: "Ask something…", "aria-describedby": "chat-help",
    onkeydown: (e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); } } });
  const form = h("form.composer", { onsubmit: (e) => { e.preventDefault(); send(input.value); } },
    h("label.sr-only", { for: "chat-input" }, "Message"),
    input,
    h("button", { type: "submit", id: "send" }, "Send"),
    h("p.muted.small", { id: "chat-help" }, "Enter sends, Shift+Enter adds a line."));
  return h("section.chat-main", { "aria-label": "Conversation" },
    h("ol.thread", { id: "thread", "aria-label": "Messages" }), form);
}

function newThread() {
  if (abort) abort.abort();
  state.messages = []; state.busy = false;
  saveThread();
  renderThread();
}

function renderThread() {
  const thread = document.getElementById("thread");
  if (!thread) return;
  thread.replaceChildren();
  if (!state.messages.length) {
    thread.append(h("li.thread-empty", {}, empty(`Start a conversation with ${state.workflow}`,
      "Type a message below. The answer streams in here, with the tools it called and the sources it cited.")));
  }
  for (const m of state.messages) thread.append(m.role === "assistant" ? restored(m) : bubble(m.role, m.content));
}

/** An answer of the thread as it ended: tools, text, sources, status and trace link, error, approval. */
function restored(m) {
  const li = h("li.msg.assistant", {}, h("div.who", {}, state.workflow), h("div.progress.muted.small", { role: "status" }),
    h("div.tools", {}, (m.tools || []).map(toolCall)),
    m.withdrawn ? h("div.draft-note.small.withdrawn", {}, h("strong", {}, "Draft withdrawn: "), m.withdrawn) : "",
    h("div.text", { "aria-live": "polite" }, m.content || ""),
    h("ol.citations", { "aria-label": "Sources" }, (m.citations || []).map(citation)), h("div.after"));
  li._rec = m;
  for (const w of m.widgets || []) showWidget(li, w);
  if (m.run_id) li.dataset.runId = m.run_id;
  outcome(li, m);
  if (m.status === "waiting" && m.approval) li.querySelector(".after").append(approvalCard(m.approval, li));
  if (m.status === "error" || m.status === "running") {
    li.querySelector(".after").append(h("div.alert", { role: "alert" }, h("p", {}, h("strong", {}, m.status === "error" ? "The run could not go on. " : "This answer was still streaming when the page was left. "),
      m.error || (m.run_id ? "Open its trace to see how it ended." : ""))));
  }
  return li;
}

function bubble(role, text) {
  return h(`li.msg.${role}`, {}, h("div.who", {}, role === "user" ? "You" : state.workflow), h("div.text", {}, text));
}

async function send(text) {
  text = text.trim();
  if (!text || state.busy) return;
  const input = document.getElementById("chat-input");
  input.value = "";
  const thread = document.getElementById("thread");
  thread.querySelector(".thread-empty")?.remove();
  state.messages.push({ role: "user", content: text });
  thread.append(bubble("user", text));
  saveThread();
  // an answer shown as widgets goes back as their data, as JSON (as Keel's ChatKit endpoint does)
  const said = (m) => m.content || (m.widgets || []).map((w) => JSON.stringify(w.data)).join("\n");
  const history = state.messages.filter((m) => m.role === "user" || (m.status === "succeeded" && said(m)));
  const turn = { messages: history.map((m) => ({ role: m.role, content: said(m) })) };
  await stream("/ui/api/chat", { workflow: state.workflow, version: state.version ? Number(state.version) : null, ...turn });
}

/** One assistant turn: stream ``path`` into a new bubble. */
async function stream(path, payload, into = null) {
  const thread = document.getElementById("thread");
  const li = into || h("li.msg.assistant", { "aria-busy": "true" });
  if (!into) {
    li.append(h("div.who", {}, state.workflow),
      h("div.progress.muted.small", { role: "status" }, h("span.spinner", { "aria-hidden": "true" }), " Starting…"),
      h("div.tools"), h("div.text", { "aria-live": "polite" }), h("ol.citations", { "aria-label": "Sources" }), h("div.after"));
    thread.append(li);
  }
  record(li);
  li.setAttribute("aria-busy", "true");
  const progress = li.querySelector(".progress"), text = li.querySelector(".text"), after = li.querySelector(".after");
  state.busy = true; setBusy(true);
  abort = new AbortController();
  let runId = li.dataset.runId || null;
  try {
    for await (const { event, data } of postSSE(path, payload, { signal: abort.signal })) {
      if (event === "run") { runId = data.run_id; li.dataset.runId = runId; record(li, { run_id: runId }); }
      else if (event === "node") { onNode(progress, data); if (isFailedCheck(data)) withdraw(li, data.node_id); }
      else if (event === "tool") { li.querySelector(".tools").append(toolCall(data)); record(li).tools.push(data); }
      else if (event === "citation") { li.querySelector(".citations").append(citation(data)); record(li).citations.push(data); }
      else if (event === "token") {
        if (!li.dataset.streamed) { text.textContent = ""; li.dataset.streamed = "1"; }
        if (data.provisional) draft(li);
        text.textContent += data.text; thread.scrollTop = thread.scrollHeight;
      }
      else if (event === "token_reset") { text.textContent = ""; }
      else if (event === "delta") {
        // the run's answer: it replaces the pieces streamed so far (a draft that passed its checks,
        // or what the workflow answers instead of a withdrawn one)
        if (li.dataset.streamed) { text.textContent = data.text; delete li.dataset.streamed; } else text.textContent += data.text;
        settle(li);
        thread.scrollTop = thread.scrollHeight;
      }
      else if (event === "widget") { if (showWidget(li, data)) record(li, { widgets: [...(record(li).widgets || []), data] }); }
      else if (event === "approval") { after.append(approvalCard(data, li)); record(li, { approval: data }); }
      else if (event === "error") throw Object.assign(new ApiError("server", data.message, { hint: data.hint || "" }), { title: "The run could not go on." });
      else if (event === "done") finish(li, data);
    }
  } catch (e) {
    if (e.name === "AbortError" || !root) return;
    withdraw(li, null, "the run stopped before it was checked."); // never leave an unchecked draft behind
    progress.replaceChildren();
    record(li, { status: "error", error: e.message + (e.hint ? ` — ${e.hint}` : "") });
    showError(after, e, () => (runId ? resume(li, runId) : stream(path, payload, li)));
  } finally {
    li.setAttribute("aria-busy", "false");
    state.busy = false; setBusy(false);
    abort = null;
  }
}

// Drafts: an Agent node's words that a later node (a Guardrails check, a Transform, an End
// expression) may still withdraw or change stream in as a draft, styled and labelled
// "checking…". The run's answer (``delta``) replaces the draft; a failed check withdraws it
// at once, visibly, before the workflow's own answer arrives.

function isFailedCheck(ev) {
  return ev.kind === "node_finished" && ev.node_type === "guardrails" && ev.port === "fail";
}

function draftNote(li) {
  let note = li.querySelector(".draft-note");
  if (!note) {
    note = h("div.draft-note.small", { role: "status" });
    li.querySelector(".text").before(note);
  }
  return note;
}

function draft(li) {
  const text = li.querySelector(".text");
  if (text.classList.contains("provisional")) return;
  text.classList.add("provisional");
  const note = draftNote(li);
  note.className = "draft-note small checking";
  note.replaceChildren(h("span.spinner", { "aria-hidden": "true" }), " Draft — checking…");
}

/** Take a draft back: its words leave the page, a note says why (``check``: the Guardrails node). */
function withdraw(li, check, why = "") {
  const text = li.querySelector(".text");
  if (!text.classList.contains("provisional")) return;
  text.classList.remove("provisional");
  text.textContent = "";
  const reason = check ? `the check “${check}” did not pass, so it is not shown.` : why;
  const note = draftNote(li);
  note.className = "draft-note small withdrawn";
  note.replaceChildren(h("strong", {}, "Draft withdrawn: "), reason);
  record(li, { withdrawn: reason });
}

/** The run's answer is in: a draft still on the page was what the checks let through. */
function settle(li) {
  const text = li.querySelector(".text");
  text.classList.remove("provisional");
  const note = li.querySelector(".draft-note.checking");
  if (note) note.remove();
}

function setBusy(on) {
  const b = document.getElementById("send");
  if (b) { b.disabled = on; b.textContent = on ? "Running…" : "Send"; }
}

function onNode(progress, ev) {
  if (ev.kind === "run_finished" || !ev.node_id) return;
  const what = { node_started: "Running", node_finished: "Finished", node_failed: "Failed at", waiting: "Waiting at" }[ev.kind] || ev.kind;
  progress.replaceChildren(h("span.spinner", { "aria-hidden": "true" }), ` ${what} ${ev.node_id}${ev.node_type ? ` (${ev.node_type})` : ""}…`);
}

function finish(li, done) {
  const text = li.querySelector(".text");
  withdraw(li, null, "the run did not confirm it as the answer."); // a draft no answer replaced
  const rec = record(li, { run_id: done.run_id, status: done.status, error: done.error || null, content: text.textContent,
    ...(done.status === "waiting" ? {} : { approval: null }) });
  outcome(li, rec);
  const approve = done.status === "waiting" && li.querySelector(".approval button:not([disabled])");
  (approve || document.getElementById("chat-input"))?.focus();
}

/** The end of an answer: its status and trace link, and a failed run's error. */
function outcome(li, m) {
  const progress = li.querySelector(".progress"), after = li.querySelector(".after");
  if (m.run_id) {
    progress.replaceChildren(statusBadge(m.status), " ",
      h("a", { href: `#/runs/${encodeURIComponent(m.run_id)}`, class: "trace-link" }, "Open trace"));
  }
  if (m.status === "failed") {
    after.append(h("div.alert", { role: "alert" }, h("p", {}, h("strong", {}, "The run failed. "), m.error || "")));
  }
}

function toolCall(t) {
  const args = typeof t.arguments === "string" ? t.arguments : JSON.stringify(t.arguments ?? {}, null, 2);
  const result = typeof t.result === "string" ? t.result : JSON.stringify(t.result ?? null, null, 2);
  return h("details.tool", {},
    h("summary", {}, h("span.tool-icon", { "aria-hidden": "true" }, "⚙"), " Called ", h("code", {}, t.name || "tool"),
      t.error ? h("span.badge.bad", {}, "error") : "", t.duration_ms != null ? h("span.muted.small", {}, ` ${Math.round(t.duration_ms)} ms`) : ""),
    h("div.kv", {}, h("div", {}, h("strong", {}, "Arguments"), h("pre", {}, args)),
      h("div", {}, h("strong", {}, t.error ? "Error" : "Result"), h("pre", {}, t.error || result))));
}

function citation(c) {
  return h("li.citation", {}, h("span.cite-n", {}, `[${c.index ?? "?"}]`), " ",
    h("strong", {}, c.title || c.source || "source"), c.anchor ? h("span.muted", {}, ` · ${c.anchor}`) : "",
    c.text ? h("blockquote", {}, c.text.length > 280 ? c.text.slice(0, 280) + "…" : c.text) : "");
}

/** An Agent node's widget output (docs/widgets.md), once per step; false when it was shown already. */
function showWidget(li, w) {
  const key = w.widget?.key || "";
  let box = li.querySelector(".widgets");
  if (!box) { box = h("div.widgets"); li.querySelector(".text").before(box); }
  if (key && [...box.children].some((el) => el.dataset.key === key)) return false;
  box.append(renderWidget(w.widget, (action) => widgetAction(action, key)));
  return true;
}

/** A widget's button or form: a new turn of the conversation saying which action, from which run and node
 * (the same turn Keel's ChatKit endpoint makes of it). */
function widgetAction(action, key) {
  const [runId, nodeId] = key.replace(/^keel-widget:/, "").split(":");
  send(JSON.stringify({ action: action.type, payload: action.payload || {}, from: { run_id: runId || null, node_id: nodeId || null } }));
}

function approvalCard(a, li) {
  const card = h("div.approval", { role: "group", "aria-labelledby": `appr-${a.id}` },
    h("p", { id: `appr-${a.id}` }, h("strong", {}, "Approval needed: "), a.message || "The workflow asks for a decision."));
  const decide = async (decision) => {
    card.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    card.append(h("p.muted.small", { role: "status" }, decision === "approve" ? "Approved — continuing…" : "Rejected — continuing…"));
    li.querySelector(".text").textContent = "";
    await stream(`/ui/api/approvals/${encodeURIComponent(a.id)}/${decision}`, {}, li);
  };
  card.append(h("div.row", {},
    h("button.approve", { type: "button", onclick: () => decide("approve") }, "Approve"),
    h("button.danger", { type: "button", onclick: () => decide("reject") }, "Reject")));
  return card;
}

/** After a lost connection: read the run, which went on in the server. */
async function resume(li, runId) {
  const progress = li.querySelector(".progress"), after = li.querySelector(".after");
  progress.replaceChildren(h("span.spinner", { "aria-hidden": "true" }), " Checking the run…");
  try {
    const r = await getJSON(`/ui/api/runs/${encodeURIComponent(runId)}`);
    if (r.run.status === "running") {
      progress.replaceChildren(statusBadge("running"), " Still running in the server. ");
      showError(after, Object.assign(new ApiError("network", "The run has not finished yet."), { title: "Still running." }), () => resume(li, runId));
      return;
    }
    const out = r.run.output;
    const text = out == null ? "" : typeof out === "string" ? out : out.answer || out.output_text || JSON.stringify(out, null, 2);
    li.querySelector(".text").textContent = text;
    const pending = r.approvals.find((a) => a.status === "pending");
    if (pending) after.append(approvalCard(pending, li));
    finish(li, { run_id: runId, status: r.run.status, error: r.run.error });
  } catch (e) {
    progress.replaceChildren();
    showError(after, e, () => resume(li, runId));
  }
}

