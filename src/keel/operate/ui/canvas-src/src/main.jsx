// The workflow canvas page: toolbar, palette, the graph (React Flow), and the side panels.
// Mounted by the vanilla SPA at #/workflows/NAME: mountCanvas(element, {name, host}).
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { createRoot } from "react-dom/client";
import {
  ReactFlow, ReactFlowProvider, MiniMap, Controls, ControlButton, Background, applyNodeChanges, getViewportForBounds, useReactFlow,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import "./canvas.css";
import { makeApi } from "./api.js";
import {
  CATEGORIES, LOD_ZOOM, NODE_W, TYPES, connect, edgeId, flowEdges, freeId, handlesOf, hasInput, newNode, nodeHeight, positions, removeNodes, renameNode, withLayout,
} from "./graph.js";
import { History } from "./history.js";
import { Icon } from "./icons.jsx";
import { nodeTypes, edgeTypes } from "./Node.jsx";
import { Inspector } from "./Inspector.jsx";
import { ConflictDialog, NodeRunDetails, PreviewPanel, StatePanel, VersionsPanel } from "./Panels.jsx";

const CAT_COLOURS = { core: "#2563eb", tools: "#0d9488", logic: "#c2410c", data: "#7c3aed" };
const NONE = {};
// Props of <ReactFlow> that must keep their identity between renders: a new function or object
// there re-renders every node wrapper (500 of them at fit-to-view) on each selection click.
const MULTI_SELECT_KEYS = ["Shift", "Meta", "Control"];
const PRO_OPTIONS = { hideAttribution: true };
const EDGE_OPTIONS = { type: "keel" };
const miniColour = (n) => CAT_COLOURS[(TYPES[n.data.node.type] || {}).cat] || "#9ca3af";
const posOf = (nodes) => Object.fromEntries(nodes.map((n) => [n.id, n.position]));
const typing = (el) => el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);

/** React Flow nodes for ``spec``, reusing ``prev``'s objects where nothing changed (fast redraws). */
function buildNodes(spec, prev, deco, pending, selectOnly) {
  const byId = new Map(prev.map((n) => [n.id, n]));
  return (spec.nodes || []).map((sn, i) => {
    const old = byId.get(sn.id);
    const position = pending[sn.id] || (old && old.position) || { x: 40 + (i % 6) * 240, y: 40 + Math.floor(i / 6) * 110 };
    const problems = deco.problems[sn.id], run = deco.run[sn.id], diff = deco.diff ? deco.diff[sn.id] : undefined;
    const selected = selectOnly ? selectOnly.has(sn.id) : !!(old && old.selected);
    if (old && old.data.node === sn && old.position === position && old.data.problems === problems && old.data.run === run
        && old.data.diff === diff && old.selected === selected && old.draggable === !deco.readOnly) return old;
    // Size and handles known up front (graph.js handlesOf): React Flow culls from the first frame,
    // and a node drawn later (a pan, a fit) measures as it was told, so no resize event per node.
    const same = old && old.data.node === sn;
    return { id: sn.id, type: "keel", position, selected, draggable: !deco.readOnly, connectable: !deco.readOnly,
      initialWidth: NODE_W, initialHeight: nodeHeight(sn), handles: same ? old.handles : handlesOf(sn),
      measured: same && old.measured ? old.measured : { width: NODE_W, height: nodeHeight(sn) }, data: { node: sn, problems, run, diff } };
  });
}

const READABLE_ZOOM = 0.8;

/** The box around every node (positions from the spec's layout, sizes from graph.js). */
function bounds(spec, pos) {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (const n of spec.nodes || []) {
    const p = pos[n.id];
    if (!p) continue;
    minX = Math.min(minX, p.x); minY = Math.min(minY, p.y);
    maxX = Math.max(maxX, p.x + NODE_W); maxY = Math.max(maxY, p.y + nodeHeight(n));
  }
  return maxX > minX ? { x: minX, y: minY, width: maxX - minX, height: maxY - minY } : null;
}

/** The view a document opens at: its saved viewport; else all of it (null: fit to view) when that
 * is readable; else, for a big graph, a readable zoom around the Start node. Fitting 500 nodes draws
 * them all, too small to read and too many to cull; this draws the few dozen on screen. */
