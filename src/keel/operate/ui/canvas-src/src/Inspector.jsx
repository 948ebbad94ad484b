// The inspector: a form for the selected node, generated from the workflow JSON Schema
// (GET /ui/api/canvas/schema), so a new spec field shows up without UI code. Each field carries
// data-pointer (its JSON pointer inside the node) and shows the server's problems about it.
import { useEffect, useState } from "react";
import { CelInput } from "./Cel.jsx";
import { TYPES, ports } from "./graph.js";
import { Icon } from "./icons.jsx";

/** Fields whose strings are CEL expressions (the spec says so in their docs). */
const CEL = new Set(["input", "condition", "query", "expression", "output", "sources"]);
const CEL_TEXT = new Set(["guardrails"]); // a Guardrails node's `text` is CEL; a Note's is prose
const CEL_MAPS = new Set(["fields", "assign", "arguments"]);
const LONG = new Set(["instructions", "message", "text", "content"]);
const HIDDEN = new Set(["type", "position"]);

const esc = (s) => String(s).replace(/~/g, "~0").replace(/\//g, "~1");
const fid = (nodeId, ptr) => `f-${nodeId}${ptr.replace(/[^A-Za-z0-9_]/g, "-")}`;

export function resolve(s, root) {
  let guard = 0;
  while (s && s.$ref && guard++ < 20) s = root.$defs[s.$ref.split("/").pop()];
  return s || {};
}

/** ``s`` without its ``| null`` (then ``nullable``). */
function plain(s, root) {
  s = resolve(s, root);
  if (s.anyOf && s.anyOf.length === 2 && s.anyOf.some((x) => x.type === "null")) {
    const other = resolve(s.anyOf.find((x) => x.type !== "null"), root);
    return { ...other, nullable: true, default: s.default, title: s.title || other.title, description: s.description || other.description };
  }
  return s;
}

function kind(s, name, nodeType, root) {
  if (s.const !== undefined) return "const";
  if (s.enum) return "enum";
  if (s.type === "boolean") return "bool";
  if (s.type === "integer" || s.type === "number") return "number";
  if (s.type === "string") {
    if (name === "model") return "model";
    if (CEL.has(name) || (name === "text" && CEL_TEXT.has(nodeType))) return "cel";
    return LONG.has(name) ? "textarea" : "text";
  }
  if (s.type === "array") {
    const it = plain(s.items, root);
    if (it.type === "string" && !it.enum) return "strings";
    if (it.type === "object" && it.properties) return "objects";
    return "json";
  }
  if (s.type === "object") {
    if (s.properties) return "object";
    const ap = s.additionalProperties && plain(s.additionalProperties, root);
    if (ap && ap.type === "string" && !ap.enum) return CEL_MAPS.has(name) ? "cel-map" : "map";
    return "json";
  }
  return "json";
}

function Problems({ list }) {
  if (!list || !list.length) return null;
  return <ul className="field-problems">{list.map((p, i) => (
    <li key={i} className={`problem ${p.severity}`} role={p.severity === "error" ? "alert" : undefined}>
      {p.message}{p.hint ? <span className="hint"> — {p.hint}</span> : null}</li>))}</ul>;
}

/** A JSON text area: the value is applied only when the text parses. */
function JsonField({ id, value, onChange, invalid, describedBy }) {
  const [text, setText] = useState(value === undefined ? "" : JSON.stringify(value, null, 2));
  const [bad, setBad] = useState("");
  useEffect(() => {
    let same = false;
    try { same = JSON.stringify(JSON.parse(text || "null")) === JSON.stringify(value ?? null); } catch { /* keep typing */ }
    if (!same && !bad) setText(value === undefined ? "" : JSON.stringify(value, null, 2));
  }, [value]); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <>
      <textarea id={id} className="json" rows={Math.min(12, Math.max(3, text.split("\n").length))} value={text} spellCheck={false}
        aria-invalid={!!bad || invalid || undefined} aria-describedby={describedBy}
        onChange={(e) => {
          const t = e.target.value; setText(t);
          if (!t.trim()) { setBad(""); onChange(undefined); return; }
          try { const v = JSON.parse(t); setBad(""); onChange(v); } catch (err) { setBad(`not valid JSON: ${err.message}`); }
        }} />
      {bad && <p className="field-problems problem error" role="alert">{bad} (the last valid value is kept)</p>}
    </>
  );
}

