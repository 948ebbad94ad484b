// Talking to the server: JSON, Server-Sent Events over fetch, and errors a person can act on.

const KEY = "keel.apiKey";
const IDLE_MS = 20000; // the server pings every 5 s while a run is busy: 20 s of silence is a lost connection

// The key lives in sessionStorage (this tab, until it closes) unless the person ticks
// "Remember": then in localStorage (this browser, until "Forget key"). Either is readable
// by any script on this origin; the UI loads none but its own (docs/ui.md, "API keys").
export const apiKey = () => sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "";
export const keyRemembered = () => !!localStorage.getItem(KEY);
export function setApiKey(k, { remember = keyRemembered() } = {}) {
  sessionStorage.removeItem(KEY); localStorage.removeItem(KEY);
  if (k) (remember ? localStorage : sessionStorage).setItem(KEY, k);
  keyButton();
}

/** The header's API key button says whether a key is set. */
export function keyButton() {
  const b = document.getElementById("key-button");
  if (b) b.textContent = apiKey() ? "API key ✓" : "API key";
}

let keylessWorked = false; // a request without a key succeeded: a later "key needed" is new

/** A failed request. kind: "auth" (401/403), "server" (5xx), "client" (other 4xx), "network".
 * ``code`` is the server's error code (e.g. missing_api_key); ``sentKey`` whether a key was sent. */
export class ApiError extends Error {
  constructor(kind, message, { hint = "", status = 0, code = "", sentKey = false } = {}) {
    super(message);
    this.kind = kind; this.hint = hint; this.status = status; this.code = code; this.sentKey = sentKey;
  }
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  if (apiKey()) h.Authorization = `Bearer ${apiKey()}`;
  return h;
}

async function failure(resp) {
  let message = `${resp.status} ${resp.statusText}`, hint = "", code = "";
  try {
    const body = await resp.json();
    if (body && body.error) { message = body.error.message || message; hint = body.error.hint || ""; code = body.error.code || ""; }
    else if (body && body.detail) message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch { /* not JSON: keep the status line */ }
  const kind = resp.status === 401 || resp.status === 403 ? "auth" : resp.status >= 500 ? "server" : "client";
  return new ApiError(kind, message, { hint, status: resp.status, code, sentKey: !!apiKey() });
}

const TIMEOUT_MS = 15000; // a JSON request that takes longer is reported, not waited on forever

/** fetch ``path``; the answer's headers must arrive within ``timeout`` ms (0: no limit). */
async function send(path, init, timeout = TIMEOUT_MS) {
  const ctl = new AbortController();
  if (init.signal) init.signal.addEventListener("abort", () => ctl.abort(init.signal.reason));
  const timer = timeout ? setTimeout(() => ctl.abort("timeout"), timeout) : null;
  let resp;
  try {
    resp = await fetch(path, { ...init, signal: ctl.signal });
  } catch (e) {
    if (ctl.signal.reason === "timeout") {
      throw new ApiError("network", `The server did not answer within ${timeout / 1000} s.`, { hint: "It may be overloaded or stuck; retry in a moment." });
    }
    if (init.signal && init.signal.aborted) throw e;
    throw new ApiError("network", "Cannot reach the Keel server.", { hint: "Check that `keel serve` is running, then retry." });
  } finally {
    if (timer) clearTimeout(timer);
  }
  if (!resp.ok) throw await failure(resp);
  if (!apiKey()) keylessWorked = true;
  return resp;
}

async function body(resp, read) {
  try {
    return await read(resp);
  } catch {
    throw new ApiError("network", "The connection was lost while reading the answer.", { hint: "Retry." });
  }
}

export async function getJSON(path, { signal } = {}) {
  return body(await send(path, { headers: headers(), signal }), (r) => r.json());
}

export async function postJSON(path, payload) {
  return body(await send(path, { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(payload ?? {}) }), (r) => r.json());
}

/** POST ``body`` and yield {event, data} from the text/event-stream answer. */
export async function* postSSE(path, body, { signal } = {}) {
  const resp = await send(path, {
    method: "POST", signal,
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body ?? {}),
  });
  let finished = false;
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  while (true) {
    let timer;
    const idle = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new ApiError("network", "The server stopped answering while the run was streaming.")), IDLE_MS);
    });
    let chunk;
    try {
      chunk = await Promise.race([reader.read(), idle]);
    } catch (e) {
      reader.cancel().catch(() => {});
      if (e instanceof ApiError) throw e;
      throw new ApiError("network", "The connection was lost while the answer was streaming.");
    } finally {
      clearTimeout(timer);
    }
    if (chunk.done) {
      if (!finished) throw new ApiError("network", "The connection was lost before the run finished.", { hint: "The run goes on in the server: retry to see where it stands." });
      return;
    }
    buffer += decoder.decode(chunk.value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) continue;
      if (event === "done" || event === "error") finished = true;
      yield { event, data: JSON.parse(data) };
    }
  }
}

