// The spec (what the YAML says) as a graph React Flow draws, and back.
import dagre from "@dagrejs/dagre";

/** The twelve node types: label, icon, category (Agent Builder's palette groups). */
export const TYPES = {
  start: { label: "Start", icon: "▶", cat: "core" },
  agent: { label: "Agent", icon: "✦", cat: "core" },
  end: { label: "End", icon: "■", cat: "core" },
  note: { label: "Note", icon: "✎", cat: "core" },
  file_search: { label: "File search", icon: "⌕", cat: "tools" },
  guardrails: { label: "Guardrails", icon: "⛨", cat: "tools" },
  mcp: { label: "MCP", icon: "⚙", cat: "tools" },
  if_else: { label: "If / else", icon: "⑂", cat: "logic" },
  while: { label: "While", icon: "↻", cat: "logic" },
  human_approval: { label: "User approval", icon: "✋", cat: "logic" },
  transform: { label: "Transform", icon: "ƒ", cat: "data" },
  set_state: { label: "Set state", icon: "≔", cat: "data" },
};
export const CATEGORIES = ["core", "tools", "logic", "data"];

/** Nodes whose outgoing edges may also use the `error` port (keel.workflows.spec: can_fail). */
const CAN_FAIL = new Set(["agent", "file_search", "guardrails", "mcp", "transform", "set_state"]);

/** The ports a node's outgoing edges may use, in drawing order. */
export function ports(n) {
  let out;
  switch (n.type) {
    case "end": case "note": return [];
    case "if_else": out = [...(n.branches || []).map((b) => b && b.name).filter(Boolean), "else"]; break;
    case "while": out = ["body", "next"]; break;
    case "human_approval": out = ["approved", "rejected", "timeout"]; break;
    case "guardrails": out = ["pass", "fail"]; break;
    default: out = ["next"];
  }
  return CAN_FAIL.has(n.type) ? [...out, "error"] : out;
}

/** Whether edges may enter the node. */
export const hasInput = (n) => n.type !== "start" && n.type !== "note";

/** What a new node of ``type`` starts with (its required fields). */
export function newNode(type, id, defaultModel) {
  const n = { id, type };
  if (type === "agent") Object.assign(n, { model: defaultModel || "scripted:bot", instructions: "" });
  if (type === "file_search") n.collection = "docs";
  if (type === "guardrails") n.checks = ["jailbreak"];
  if (type === "mcp") Object.assign(n, { server: "stdio:", tool: "" });
  if (type === "if_else") n.branches = [{ name: "yes", condition: "true" }];
  if (type === "while") n.condition = "false";
  if (type === "human_approval") n.message = "Approve?";
  if (type === "transform") n.expression = "input.output_parsed";
  if (type === "set_state") n.assign = { count: "1" };
  if (type === "note") n.text = "";
  return n;
}

