// JSON requests to the canvas API, with the UI's API key (from the host page).

export class CanvasError extends Error {
  constructor(message, { status = 0, hint = "", code = "", field = "", body = null } = {}) {
    super(message);
    Object.assign(this, { status, hint, code, field, body });
  }
}

export function makeApi(host) {
  async function call(method, path, payload) {
    const headers = { Accept: "application/json" };
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    const key = host.apiKey ? host.apiKey() : "";
    if (key) headers.Authorization = `Bearer ${key}`;
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: payload === undefined ? undefined : JSON.stringify(payload) });
    } catch {
      throw new CanvasError("Cannot reach the Keel server.", { hint: "Check that `keel serve` is running, then retry." });
    }
    let data = null;
    try { data = await resp.json(); } catch { /* not JSON */ }
    if (!resp.ok) {
      const err = (data && data.error) || {};
      const message = err.message || (data && typeof data.detail === "string" ? data.detail : `${resp.status} ${resp.statusText}`);
      throw new CanvasError(message, { status: resp.status, hint: err.hint || "", code: err.code || "", field: err.field || "", body: data });
    }
    return data;
  }
  const base = "/ui/api/canvas";
  const wf = (name) => `${base}/workflows/${encodeURIComponent(name)}`;
  return {
    document: (name) => call("GET", wf(name)),
    save: (name, body) => call("PUT", `${wf(name)}/draft`, body),
    validate: (body) => call("POST", `${base}/validate`, body),
    publish: (name, revision) => call("POST", `${wf(name)}/publish`, { revision }),
    versions: (name) => call("GET", `${wf(name)}/versions`),
    diff: (name, a, b) => call("GET", `${wf(name)}/diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`),
    schema: () => call("GET", `${base}/schema`),
    models: () => call("GET", `${base}/models`),
    names: (name, node) => call("GET", `${wf(name)}/names?node=${encodeURIComponent(node)}`),
    run: (id) => call("GET", `/ui/api/runs/${encodeURIComponent(id)}`),
    previewPath: (name) => `${wf(name)}/preview`,
  };
}
