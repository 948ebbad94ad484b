// The side panels: state variables, versions and diff, the preview run, a node's run details,
// and the dialog of a save conflict.
import { useEffect, useRef, useState } from "react";

const pretty = (v) => (typeof v === "string" ? v : JSON.stringify(v, null, 2));

/** The Start node's ``state``: name -> initial value (JSON). */
export function StatePanel({ spec, onChange, readOnly }) {
  const start = (spec.nodes || []).find((n) => n.type === "start");
  if (!start) return <p className="muted">Add a Start node to declare state variables.</p>;
  const entries = Object.entries(start.state || {});
  const put = (arr) => onChange({ ...start, state: arr.length ? Object.fromEntries(arr) : undefined });
  return (
    <section className="state-panel" aria-label="State variables">
      <p className="muted small">Declared on the Start node, read as <code>state.NAME</code>, changed by Set state nodes.</p>
      <fieldset disabled={readOnly}>
        {entries.map(([k, v], i) => (
          <div className="row" key={i}>
            <input aria-label={`State variable ${i + 1} name`} value={k} onChange={(e) => put(entries.map((en, j) => (j === i ? [e.target.value, en[1]] : en)))} />
            <StateValue value={v} label={`State variable ${k} value`} onChange={(x) => put(entries.map((en, j) => (j === i ? [en[0], x] : en)))} />
            <button type="button" className="small secondary" aria-label={`Remove state variable ${k}`} onClick={() => put(entries.filter((_, j) => j !== i))}>×</button>
          </div>
        ))}
        <button type="button" className="small secondary" onClick={() => { let n = 1; while ((start.state || {})[`var${n}`] !== undefined) n++; put([...entries, [`var${n}`, 0]]); }}>Add state variable</button>
      </fieldset>
    </section>
  );
}

function StateValue({ value, onChange, label }) {
  const [text, setText] = useState(JSON.stringify(value));
  const [bad, setBad] = useState(false);
  return <input aria-label={label} className={bad ? "invalid" : ""} value={text} title={"a JSON value: 0, \"text\", [], {}"}
    onChange={(e) => { setText(e.target.value); try { onChange(JSON.parse(e.target.value)); setBad(false); } catch { setBad(true); } }} />;
}

/** Version history, and a diff of two of them drawn on the canvas. */
export function VersionsPanel({ api, name, hasDraft, onDiff, diff, refreshKey }) {
  const [versions, setVersions] = useState(null);
  const [error, setError] = useState("");
  const [a, setA] = useState(""), [b, setB] = useState("");
  useEffect(() => {
    api.versions(name).then((r) => {
      setVersions(r.versions);
      const vs = r.versions.map((v) => String(v.version));
      setB(hasDraft ? "draft" : vs[0] || ""); setA(hasDraft ? vs[0] || "" : vs[1] || "");
    }).catch((e) => setError(e.message));
  }, [name, refreshKey]); // eslint-disable-line react-hooks/exhaustive-deps
  if (error) return <p className="problem error">{error}</p>;
  if (!versions) return <p className="muted">Loading versions…</p>;
  const options = [...(hasDraft ? ["draft"] : []), ...versions.map((v) => String(v.version))];
  const compare = async () => {
    try { setError(""); onDiff(await api.diff(name, a, b)); } catch (e) { setError(`${e.message}${e.hint ? ` — ${e.hint}` : ""}`); }
  };
  return (
    <section aria-label="Versions">
      {versions.length === 0 ? <p className="muted">Not published yet.</p> : (
        <ol className="versions">{versions.map((v) => (
          <li key={v.version}><strong>v{v.version}</strong> <span className="muted small">{new Date(v.published_at * 1000).toLocaleString()}</span>
            <code className="small muted"> {String(v.digest || "").slice(0, 10)}</code></li>))}</ol>)}
      {options.length >= 2 && (
        <div className="row diff-pick">
          <label htmlFor="diff-a">From</label>
          <select id="diff-a" value={a} onChange={(e) => setA(e.target.value)}>{options.map((o) => <option key={o} value={o}>{o === "draft" ? "draft" : `v${o}`}</option>)}</select>
          <label htmlFor="diff-b">to</label>
          <select id="diff-b" value={b} onChange={(e) => setB(e.target.value)}>{options.map((o) => <option key={o} value={o}>{o === "draft" ? "draft" : `v${o}`}</option>)}</select>
          <button type="button" onClick={compare} disabled={!a || !b || a === b}>Compare</button>
        </div>)}
      {diff && <DiffSummary diff={diff} onClear={() => onDiff(null)} />}
    </section>
  );
}