function Field(props) {
  const { name, schema, value, onChange, root, ptr, nodeId, nodeType, problems, names, models, required } = props;
  const s = plain(schema, root);
  const k = kind(s, name, nodeType, root);
  const id = fid(nodeId, ptr);
  const mine = problems.filter((p) => p.rel === ptr || (p.rel || "").startsWith(ptr + "/") && !["object", "objects"].includes(k));
  const invalid = mine.some((p) => p.severity === "error");
  const descId = mine.length ? `${id}-problems` : undefined;
  const title = s.title || name;
  const set = (v) => onChange(v, ptr);
  let control;
  if (k === "const") control = <output id={id}>{String(s.const)}</output>;
  else if (k === "enum") {
    control = <select id={id} value={value ?? ""} aria-invalid={invalid || undefined} onChange={(e) => set(e.target.value === "" ? undefined : e.target.value)}>
      {!required && <option value="">{s.default != null ? `(default: ${s.default})` : "(none)"}</option>}
      {s.enum.map((x) => <option key={x} value={x}>{x}</option>)}</select>;
  } else if (k === "bool") {
    control = <input id={id} type="checkbox" checked={value ?? s.default ?? false} onChange={(e) => set(e.target.checked === (s.default ?? false) ? undefined : e.target.checked)} />;
  } else if (k === "number") {
    control = <input id={id} type="number" value={value ?? ""} placeholder={s.default != null ? String(s.default) : ""}
      min={s.minimum} max={s.maximum} step={s.type === "integer" ? 1 : "any"} aria-invalid={invalid || undefined} aria-describedby={descId}
      onChange={(e) => set(e.target.value === "" ? undefined : Number(e.target.value))} />;
  } else if (k === "model") {
    const listId = `${id}-models`;
    control = <>
      <input id={id} list={listId} value={value ?? ""} aria-invalid={invalid || undefined} aria-describedby={descId} placeholder="provider:model or alias"
        onChange={(e) => set(e.target.value === "" && !required ? undefined : e.target.value)} />
      <datalist id={listId}>{(models || []).map((m) => <option key={m.value} value={m.value}>{m.label}</option>)}</datalist>
    </>;
  } else if (k === "cel") {
    control = <CelInput id={id} label={title} value={value ?? ""} names={names} invalid={invalid} describedBy={descId}
      multiline={name === "output" || name === "expression"} onChange={(v) => set(v === "" && !required ? undefined : v)} />;
  } else if (k === "text" || k === "textarea") {
    control = k === "text"
      ? <input id={id} value={value ?? ""} aria-invalid={invalid || undefined} aria-describedby={descId} placeholder={s.default ? String(s.default) : ""}
          onChange={(e) => set(e.target.value === "" && !required ? undefined : e.target.value)} />
      : <textarea id={id} rows={4} value={value ?? ""} aria-invalid={invalid || undefined} aria-describedby={descId}
          onChange={(e) => set(e.target.value === "" && !required ? undefined : e.target.value)} />;
  } else if (k === "strings") {
    const list = value || [];
    control = <div className="list" id={id}>
      {list.map((x, i) => <div className="row" key={i}>
        <input aria-label={`${title} ${i + 1}`} value={x} onChange={(e) => set(list.map((y, j) => (j === i ? e.target.value : y)))} />
        <button type="button" className="small secondary" aria-label={`Remove ${title} ${i + 1}`} onClick={() => set(list.filter((_, j) => j !== i))}>×</button>
      </div>)}
      <button type="button" className="small secondary" onClick={() => set([...list, ""])}>Add {title.toLowerCase()}</button>
    </div>;
  } else if (k === "map" || k === "cel-map") {
    const entries = Object.entries(value || {});
    const put = (arr) => set(arr.length ? Object.fromEntries(arr) : undefined);
    control = <div className="list" id={id}>
      {entries.map(([key, v], i) => <div className="row" key={i} data-pointer={`${ptr}/${esc(key)}`}>
        <input aria-label={`${title} name ${i + 1}`} className="key" value={key} onChange={(e) => put(entries.map((en, j) => (j === i ? [e.target.value, en[1]] : en)))} />
        {k === "cel-map"
          ? <CelInput id={`${id}-${i}`} label={`${title} ${key}`} value={v} names={names} onChange={(t) => put(entries.map((en, j) => (j === i ? [en[0], t] : en)))} />
          : <input aria-label={`${title} ${key}`} value={v} onChange={(e) => put(entries.map((en, j) => (j === i ? [en[0], e.target.value] : en)))} />}
        <button type="button" className="small secondary" aria-label={`Remove ${key}`} onClick={() => put(entries.filter((_, j) => j !== i))}>×</button>
      </div>)}
      <button type="button" className="small secondary" onClick={() => {
        let n = 1; while ((value || {})[`name${n}`] !== undefined) n++;
        put([...entries, [`name${n}`, ""]]);
      }}>Add {title.toLowerCase()}</button>
    </div>;
  } else if (k === "object") {
    return <fieldset className="field" data-pointer={ptr}><legend>{title}</legend>
      <Problems list={mine.filter((p) => p.rel === ptr)} />
      <ObjectFields {...props} schema={s} value={value || {}} onChange={(v) => set(Object.keys(v).length ? v : undefined)} /></fieldset>;
  } else if (k === "objects") {
    const list = value || [];
    const item = plain(s.items, root);
    return <fieldset className="field" data-pointer={ptr}><legend>{title}</legend>
      <Problems list={mine.filter((p) => p.rel === ptr)} />
      {list.map((x, i) => <div className="item" key={i}>
        <ObjectFields {...props} schema={item} ptr={`${ptr}/${i}`} value={x || {}} onChange={(v) => set(list.map((y, j) => (j === i ? v : y)))} />
        <button type="button" className="small secondary" onClick={() => set(list.filter((_, j) => j !== i))}>Remove {singular(title)} {i + 1}</button>
      </div>)}
      <button type="button" className="small secondary" onClick={() => set([...list, template(item, root, list.length)])}>Add {singular(title)}</button>
    </fieldset>;
  } else {
    control = <JsonField id={id} value={value} onChange={set} invalid={invalid} describedBy={descId} />;
  }
  return (
    <div className={`field kind-${k} ${invalid ? "invalid" : ""}`} data-pointer={ptr} data-field={name}>
      <label htmlFor={id}>{title}{required ? " *" : ""}</label>
      {control}
      <div id={descId}><Problems list={mine} /></div>
    </div>
  );
}