function openView(spec, pos, saved) {
  if (saved) return saved;
  const nodes = spec.nodes || [];
  if (!nodes.length) return { x: 0, y: 0, zoom: 1 }; // an empty canvas keeps the plain view: a node added meanwhile must not move
  const b = bounds(spec, pos);
  const box = document.querySelector(".canvas-flow")?.getBoundingClientRect();
  const w = box && box.width > 0 ? box.width : Math.max(400, window.innerWidth - 560);
  const h = box && box.height > 0 ? box.height : Math.max(300, window.innerHeight - 140);
  if (!b || Math.min(w / (b.width + 80), h / (b.height + 80)) >= LOD_ZOOM) return null;
  const start = pos[(nodes.find((n) => n.type === "start") || nodes[0]).id] || b;
  const z = READABLE_ZOOM;
  return { x: Math.round(40 - start.x * z), y: Math.round(Math.min(40 - b.y * z, h / 2 - (start.y + 30) * z)), zoom: z };
}

function Palette({ onAdd, disabled }) {
  return (
    <nav className="palette" aria-label="Palette: add a node">
      {CATEGORIES.map((cat) => (
        <section key={cat} className={`cat-${cat}`}>
          <h3>{cat}</h3>
          {Object.entries(TYPES).filter(([, m]) => m.cat === cat).map(([type, m]) => (
            <button key={type} type="button" className="palette-item" data-type={type} draggable={!disabled} disabled={disabled}
              aria-label={`Add ${m.label} node`} title={`Add ${m.label} (click or Enter; or drag onto the canvas)`}
              onDragStart={(e) => { e.dataTransfer.setData("application/keel-node", type); e.dataTransfer.effectAllowed = "move"; }}
              onClick={() => onAdd(type)}>
              <span className="kn-icon" aria-hidden="true"><Icon type={type} /></span> {m.label}
            </button>))}
        </section>))}
    </nav>
  );
}