function DiffSummary({ diff, onClear }) {
  const n = diff.nodes;
  return (
    <div className="diff-summary" aria-label="Differences">
      <p><strong>{diff.a === "draft" ? "draft" : `v${diff.a}`} → {diff.b === "draft" ? "draft" : `v${diff.b}`}</strong>
        {diff.same_meaning ? " — same meaning" : ""}{diff.layout_changed ? " (layout moved)" : ""}</p>
      <ul>
        {n.added.map((x) => <li key={`a-${x.id}`} className="diff-added">+ node <code>{x.id}</code> ({x.type})</li>)}
        {n.removed.map((x) => <li key={`r-${x.id}`} className="diff-removed">− node <code>{x.id}</code> ({x.type})</li>)}
        {n.changed.map((x) => <li key={`c-${x.id}`} className="diff-changed">~ node <code>{x.id}</code>: {x.changes.map((c) => c.path).join(", ")}</li>)}
        {diff.edges.added.map((e, i) => <li key={`ea${i}`} className="diff-added">+ edge {e.from} —{e.port}→ {e.to}</li>)}
        {diff.edges.removed.map((e, i) => <li key={`er${i}`} className="diff-removed">− edge {e.from} —{e.port}→ {e.to}</li>)}
        {diff.fields.map((f, i) => <li key={`f${i}`} className="diff-changed">~ {f.path}</li>)}
      </ul>
      <button type="button" className="small secondary" onClick={onClear}>Clear diff</button>
    </div>
  );
}

/** The preview run: input, the events as they stream, approvals answered in place. */
export function PreviewPanel({ run, onRun, onDecide, busy }) {
  const [input, setInput] = useState("");
  const log = useRef(null);
  useEffect(() => { if (log.current) log.current.scrollTop = log.current.scrollHeight; }, [run && run.log.length]);
  return (
    <section aria-label="Preview run" className="preview">
      <label htmlFor="preview-input">Input</label>
      <textarea id="preview-input" rows={3} value={input} onChange={(e) => setInput(e.target.value)}
        placeholder='Text, or JSON such as {"messages": [...]}'
        onKeyDown={(e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); onRun(input); } }} />
      <button type="button" onClick={() => onRun(input)} disabled={busy}>{busy ? "Running…" : "Run draft"}</button>
      {run && (
        <div className="run-view">
          <p role="status" className={`run-status status-${run.status}`}>
            {run.status}{run.runId ? <> · <a href={`#/runs/${encodeURIComponent(run.runId)}`} className="trace-link">Open trace</a></> : null}
          </p>
          {run.error && <p className="problem error" role="alert">{run.error}</p>}
          {run.approval && (
            <div className="approval" role="group" aria-label="Approval">
              <p>{run.approval.message}</p>
              <button type="button" className="approve" onClick={() => onDecide("approve")}>Approve</button>{" "}
              <button type="button" className="secondary reject" onClick={() => onDecide("reject")}>Reject</button>
            </div>)}
          {run.answer && <pre className="answer">{run.answer}</pre>}
          <ol className="run-log" ref={log}>{run.log.map((l, i) => <li key={i}>{l}</li>)}</ol>
        </div>)}
    </section>
  );
}

