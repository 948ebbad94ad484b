// A node on the canvas: icon and category colour, its input and output ports, its problems,
// its state in a preview run, and whether a diff added or changed it.
import { memo } from "react";
import { Handle, Position, BaseEdge, EdgeLabelRenderer, getBezierPath, useStore } from "@xyflow/react";
import { LOD_ZOOM, PORT_TOP, PORT_STEP, TYPES, nodeHeight, ports, hasInput } from "./graph.js";
import { Icon } from "./icons.jsx";

function summary(n) {
  if (n.type === "agent") return n.model || "";
  if (n.type === "if_else") return `${(n.branches || []).length} branch${(n.branches || []).length === 1 ? "" : "es"}`;
  if (n.type === "note") return (n.text || "").slice(0, 60);
  if (n.type === "file_search") return n.collection || "";
  if (n.type === "mcp") return n.tool || "";
  return "";
}

// Level of detail: zoomed out (below LOD_ZOOM), a node is its box, title and ports only (no icon,
// subtitle or port labels, which are unreadable there): a fitted 2,000-node graph draws a third of
// the elements. The boolean selector re-renders nodes only when the zoom crosses the threshold.
const zoomedOut = (s) => s.transform[2] < LOD_ZOOM;

export const KeelNode = memo(function KeelNode({ id, data, selected }) {
  const low = useStore(zoomedOut);
  const n = data.node, meta = TYPES[n.type] || { label: n.type, icon: "?", cat: "core" };
  const out = ports(n);
  const errors = data.problems ? data.problems.filter((p) => p.severity === "error") : [];
  const warns = data.problems ? data.problems.length - errors.length : 0;
  const cls = ["kn", `cat-${meta.cat}`, selected ? "selected" : "", data.run ? `run-${data.run}` : "",
    data.diff ? `diff-${data.diff}` : "", errors.length ? "has-errors" : "", n.type === "note" ? "note" : "", low ? "lod" : ""].join(" ");
  // Handles are placed the same way at both levels (graph.js handlesOf says where, for culling).
  const handles = <>
    {hasInput(n) && <Handle type="target" position={Position.Left} id="in" className="port-in" />}
    {out.map((p, i) => <Handle key={p} type="source" position={Position.Right} id={p} className={`port-out port-${p}`} data-port={p}
      style={{ top: PORT_TOP + i * PORT_STEP }} />)}
  </>;
  if (low) {
    return (
      <div className={cls} data-node-id={id} data-node-type={n.type} style={{ height: nodeHeight(n) }}>
        {handles}
        <span className="kn-title">{n.title || n.id}</span>
        {errors.length > 0 && <span className="kn-problems" role="img" aria-label={`${errors.length} problem${errors.length > 1 ? "s" : ""}`}>{errors.length}</span>}
      </div>);
  }
  return (
    <div className={cls} data-node-id={id} data-node-type={n.type} style={{ height: nodeHeight(n) }}
         title={errors.map((p) => p.message).join("\n") || undefined}>
      {handles}
      <div className="kn-head">
        <span className="kn-icon" aria-hidden="true"><Icon type={n.type} /></span>
        <span className="kn-title">{n.title || n.id}</span>
        {errors.length > 0 && <span className="kn-problems" role="img" aria-label={`${errors.length} problem${errors.length > 1 ? "s" : ""}`}>{errors.length}</span>}
        {!errors.length && warns > 0 && <span className="kn-warns" aria-label={`${warns} warnings`}>!</span>}
      </div>
      <div className="kn-sub">{meta.label}{summary(n) ? ` · ${summary(n)}` : ""}</div>
      {data.run && <div className="kn-run" aria-label={`run: ${data.run}`}>{data.run}</div>}
      {out.map((p, i) => <span key={p} className={`kn-port-label ${p === "error" ? "port-error" : ""}`} style={{ top: PORT_TOP + i * PORT_STEP }}>{p}</span>)}
    </div>
  );
});

export function KeelEdge(props) {
  const { id, sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition, markerEnd, selected, data } = props;
  const [path, lx, ly] = getBezierPath({ sourceX, sourceY, targetX, targetY, sourcePosition, targetPosition });
  const port = data && data.port;
  return (
    <g data-edge-id={id} className={selected ? "edge-selected" : ""}>
      <BaseEdge id={id} path={path} markerEnd={markerEnd} />
      {port && port !== "next" && (
        <EdgeLabelRenderer>
          <div className="edge-label" style={{ transform: `translate(-50%, -50%) translate(${lx}px,${ly}px)` }}>{port}</div>
        </EdgeLabelRenderer>
      )}
    </g>
  );
}

export const nodeTypes = { keel: KeelNode };
export const edgeTypes = { keel: KeelEdge };