function Canvas({ name, host }) {
  const api = useMemo(() => makeApi(host), [host]);
  const rf = useReactFlow();
  const [doc, setDoc] = useState(null);
  const [loadError, setLoadError] = useState(null);
  const [spec, setSpec] = useState(null);
  const [nodes, setNodes] = useState([]);
  const [selectedEdges, setSelectedEdges] = useState(new Set());
  const [problems, setProblems] = useState([]);
  const [schema, setSchema] = useState(null);
  const [models, setModels] = useState({ options: [], default: null });
  const [names, setNames] = useState([]);
  const [tab, setTab] = useState("inspect");
  const [message, setMessage] = useState(null); // {kind: ok|error, text}
  const [conflict, setConflict] = useState(null);
  const [diff, setDiff] = useState(null);
  const [run, setRun] = useState(null);
  const [busy, setBusy] = useState(false);
  const [changes, setChanges] = useState(0);
  const [savedAt, setSavedAt] = useState(0);
  const [versionsKey, setVersionsKey] = useState(0);
  const [yamlText, setYamlText] = useState("");
  const history = useRef(new History());
  const pending = useRef({});
  const selectOnly = useRef(null);
  const clipboard = useRef(null);
  const dragBefore = useRef(null);
  const specRef = useRef(spec); specRef.current = spec;
  const nodesRef = useRef(nodes); nodesRef.current = nodes;
  const docRef = useRef(doc); docRef.current = doc;
  const readOnly = !!(doc && doc.read_only);
  const dirty = changes !== savedAt;

  // --- loading -----------------------------------------------------------------------------
  // React Flow's helper object changes once its pane is ready: read it through a ref, so the
  // document is fetched and drawn once, not again when the pane mounts.
  const rfRef = useRef(rf); rfRef.current = rf;
  const firstView = useRef(null);
  // Fit to view from the layout, not from measured nodes: React Flow's fitView waits until every
  // node has been drawn once, which culling (onlyRenderVisibleElements) never does.
  const fitAll = useCallback((spec = null, pos = null) => {
    const s = spec || specRef.current, box = document.querySelector(".canvas-flow")?.getBoundingClientRect();
    const b = s && box ? bounds(s, pos || posOf(nodesRef.current)) : null;
    if (b) rfRef.current.setViewport(getViewportForBounds(b, box.width, box.height, 0.05, 1.2, 0.1));
  }, []);
  const load = useCallback((d) => {
    setDoc(d);
    setYamlText(d.yaml || "");
    setProblems(d.problems || []);
    const drawable = d.spec && Array.isArray(d.spec.nodes) && d.spec.nodes.every((n) => n && typeof n === "object" && typeof n.id === "string");
    const s = drawable ? { ...d.spec, edges: Array.isArray(d.spec.edges) ? d.spec.edges.filter((e) => e && typeof e === "object") : [] } : { name, nodes: [], edges: [] };
    delete s.layout;
    pending.current = positions(s, d.read_only ? null : d.layout);
    selectOnly.current = new Set();
    setNodes([]);
    setSpec(s);
    const saved = !d.read_only && d.layout && d.layout.viewport;
    const vp = openView(s, pending.current, saved ? { x: saved.x, y: saved.y, zoom: saved.zoom } : null);
    const pos0 = pending.current;
    if (!firstView.current) { // the pane's first frame: the view it opens at, or the fit as the window suggests it
      const b = bounds(s, pos0);
      firstView.current = vp || (b ? getViewportForBounds(b, Math.max(400, window.innerWidth - 560), Math.max(300, window.innerHeight - 140), 0.05, 1.2, 0.1)
        : { x: 0, y: 0, zoom: 1 });
    }
    if (vp && !saved && s.nodes.length) {
      setMessage({ kind: "ok", text: `${s.nodes.length} nodes: opened at a readable zoom around the start. Fit (F) shows them all.` });
    }
    requestAnimationFrame(() => requestAnimationFrame(() => (vp ? rfRef.current.setViewport(vp) : fitAll(s, pos0))));
  }, [name, fitAll]);

  useEffect(() => {
    let live = true;
    api.document(name).then((d) => live && load(d)).catch((e) => {
      if (!live) return;
      if (e.status === 404) load({ name, origin: "new", revision: 0, version: null, yaml: "", spec: { name, description: "", nodes: [], edges: [] }, layout: null, read_only: false, message: null, problems: [] });
      else setLoadError(e);
    });
    api.schema().then((s) => live && setSchema(s)).catch((e) => live && setMessage({ kind: "error", text: `The schema did not load: ${e.message}` }));
    api.models().then((m) => live && setModels({ default: m.default, options: [
      ...m.aliases.map((a) => ({ value: a.name, label: `alias → ${a.model}` })),
      ...(m.default ? [{ value: m.default, label: "default model" }] : []),
    ] })).catch(() => {});
    return () => { live = false; };
  }, [api, name, load]);

  // --- decorations: problems, run state, diff --------------------------------------------------
  const problemsByNode = useMemo(() => {
    const out = {};
    if (!spec) return out;
    for (const p of problems) {
      let id = p.node_id;
      const m = /^\/nodes\/(\d+)/.exec(p.pointer || "");
      if (!id && m && spec.nodes[+m[1]]) id = spec.nodes[+m[1]].id;
      if (id) (out[id] = out[id] || []).push(p);
    }
    return out;
  }, [problems, spec]);
  const diffByNode = useMemo(() => {
    if (!diff) return null;
    const out = {};
    for (const n of diff.nodes.added) out[n.id] = "added";
    for (const n of diff.nodes.changed) out[n.id] = "changed";
    return out;
  }, [diff]);
  const runByNode = run ? run.nodes : NONE;
  const deco = useMemo(() => ({ problems: problemsByNode, run: runByNode, diff: diffByNode, readOnly }), [problemsByNode, runByNode, diffByNode, readOnly]);

  useEffect(() => {
    if (!spec) return;
    // read the refs now: React may call the updater later (and twice in StrictMode)
    const pend = pending.current, only = selectOnly.current;
    pending.current = {}; selectOnly.current = null;
    setNodes((prev) => buildNodes(spec, prev, deco, pend, only));
  }, [spec, deco]);

  // A diff draws the nodes it removed where they were, faded (they are not part of the spec).
  const shown = useMemo(() => {
    const gone = diff ? diff.nodes.removed.filter((n) => n.at) : [];
    if (!gone.length) return nodes;
    return [...nodes, ...gone.map((n) => ({ id: `removed:${n.id}`, type: "keel", position: n.at, selectable: false, draggable: false,
      connectable: false, focusable: false, initialWidth: NODE_W, initialHeight: nodeHeight(n), handles: handlesOf(n),
      data: { node: { id: n.id, type: n.type }, diff: "removed" } }))];
  }, [nodes, diff]);

  const edges = useMemo(() => {
    if (!spec) return [];
    const d = diff ? { edgesAdded: new Set(diff.edges.added.map((e) => edgeId(e))) } : null;
    return flowEdges(spec, { selected: selectedEdges, diff: d });
  }, [spec, selectedEdges, diff]);

  // --- editing ---------------------------------------------------------------------------------
  const current = () => ({ spec: specRef.current, pos: posOf(nodesRef.current) });

  /** Apply ``fn(spec, pos) -> [spec, pos?]`` as one undoable step. */
  const edit = useCallback((fn, { coalesce = null, select = null } = {}) => {
    if (docRef.current && docRef.current.read_only) return;
    const before = current();
    const [s, p] = fn(before.spec, before.pos);
    if (s === before.spec && !p) return;
    history.current.push(before, coalesce);
    if (p) { pending.current = p; setNodes((prev) => prev.map((n) => (p[n.id] && p[n.id] !== n.position ? { ...n, position: p[n.id] } : n))); }
    if (select) selectOnly.current = new Set(select);
    setSpec(s);
    setChanges((c) => c + 1);
  }, []);

  const restore = (state) => {
    pending.current = state.pos;
    setNodes((prev) => prev.map((n) => (state.pos[n.id] ? { ...n, position: state.pos[n.id] } : n)));
    setSpec(state.spec);
    setChanges((c) => c + 1);
  };
  const undo = () => { const s = history.current.undo(current()); if (s) restore(s); };
  const redo = () => { const s = history.current.redo(current()); if (s) restore(s); };

  const addNode = useCallback((type, at) => {
    const s0 = specRef.current;
    if (!s0) return;
    if (type === "start" && s0.nodes.some((n) => n.type === "start")) {
      setMessage({ kind: "error", text: "A workflow has exactly one Start node; this one has it already." });
      return;
    }
    const id = freeId(s0, type);
    let where = at;
    if (!where) {
      const box = document.querySelector(".canvas-flow")?.getBoundingClientRect();
      const centre = box ? rf.screenToFlowPosition({ x: box.left + box.width / 2, y: box.top + box.height / 2 }) : { x: 0, y: 0 };
      const k = s0.nodes.length % 8;
      where = { x: Math.round(centre.x - 100 + k * 24), y: Math.round(centre.y - 32 + k * 24) };
    }
    edit((s, p) => [{ ...s, nodes: [...s.nodes, newNode(type, id, models.default)] }, { ...p, [id]: where }], { select: [id] });
    setTab("inspect");
    setMessage({ kind: "ok", text: `Added ${TYPES[type].label} node ${id}.` });
  }, [edit, rf, models.default]);

  const selected = nodes.filter((n) => n.selected);
  const selectedNode = selected.length === 1 && spec ? spec.nodes.find((n) => n.id === selected[0].id) : null;
  const selectedIndex = selectedNode ? spec.nodes.indexOf(selectedNode) : -1;

  const deleteSelection = useCallback(() => {
    const ids = nodesRef.current.filter((n) => n.selected).map((n) => n.id);
    const eids = selectedEdges;
    if (!ids.length && !eids.size) return;
    edit((s, p) => {
      const [s2, p2] = removeNodes(s, p, ids);
      return [{ ...s2, edges: s2.edges.filter((e) => !eids.has(edgeId(e))) }, p2];
    });
    setSelectedEdges(new Set());
    setMessage({ kind: "ok", text: `Deleted ${ids.length ? `node${ids.length > 1 ? "s" : ""} ${ids.join(", ")}` : "the selected edges"}.` });
  }, [edit, selectedEdges]);

  const copy = () => {
    const ids = new Set(nodesRef.current.filter((n) => n.selected).map((n) => n.id));
    if (!ids.size) return;
    const s = specRef.current, p = posOf(nodesRef.current);
    clipboard.current = { nodes: s.nodes.filter((n) => ids.has(n.id)), edges: s.edges.filter((e) => ids.has(e.from) && ids.has(e.to)), pos: p };
    setMessage({ kind: "ok", text: `Copied ${ids.size} node${ids.size > 1 ? "s" : ""}.` });
  };
  const paste = () => {
    const c = clipboard.current;
    if (!c) return;
    const made = [];
    edit((s, p) => {
      let work = { ...s, nodes: [...s.nodes] };
      const map = {}, pos = { ...p };
      for (const n of c.nodes) {
        if (n.type === "start" && work.nodes.some((x) => x.type === "start")) continue;
        const id = freeId(work, n.id.replace(/_\d+$/, ""));
        map[n.id] = id; made.push(id);
        work.nodes.push({ ...n, id });
        const at = c.pos[n.id] || { x: 0, y: 0 };
        pos[id] = { x: at.x + 40, y: at.y + 40 };
      }
      const edges = c.edges.filter((e) => map[e.from] && map[e.to]).map((e) => ({ ...e, from: map[e.from], to: map[e.to] }));
      work = { ...work, edges: [...work.edges, ...edges] };
      return [work, pos];
    }, { select: made });
  };

  const changeNode = useCallback((index, next) => {
    edit((s) => [{ ...s, nodes: s.nodes.map((n, i) => (i === index ? next : n)) }], { coalesce: `node:${index}:${Math.floor(Date.now() / 2000)}` });
  }, [edit]);

  // --- React Flow events ---------------------------------------------------------------------
  const onNodesChange = useCallback((chs) => {
    const keep = chs.filter((c) => c.type !== "remove");
    if (keep.length) setNodes((ns) => applyNodeChanges(keep, ns));
  }, []);
  const onEdgesChange = useCallback((chs) => {
    const sel = chs.filter((c) => c.type === "select");
    if (sel.length) setSelectedEdges((prev) => { const next = new Set(prev); for (const c of sel) c.selected ? next.add(c.id) : next.delete(c.id); return next; });
  }, []);
  const onNodeDragStart = useCallback(() => { dragBefore.current = current(); }, []); // eslint-disable-line react-hooks/exhaustive-deps
  const onNodeDragStop = useCallback(() => {
    if (dragBefore.current) { history.current.push(dragBefore.current); dragBefore.current = null; setChanges((c) => c + 1); }
  }, []);
  const onNodeClick = useCallback(() => setTab((t) => (t === "preview" || t === "inspect" ? t : "inspect")), []);
  const onConnect = useCallback((c) => {
    edit((s) => [connect(s, c.source, c.sourceHandle || "next", c.target)]);
    setMessage({ kind: "ok", text: `Connected ${c.source} (${c.sourceHandle || "next"}) to ${c.target}.` });
  }, [edit]);
  const isValidConnection = useCallback((c) => {
    const target = specRef.current.nodes.find((n) => n.id === c.target);
    return c.source !== c.target && !!target && hasInput(target);
  }, []);
  const onDrop = useCallback((e) => {
    e.preventDefault();
    const type = e.dataTransfer.getData("application/keel-node");
    if (!TYPES[type]) return;
    const p = rf.screenToFlowPosition({ x: e.clientX, y: e.clientY });
    addNode(type, { x: Math.round(p.x - 100), y: Math.round(p.y - 28) });
  }, [rf, addNode]);

  // --- names in scope for CEL completion -------------------------------------------------------
  const selectedId = selectedNode ? selectedNode.id : null;
  useEffect(() => {
    if (!selectedId || !spec) return;
    const local = [
      { name: "input_as_text", type: "string", detail: "the run's input as text" },
      { name: "input.output_text", type: "string", detail: "the previous node's text" },
      { name: "input.output_parsed", type: null, detail: "the previous node's structured output" },
      { name: "workflow.input", type: null, detail: "the run's input as given" },
      ...Object.keys((spec.nodes.find((n) => n.type === "start") || {}).state || {}).map((k) => ({ name: `state.${k}`, type: null, detail: "state variable" })),
      ...spec.nodes.filter((n) => n.id !== selectedId && n.type !== "note").flatMap((n) => [
        { name: `nodes.${n.id}.output_text`, type: "string", detail: `${n.id}'s text` },
        { name: `nodes.${n.id}.output_parsed`, type: null, detail: `${n.id}'s structured output` }]),
    ];
    setNames(local);
    let live = true;
    if (doc && doc.origin !== "new") {
      api.names(name, selectedId).then((r) => {
        if (!live) return;
        const seen = new Set(r.names.map((n) => n.name));
        setNames([...r.names, ...local.filter((n) => !seen.has(n.name))]);
      }).catch(() => {});
    }
    return () => { live = false; };
  }, [selectedId, doc && doc.revision, spec && spec.nodes.length]); // eslint-disable-line react-hooks/exhaustive-deps

  // --- validation as you type --------------------------------------------------------------------
  useEffect(() => {
    if (!spec || readOnly || !changes) return;
    const t = setTimeout(() => {
      api.validate({ spec: withLayout(specRef.current, posOf(nodesRef.current)) })
        .then((r) => setProblems(r.problems)).catch(() => {});
    }, 400);
    return () => clearTimeout(t);
  }, [spec, changes]); // eslint-disable-line react-hooks/exhaustive-deps

  // --- saving, publishing ------------------------------------------------------------------------
  const save = async ({ base = null } = {}) => {
    const d = docRef.current;
    const body = { base_revision: base ?? d.revision, spec: withLayout(specRef.current, posOf(nodesRef.current), rf.getViewport()) };
    const at = changes;
    try {
      const r = await api.save(name, body);
      setDoc(r); setYamlText(r.yaml); setProblems(r.problems || []); setSavedAt(at); setVersionsKey((k) => k + 1);
      setMessage({ kind: "ok", text: `Saved draft revision ${r.revision}${r.problems && r.problems.some((p) => p.severity === "error") ? " (it has problems: publishing needs them fixed)" : ""}.` });
      return r;
    } catch (e) {
      if (e.status === 409 && e.code === "draft_conflict") {
        setConflict({ message: e.message, current: e.body && e.body.current });
        setMessage({ kind: "error", text: "Not saved: someone saved this draft meanwhile. Your edits are kept." });
      } else {
        setMessage({ kind: "error", text: `Not saved: ${e.message}${e.hint ? ` — ${e.hint}` : ""}. Your edits are kept in the page.` });
      }
      return null;
    }
  };

  const publish = async () => {
    let d = docRef.current;
    if (dirty || d.origin !== "draft") { d = await save(); if (!d) return; }
    try {
      const r = await api.publish(name, d.revision);
      setMessage({ kind: "ok", text: r.message });
      setVersionsKey((k) => k + 1);
      setDoc((x) => ({ ...x, version: r.version }));
    } catch (e) {
      if (e.body && e.body.problems) setProblems(e.body.problems);
      if (e.status === 409) setConflict({ message: e.message, current: e.body && e.body.current });
      setMessage({ kind: "error", text: `Not published: ${e.message}${e.hint ? ` — ${e.hint}` : ""}` });
    }
  };

  const saveYaml = async () => {
    try {
      const r = await api.save(name, { base_revision: docRef.current.revision, yaml: yamlText });
      load(r); setSavedAt(changes);
      setMessage({ kind: "ok", text: `Saved draft revision ${r.revision} from the YAML.` });
    } catch (e) {
      if (e.status === 409 && e.code === "draft_conflict") setConflict({ message: e.message, current: e.body && e.body.current });
      setMessage({ kind: "error", text: `Not saved: ${e.message}${e.hint ? ` — ${e.hint}` : ""}. Your text is kept.` });
    }
  };

  const resolveConflict = {
    keepMine: async () => { const base = conflict.current ? conflict.current.revision : 0; setConflict(null); await save({ base }); },
    takeTheirs: () => {
      history.current.push(current()); // Undo brings yours back
      const c = conflict.current; setConflict(null);
      if (c) { load(c); setSavedAt(changes + 1); setChanges((x) => x + 1); }
      setMessage({ kind: "ok", text: "Took their draft. Undo (Ctrl+Z) brings yours back." });
    },
    merge: async (text) => {
      try {
        const r = await api.save(name, { base_revision: conflict.current ? conflict.current.revision : 0, yaml: text });
        setConflict(null); history.current.push(current()); load(r); setSavedAt(changes + 1); setChanges((x) => x + 1);
        setMessage({ kind: "ok", text: `Saved the merge as revision ${r.revision}.` });
      } catch (e) {
        if (e.status === 409 && e.code === "draft_conflict") setConflict({ message: e.message, current: e.body && e.body.current });
        setMessage({ kind: "error", text: `Not saved: ${e.message}${e.hint ? ` — ${e.hint}` : ""}` });
      }
    },
  };

  // --- preview run -------------------------------------------------------------------------------
  const stream = async (path, body) => {
    setBusy(true);
    try {
      for await (const { event, data } of host.postSSE(path, body)) {
        setRun((r) => {
          const x = { ...r, log: [...r.log] };
          if (event === "run") x.runId = data.run_id;
          else if (event === "node") {
            const st = { node_started: "running", node_finished: "done", node_failed: "failed", waiting: "waiting" }[data.kind];
            if (st && data.node_id) { x.nodes = { ...x.nodes, [data.node_id]: st }; x.log.push(`${data.node_id}: ${st}${data.port ? ` → ${data.port}` : ""}${data.error ? ` (${data.error})` : ""}`); }
          } else if (event === "delta") x.answer = data.text;
          else if (event === "approval") { x.approval = data; x.log.push(`waiting for approval: ${data.message}`); }
          else if (event === "done") { x.status = data.status; if (data.error) x.error = data.error; if (data.status !== "waiting") x.approval = null; x.version = (x.version || 0) + 1; }
          else if (event === "error") { x.status = "failed"; x.error = `${data.message}${data.hint ? ` — ${data.hint}` : ""}`; }
          return x;
        });
      }
    } catch (e) {
      setRun((r) => ({ ...r, status: "failed", error: `${e.message}${e.hint ? ` — ${e.hint}` : ""}` }));
    } finally {
      setBusy(false);
    }
  };
  const runPreview = async (text) => {
    let d = docRef.current;
    if (dirty || d.origin === "new") { d = await save(); if (!d) return; }
    let input = text;
    if (/^\s*[[{]/.test(text)) { try { input = JSON.parse(text); } catch { /* text after all */ } }
    setRun({ status: "running", log: [], nodes: {}, runId: null, approval: null, answer: "", error: null });
    await stream(api.previewPath(name), { input, revision: d.origin === "draft" ? d.revision : 0 });
  };
  const decide = async (decision) => {
    const a = run && run.approval;
    if (!a) return;
    setRun((r) => ({ ...r, approval: null, status: "running", log: [...r.log, `${decision === "approve" ? "approved" : "rejected"} in place`] }));
    await stream(`/ui/api/approvals/${encodeURIComponent(a.id)}/${decision}`, {});
  };

  // --- keys ------------------------------------------------------------------------------------
  const keys = useRef(null);
  keys.current = (e) => {
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key.toLowerCase() === "s") { e.preventDefault(); if (!readOnly) save(); return; }
    if (typing(e.target) || conflict) return;
    if (mod && e.key.toLowerCase() === "z") { e.preventDefault(); e.shiftKey ? redo() : undo(); }
    else if (mod && e.key.toLowerCase() === "y") { e.preventDefault(); redo(); }
    else if (mod && e.key.toLowerCase() === "c") copy();
    else if (mod && e.key.toLowerCase() === "v") { e.preventDefault(); paste(); }
    else if (mod && e.key.toLowerCase() === "a") { e.preventDefault(); setNodes((ns) => ns.map((n) => (n.selected ? n : { ...n, selected: true }))); }
    else if ((e.key === "Delete" || e.key === "Backspace") && !readOnly) { e.preventDefault(); deleteSelection(); }
    else if (!mod && e.key === "f") fitAll();
    else if (!mod && e.key === "p") { e.preventDefault(); document.querySelector(".palette-item")?.focus(); }
    else if (!mod && e.key === "i") { e.preventDefault(); setTab("inspect"); requestAnimationFrame(() => document.querySelector(".inspector input, .inspector textarea, .inspector select")?.focus()); }
  };
  useEffect(() => {
    const on = (e) => keys.current(e);
    window.addEventListener("keydown", on);
    const warn = (e) => { if (document.querySelector(".canvas-page.dirty")) { e.preventDefault(); e.returnValue = ""; } };
    window.addEventListener("beforeunload", warn);
    return () => { window.removeEventListener("keydown", on); window.removeEventListener("beforeunload", warn); };
  }, []);

  if (loadError) {
    return <div className="canvas-page"><div className="alert" role="alert"><p><strong>The workflow {name} could not be opened.</strong></p>
      <p>{loadError.message}{loadError.hint ? ` — ${loadError.hint}` : ""}</p><p><a href="#/workflows">Back to the workflows</a></p></div></div>;
  }
  if (!doc || !spec) return <div className="canvas-page"><p className="muted" role="status">Opening {name}…</p></div>;

  const errorCount = problems.filter((p) => p.severity === "error").length;
  const status = doc.origin === "new" ? "new, not saved" : doc.origin === "draft" ? `draft r${doc.revision}` : `v${doc.version}`;
  return (
    <div className={`canvas-page ${dirty ? "dirty" : ""} ${readOnly ? "read-only" : ""}`} data-revision={doc.revision}>
      <div className="canvas-bar" role="toolbar" aria-label="Canvas">
        <a href="#/workflows" className="small">Workflows</a>
        <h1>{name}</h1>
        <span className="badge info" data-testid="doc-status">{status}{doc.version ? ` · published v${doc.version}` : ""}</span>
        {dirty && <span className="badge warn">unsaved changes</span>}
        <span className={`badge ${errorCount ? "bad" : "ok"}`} data-testid="problem-count">{errorCount ? `${errorCount} problem${errorCount > 1 ? "s" : ""}` : "valid"}</span>
        <span className="spacer" />
        <button type="button" className="secondary" onClick={undo} disabled={readOnly} title="Undo (Ctrl+Z)">Undo</button>
        <button type="button" className="secondary" onClick={redo} disabled={readOnly} title="Redo (Ctrl+Shift+Z)">Redo</button>
        <button type="button" className="secondary" onClick={() => fitAll()} title="Fit to view (F)">Fit</button>
        <button type="button" onClick={() => save()} disabled={readOnly} title="Save draft (Ctrl+S)">Save draft</button>
        <button type="button" onClick={publish} disabled={readOnly}>Publish</button>
      </div>
      <p className={`canvas-message ${message ? message.kind : ""}`} role="status" aria-live="polite">{message ? message.text : ""}</p>
      {readOnly && (
        <div className="alert read-only-banner" role="alert">
          <p><strong>Read-only: the canvas cannot draw this workflow.</strong></p>
          <p>{doc.message}</p>
        </div>)}
      <div className="canvas-body">
        <Palette onAdd={(t) => addNode(t)} disabled={readOnly} />
        <div className="canvas-flow" onDragOver={(e) => { e.preventDefault(); e.dataTransfer.dropEffect = "move"; }} onDrop={onDrop}>
          <ReactFlow nodes={shown} edges={edges} nodeTypes={nodeTypes} edgeTypes={edgeTypes}
            onNodesChange={onNodesChange} onEdgesChange={onEdgesChange} onConnect={onConnect} isValidConnection={isValidConnection}
            onNodeDragStart={onNodeDragStart} onNodeDragStop={onNodeDragStop} onNodeClick={onNodeClick}
            deleteKeyCode={null} selectionKeyCode="Shift" multiSelectionKeyCode={MULTI_SELECT_KEYS}
            nodesDraggable={!readOnly} nodesConnectable={!readOnly} elementsSelectable
            onlyRenderVisibleElements={nodes.length > 150} minZoom={0.05} maxZoom={2.5} defaultViewport={firstView.current || undefined}
            proOptions={PRO_OPTIONS} defaultEdgeOptions={EDGE_OPTIONS}>
            <Background gap={20} />
            <MiniMap pannable zoomable nodeColor={miniColour} ariaLabel="Minimap" />
            <Controls showInteractive={false} showFitView={false}>
              <ControlButton onClick={() => fitAll()} title="Fit to view (F)" aria-label="Fit to view">⤢</ControlButton>
            </Controls>
          </ReactFlow>
          {spec.nodes.length === 0 && <div className="canvas-empty" role="status">An empty canvas. Drag a node from the palette, or press P and Enter.</div>}
        </div>
        <aside className="side" aria-label="Panels">
          <div className="tabs" role="tablist">
            {[["inspect", "Inspector"], ["state", "State"], ["versions", "Versions"], ["preview", "Preview"], ["yaml", "YAML"]].map(([k, label]) => (
              <button key={k} type="button" role="tab" aria-selected={tab === k} className={tab === k ? "on" : ""} onClick={() => setTab(k)}>{label}</button>))}
          </div>
          <div className="tab-body" role="tabpanel">
            {tab === "inspect" && <Inspector node={selectedNode} index={selectedIndex} spec={spec} schema={schema} problems={problems} names={names}
              models={models.options} readOnly={readOnly}
              onChange={(next) => changeNode(selectedIndex, next)}
              onRename={(to) => edit((s, p) => renameNode(s, p, selectedNode.id, to), { select: [to] })}
              onDelete={deleteSelection}
              onConnect={(port, to) => onConnect({ source: selectedNode.id, sourceHandle: port, target: to })}
              onDisconnect={(e) => edit((s) => [{ ...s, edges: s.edges.filter((x) => x !== e) }])} />}
            {tab === "inspect" && selected.length > 1 && <p className="muted">{selected.length} nodes selected: move them together, copy (Ctrl+C) or delete (Delete).</p>}
            {tab === "state" && <StatePanel spec={spec} readOnly={readOnly}
              onChange={(start) => changeNode(spec.nodes.findIndex((n) => n.type === "start"), start)} />}
            {tab === "versions" && <VersionsPanel api={api} name={name} hasDraft={doc.origin === "draft"} diff={diff} onDiff={setDiff} refreshKey={versionsKey} />}
            {tab === "preview" && <>
              <PreviewPanel run={run} busy={busy} onRun={runPreview} onDecide={decide} />
              {run && run.runId && selectedNode && <NodeRunDetails api={api} runId={run.runId} nodeId={selectedNode.id} version={`${run.version}-${run.log.length}`} />}
            </>}
            {tab === "yaml" && <section aria-label="YAML">
              <p className="muted small">The {doc.origin === "new" ? "new workflow (not saved yet)" : doc.origin === "draft" ? `draft as saved (revision ${doc.revision})` : `published version ${doc.version}`}; edit and save it as text.</p>
              <textarea className="yaml" aria-label="YAML text" rows={24} value={yamlText} spellCheck={false} onChange={(e) => setYamlText(e.target.value)} />
              <button type="button" onClick={saveYaml}>Save YAML as draft</button>
            </section>}
          </div>
        </aside>
      </div>
      {conflict && <ConflictDialog conflict={conflict} mine={withLayout(spec, posOf(nodes))}
        onKeepMine={resolveConflict.keepMine} onTakeTheirs={resolveConflict.takeTheirs} onMerge={resolveConflict.merge}
        onClose={() => setConflict(null)} />}
    </div>
  );
}

let root = null;

/** Draw the canvas of workflow ``name`` into ``element``. ``host``: {apiKey, postSSE} of the UI. */
export function mountCanvas(element, { name, host }) {
  unmountCanvas();
  root = createRoot(element);
  root.render(<ReactFlowProvider><Canvas name={name} host={host} /></ReactFlowProvider>);
}

export function unmountCanvas() {
  if (root) { root.unmount(); root = null; }
}