/** A free id for a new node of ``type``: ``agent``, ``agent_2``... */
export function freeId(spec, base) {
  const taken = new Set((spec.nodes || []).map((n) => n.id));
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}_${i}`)) return `${base}_${i}`;
}

export const edgeId = (e) => `${e.from}.${e.port || "next"}->${e.to}`;

export const NODE_W = 200, NODE_H = 64;
/** Below this zoom a node is drawn with less detail (Node.jsx). */
export const LOD_ZOOM = 0.3;
/** Where output port ``i`` sits: PORT_TOP + i * PORT_STEP px below the node's top border. */
export const PORT_TOP = 31, PORT_STEP = 16;
const HANDLE = 10, BORDER_TOP = 4, BORDER = 1; // canvas.css: .react-flow__handle, .kn

/** A node's height on the canvas: room for its ports. */
export const nodeHeight = (n) => Math.max(56, 28 + ports(n).length * PORT_STEP);

/** Where React Flow would measure the node's handles (canvas.css draws them there). Given up
 * front, React Flow need not draw every node once to measure it, so culling works from the first
 * frame: a 2,000-node graph opens drawing only the nodes on screen. */
export function handlesOf(n) {
  const h = nodeHeight(n), out = [];
  if (hasInput(n)) out.push({ id: "in", type: "target", position: "left", x: BORDER - HANDLE / 2,
    y: BORDER_TOP + (h - BORDER_TOP - BORDER) / 2 - HANDLE / 2, width: HANDLE, height: HANDLE });
  ports(n).forEach((p, i) => out.push({ id: p, type: "source", position: "right", x: NODE_W - BORDER - HANDLE / 2,
    y: BORDER_TOP + PORT_TOP + i * PORT_STEP - HANDLE / 2, width: HANDLE, height: HANDLE }));
  return out;
}

/** Positions for every node: the layout's where it has one, dagre's for the others. */
export function positions(spec, layout) {
  const saved = (layout && layout.nodes) || {};
  const nodes = spec.nodes || [];
  const out = {};
  const missing = nodes.filter((n) => !saved[n.id] || typeof saved[n.id].x !== "number");
  if (missing.length) {
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 70, marginx: 20, marginy: 20 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const n of nodes) g.setNode(n.id, { width: NODE_W, height: NODE_H + 12 * Math.max(0, ports(n).length - 2) });
    for (const e of spec.edges || []) if (g.hasNode(e.from) && g.hasNode(e.to)) g.setEdge(e.from, e.to);
    dagre.layout(g);
    for (const n of missing) {
      const p = g.node(n.id);
      out[n.id] = { x: Math.round(p.x - NODE_W / 2), y: Math.round(p.y - NODE_H / 2) };
    }
  }
  for (const n of nodes) if (!out[n.id]) out[n.id] = { x: saved[n.id].x, y: saved[n.id].y };
  return out;
}

/** React Flow edges for the spec's edges. */
export function flowEdges(spec, { selected = new Set(), diff = null, problemsByEdge = {} } = {}) {
  return (spec.edges || []).map((e) => {
    const id = edgeId(e), port = e.port || "next";
    const cls = [port === "error" ? "edge-error" : "", diff && diff.edgesAdded.has(id) ? "diff-added" : ""].join(" ").trim();
    return {
      id, source: e.from, target: e.to, sourceHandle: port, targetHandle: "in", type: "keel",
      selected: selected.has(id), className: cls || undefined,
      data: { port, problem: problemsByEdge[id] },
    };
  });
}

/** The spec with ``layout`` set from ``pos`` (and the viewport), ready to save. */
export function withLayout(spec, pos, viewport) {
  const nodes = {};
  for (const n of spec.nodes || []) if (pos[n.id]) nodes[n.id] = { x: Math.round(pos[n.id].x), y: Math.round(pos[n.id].y) };
  const layout = { nodes };
  if (viewport) layout.viewport = { x: Math.round(viewport.x), y: Math.round(viewport.y), zoom: +viewport.zoom.toFixed(3) };
  return { ...spec, layout };
}

/** Rename node ``from`` to ``to`` in nodes, edges and positions. */
export function renameNode(spec, pos, from, to) {
  const nodes = spec.nodes.map((n) => (n.id === from ? { ...n, id: to } : n));
  const edges = (spec.edges || []).map((e) => ({ ...e, from: e.from === from ? to : e.from, to: e.to === from ? to : e.to }));
  const p = { ...pos, [to]: pos[from] };
  delete p[from];
  return [{ ...spec, nodes, edges }, p];
}

/** Remove nodes (ids) and the edges touching them. */
export function removeNodes(spec, pos, ids) {
  const gone = new Set(ids);
  const p = { ...pos };
  for (const id of gone) delete p[id];
  return [{ ...spec, nodes: spec.nodes.filter((n) => !gone.has(n.id)),
    edges: (spec.edges || []).filter((e) => !gone.has(e.from) && !gone.has(e.to)) }, p];
}

/** Add an edge (a port has at most one edge: a new one replaces the old). */
export function connect(spec, from, port, to) {
  const edges = (spec.edges || []).filter((e) => !(e.from === from && (e.port || "next") === port));
  const edge = { from };
  if (port && port !== "next") edge.port = port;
  edge.to = to;
  return { ...spec, edges: [...edges, edge] };
}