const TITLES = {
  auth: "Your API key was refused: it may have expired or been revoked.", // only when one was sent
  forbidden: "Your API key is not allowed to do this.",
  server: "The server had a problem.",
  network: "The connection to the server was lost.",
  client: "The request was not accepted.",
};

/** What an auth error means for the person: [title, what to do]. */
function authText(err) {
  if (err.status === 403) return [TITLES.forbidden, `${err.message}${err.hint ? ` — ${err.hint}` : ""}`];
  if (err.sentKey) return [TITLES.auth, `${err.message}${err.hint ? ` — ${err.hint}` : ""}`];
  return [keylessWorked ? "This server now requires an API key." : "This server requires an API key.",
    "Ask whoever runs it for one, or create one where the server runs: keel keys create NAME --workflow '*' " +
    "(it prints the key once). Then enter it below or with the API key button at the top right."];
}

/** Show ``err`` in ``where`` as an alert with a Retry button. An auth error (no key, a refused
 * key) is a banner across the top of the page instead, with a key field, whatever ``where`` is. */
export function showError(where, err, retry) {
  const box = document.createElement("div");
  box.className = "alert"; box.setAttribute("role", "alert");
  const kind = err instanceof ApiError ? err.kind : "server";
  if (!(err instanceof ApiError)) console.error(err);
  const [titleText, detailText] = kind === "auth" ? authText(err) : [err.title || TITLES[kind], err.message + (err.hint ? ` — ${err.hint}` : "")];
  const title = document.createElement("p");
  title.innerHTML = `<strong>${esc(titleText)}</strong>`;
  box.append(title);
  const detail = document.createElement("p");
  detail.textContent = detailText;
  box.append(detail);
  const banner = kind === "auth" && err.status === 401 ? document.getElementById("notice") : null;
  if (banner) { box.classList.add("key-banner"); banner.replaceChildren(); where = banner; }
  const row = document.createElement("div"); row.className = "row";
  if (kind === "auth") {
    const id = `key-${Math.random().toString(36).slice(2)}`;
    row.innerHTML = `<div class="field"><label for="${id}">${err.sentKey ? "New API key" : "API key"}</label><input id="${id}" type="password" autocomplete="off" placeholder="keel_sk_…"></div>`;
  }
  if (retry) {
    const b = document.createElement("button"); b.type = "button";
    b.textContent = kind === "auth" ? "Save key and retry" : "Retry";
    b.addEventListener("click", () => {
      const input = row.querySelector("input");
      if (input && input.value.trim()) setApiKey(input.value.trim());
      box.remove(); retry();
      // a retry that is refused again puts its own banner back
    });
    row.append(b);
  }
  box.append(row);
  where.append(box);
  (row.querySelector("input") || row.querySelector("button"))?.focus();
  return box;
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export const fmtMs = (ms) => (ms == null ? "–" : ms < 1 ? `${ms.toFixed(2)} ms` : ms < 1000 ? `${ms.toFixed(ms < 10 ? 1 : 0)} ms` : `${(ms / 1000).toFixed(2)} s`);
export const fmtTime = (t) => (t == null ? "–" : new Date(t * 1000).toLocaleString());
export const fmtNum = (x, d = 1) => (x == null ? "–" : Number.isInteger(x) ? String(x) : x.toFixed(d));
export const fmtPct = (x) => (x == null ? "–" : `${(x * 100).toFixed(x > 0.999 && x < 1 ? 2 : 1)}%`);

/** Make an element: h("div.card", {attrs}, ...children). Strings become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** An empty state: what is missing and what to do about it. */
export function empty(title, ...what) {
  return h("div.empty", { role: "status" }, h("p.empty-title", {}, title), h("p", {}, ...what));
}

/** Compact milliseconds for chart axes: 0, 250 ms, 1.5 s. */
export const fmtMsAxis = (v) => (v == null ? "" : v === 0 ? "0" : v < 1 ? `${v.toFixed(2)} ms` : v < 1000 ? `${Math.round(v)} ms` : `${+(v / 1000).toFixed(2)} s`);
export const fmtTokens = (n) => (n == null ? "–" : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : String(Math.round(n)));
export const fmtCost = (c) => (c == null ? "–" : c === 0 ? "$0" : c < 0.01 ? `$${c.toFixed(4)}` : `$${c.toFixed(2)}`);
export const fmtAgo = (t) => {
  const s = Date.now() / 1000 - t;
  if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t * 1000).toLocaleDateString();
};
export function statusBadge(status) {
  const tone = { succeeded: "ok", ok: "ok", finished: "ok", completed: "ok", approved: "ok", failed: "bad", error: "bad", rejected: "bad", expired: "bad", waiting: "warn", pending: "warn", running: "info" }[status] || "info";
  return h(`span.badge.${tone}`, {}, status);
}