const singular = (t) => t.toLowerCase().replace(/ies$/, "y").replace(/(ch|sh|x|s)es$/, "$1").replace(/s$/, "");

/** A new item of an object array: its required fields, with names unique in the list. */
function template(item, root, i) {
  const out = {};
  for (const r of item.required || []) {
    const s = plain(item.properties[r], root);
    out[r] = s.enum ? s.enum[0] : s.type === "string" ? (r === "name" ? `branch_${i + 1}` : r === "condition" ? "true" : "") : s.type === "object" ? {} : s.type === "array" ? [] : 0;
  }
  return out;
}

function ObjectFields(props) {
  const { schema, value, onChange, root, ptr } = props;
  const s = resolve(schema, root);
  const required = new Set(s.required || []);
  return Object.entries(s.properties || {}).filter(([name]) => !HIDDEN.has(name) && !(ptr === "" && name === "id")).map(([name, fs]) => (
    <Field key={name} {...props} name={name} schema={fs} value={value[name]} required={required.has(name)} ptr={`${ptr}/${esc(name)}`}
      onChange={(v) => { const next = { ...value }; if (v === undefined) delete next[name]; else next[name] = v; onChange(next); }} />
  ));
}

/** The id field: renamed on Enter or leaving the field, if free and well formed. */
function IdField({ node, onRename, taken, problems }) {
  const [text, setText] = useState(node.id);
  const [bad, setBad] = useState("");
  useEffect(() => { setText(node.id); setBad(""); }, [node.id]);
  const commit = () => {
    if (text === node.id) return setBad("");
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(text)) return setBad("an id is letters, digits and _, not starting with a digit");
    if (taken.has(text)) return setBad(`another node is already called ${text}`);
    setBad(""); onRename(text);
  };
  const id = fid(node.id, "/id");
  return <div className={`field ${bad ? "invalid" : ""}`} data-pointer="/id" data-field="id">
    <label htmlFor={id}>Id *</label>
    <input id={id} value={text} onChange={(e) => setText(e.target.value)} onBlur={commit} aria-invalid={!!bad || undefined}
      onKeyDown={(e) => { if (e.key === "Enter") { e.preventDefault(); commit(); } }} />
    {bad && <p className="field-problems problem error" role="alert">{bad}</p>}
    <Problems list={problems.filter((p) => p.rel === "/id")} />
  </div>;
}