/** What a node did in the preview run: input, output, model calls and tokens. */
export function NodeRunDetails({ api, runId, nodeId, version }) {
  const [data, setData] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    let live = true;
    api.run(runId).then((r) => live && setData(r)).catch((e) => live && setError(e.message));
    return () => { live = false; };
  }, [runId, nodeId, version]); // eslint-disable-line react-hooks/exhaustive-deps
  if (error) return <p className="problem error">{error}</p>;
  if (!data) return <p className="muted">Loading the run…</p>;
  const spans = [];
  const walk = (list) => list.forEach((s) => { spans.push(s); walk(s.children || []); });
  walk(data.trace);
  const mine = spans.filter((s) => s.kind === "node" && s.attributes["keel.node.id"] === nodeId);
  if (!mine.length) return <p className="muted">Node {nodeId} has not run in this preview.</p>;
  return (
    <section className="node-run" aria-label={`Run of ${nodeId}`}>
      {mine.map((s) => {
        const calls = spans.filter((c) => c.parent_id === s.span_id && c.kind !== "node");
        const tokensIn = calls.reduce((t, c) => t + (c.attributes["gen_ai.usage.input_tokens"] || 0), 0);
        const tokensOut = calls.reduce((t, c) => t + (c.attributes["gen_ai.usage.output_tokens"] || 0), 0);
        return (
          <div key={s.span_id}>
            <p className="small muted">{s.duration_ms != null ? `${s.duration_ms.toFixed(0)} ms` : ""}{s.port ? ` · left by ${s.port}` : ""}
              {calls.length ? ` · ${calls.length} call${calls.length > 1 ? "s" : ""} · ${tokensIn} in / ${tokensOut} out tokens` : ""}</p>
            {s.error && <p className="problem error">{s.error}</p>}
            <h4>Input</h4><pre className="io">{pretty(s.input)}</pre>
            <h4>Output</h4><pre className="io">{pretty(s.output)}</pre>
            {calls.length > 0 && <><h4>Model and tool calls</h4><ul className="calls">{calls.map((c) => (
              <li key={c.span_id}><code>{c.name}</code> {c.attributes["gen_ai.request.model"] || c.attributes["gen_ai.tool.name"] || ""}
                {c.attributes["gen_ai.usage.input_tokens"] != null ? ` · ${c.attributes["gen_ai.usage.input_tokens"]} in / ${c.attributes["gen_ai.usage.output_tokens"]} out` : ""}</li>))}</ul></>}
          </div>);
      })}
    </section>
  );
}

/** A save was refused because the draft moved on: both sides, and three ways out. */
export function ConflictDialog({ conflict, mine, onKeepMine, onTakeTheirs, onMerge, onClose }) {
  const ref = useRef(null);
  const [merged, setMerged] = useState(conflict.current ? conflict.current.yaml : "");
  const [mode, setMode] = useState("choose");
  useEffect(() => { const d = ref.current; if (d && !d.open) d.showModal(); }, []);
  const theirs = conflict.current;
  return (
    <dialog ref={ref} className="conflict" aria-labelledby="conflict-title" onCancel={(e) => { e.preventDefault(); onClose(); }}>
      <h2 id="conflict-title">Someone saved this draft meanwhile</h2>
      <p>{conflict.message} Your edits are still here; nothing is lost. Choose what to keep.</p>
      <div className="sides">
        <div><h3>Yours (not saved)</h3><pre className="side mine">{JSON.stringify(mine, null, 2)}</pre></div>
        <div><h3>Theirs (revision {theirs ? theirs.revision : "?"}{theirs && theirs.updated_by ? `, by ${theirs.updated_by}` : ""})</h3>
          <pre className="side theirs">{theirs ? theirs.yaml : "(the draft was discarded)"}</pre></div>
      </div>
      {mode === "merge" && <>
        <label htmlFor="merge-text">Merged YAML (starts from theirs; copy what you need from yours)</label>
        <textarea id="merge-text" rows={14} value={merged} onChange={(e) => setMerged(e.target.value)} spellCheck={false} />
      </>}
      <div className="row">
        {mode === "merge"
          ? <button type="button" onClick={() => onMerge(merged)}>Save merged</button>
          : <>
            <button type="button" onClick={onKeepMine}>Keep mine</button>
            <button type="button" className="secondary" onClick={onTakeTheirs}>Take theirs</button>
            <button type="button" className="secondary" onClick={() => setMode("merge")}>Merge by hand</button>
          </>}
        <button type="button" className="secondary" onClick={onClose}>Cancel</button>
      </div>
    </dialog>
  );
}