const LAZY_TARGETS = 50;

/** Connections of the node: its ports and where they lead, editable by keyboard. */
function Connections({ node, spec, onConnect, onDisconnect }) {
  const out = ports(node);
  const [port, setPort] = useState(out[0] || "");
  const targets = (spec.nodes || []).filter((n) => n.id !== node.id && n.type !== "start" && n.type !== "note");
  const [to, setTo] = useState("");
  // A big graph's target list (one option per node) is built when the list is used, not on
  // every selection: 500 options were 100 ms of a node click (docs/benchmarks.md, canvas).
  const [full, setFull] = useState(false);
  useEffect(() => { setPort(out[0] || ""); setTo(""); setFull(false); }, [node.id]); // eslint-disable-line react-hooks/exhaustive-deps
  if (!out.length) return null;
  const edges = (spec.edges || []).filter((e) => e.from === node.id);
  const pid = `conn-port-${node.id}`, tid = `conn-to-${node.id}`;
  return <fieldset className="connections"><legend>Connections</legend>
    <ul className="edges">{edges.map((e) => <li key={`${e.port || "next"}-${e.to}`}>
      <code>{e.port || "next"}</code> → <code>{e.to}</code>{" "}
      <button type="button" className="small secondary" aria-label={`Disconnect ${e.port || "next"} from ${e.to}`} onClick={() => onDisconnect(e)}>×</button></li>)}</ul>
    <div className="row">
      <label htmlFor={pid}>Port</label>
      <select id={pid} value={port} onChange={(e) => setPort(e.target.value)}>{out.map((p) => <option key={p}>{p}</option>)}</select>
      <label htmlFor={tid}>to</label>
      <select id={tid} value={to} onChange={(e) => setTo(e.target.value)} onFocus={() => setFull(true)} onPointerDown={() => setFull(true)}>
        <option value="">(node)</option>
        {(full || targets.length <= LAZY_TARGETS ? targets : targets.filter((n) => n.id === to)).map((n) => <option key={n.id} value={n.id}>{n.id}</option>)}</select>
      <button type="button" className="small" disabled={!port || !to} onClick={() => onConnect(port, to)}>Connect</button>
    </div>
  </fieldset>;
}

export function Inspector({ node, index, spec, schema, problems, names, models, readOnly, onChange, onRename, onDelete, onConnect, onDisconnect }) {
  if (!node) return <div className="inspector empty-inspector"><p className="muted">Select a node to configure it, or add one from the palette.</p></div>;
  if (!schema) return <div className="inspector"><p className="muted">Loading the schema…</p></div>;
  const mapping = schema.properties.nodes.items.discriminator?.mapping || {};
  const def = mapping[node.type] ? resolve({ $ref: mapping[node.type] }, schema) : null;
  const prefix = `/nodes/${index}`;
  const mine = problems.filter((p) => p.node_id === node.id || (p.pointer || "").startsWith(prefix + "/") || p.pointer === prefix)
    .map((p) => ({ ...p, rel: (p.pointer || "").startsWith(prefix) ? p.pointer.slice(prefix.length) : null }));
  const meta = TYPES[node.type] || { label: node.type, icon: "?", cat: "core" };
  const taken = new Set(spec.nodes.map((n) => n.id));
  return (
    <form className="inspector" aria-label={`Inspector: ${node.id}`} data-inspector-node={node.id} onSubmit={(e) => e.preventDefault()}>
      <h2 className={`cat-${meta.cat}`}><span className="kn-icon" aria-hidden="true"><Icon type={node.type} /></span> {meta.label} <code>{node.id}</code></h2>
      {def && def.description && <p className="muted small">{def.description}</p>}
      {mine.length > 0 && <div className="node-problems"><Problems list={mine} /></div>}
      <fieldset disabled={readOnly}>
        <IdField node={node} taken={taken} onRename={onRename} problems={mine} />
        {def
          ? <ObjectFields schema={def} value={node} root={schema} ptr="" nodeId={node.id} nodeType={node.type} problems={mine}
              names={names} models={models} onChange={(v) => onChange(v)} />
          : <p className="problem error">This Keel does not know the node type {node.type}.</p>}
        <Connections node={node} spec={spec} onConnect={onConnect} onDisconnect={onDisconnect} />
        <button type="button" className="danger" onClick={onDelete}>Delete node</button>
      </fieldset>
    </form>
  );
}
