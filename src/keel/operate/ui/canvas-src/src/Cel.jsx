// A CEL field: the text over a highlighted copy of it (a light tokenizer), and completion of
// the names in scope (input.output_parsed.*, state.*, workflow.input.*, nodes.*).
import { useMemo, useRef, useState } from "react";

const TOKEN = /("(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?)|(\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?u?\b)|(\b(?:true|false|null|in)\b)|([A-Za-z_][A-Za-z0-9_]*)(?=\s*\()|([A-Za-z_][A-Za-z0-9_]*)|(&&|\|\||==|!=|<=|>=|[-+*/%<>!?:])|(\s+|[^\s])/g;
const ROOTS = new Set(["input", "input_as_text", "state", "nodes", "workflow"]);

/** ``[[kind, text]]`` for highlighting: string, number, keyword, function, root, name, op, other. */
export function tokenize(src) {
  const out = [];
  let m;
  TOKEN.lastIndex = 0;
  while ((m = TOKEN.exec(src)) !== null) {
    const kind = m[1] ? "string" : m[2] ? "number" : m[3] ? "keyword" : m[4] ? "function"
      : m[5] ? (ROOTS.has(m[5]) ? "root" : "name") : m[6] ? "op" : "other";
    out.push([kind, m[0]]);
  }
  return out;
}

const WORD = /[A-Za-z_][A-Za-z0-9_.]*$/;

export function CelInput({ id, value, onChange, names = [], multiline = false, invalid = false, describedBy, label }) {
  const [open, setOpen] = useState(null); // {prefix, items, at}
  const [active, setActive] = useState(0);
  const ta = useRef(null);
  const tokens = useMemo(() => tokenize(value || ""), [value]);

  function suggest(text, caret) {
    const m = WORD.exec(text.slice(0, caret));
    if (!m) return setOpen(null);
    const prefix = m[0];
    const items = names.filter((n) => n.name.startsWith(prefix) && n.name !== prefix).slice(0, 12);
    if (!items.length) return setOpen(null);
    setActive(0);
    setOpen({ prefix, items, at: caret - prefix.length });
  }

  function accept(item) {
    const el = ta.current, caret = el.selectionStart;
    const text = value.slice(0, open.at) + item.name + value.slice(caret);
    onChange(text);
    setOpen(null);
    const pos = open.at + item.name.length;
    requestAnimationFrame(() => { el.focus(); el.setSelectionRange(pos, pos); });
  }

  function onKeyDown(e) {
    if (open) {
      if (e.key === "ArrowDown") { e.preventDefault(); setActive((active + 1) % open.items.length); return; }
      if (e.key === "ArrowUp") { e.preventDefault(); setActive((active - 1 + open.items.length) % open.items.length); return; }
      if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); accept(open.items[active]); return; }
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); setOpen(null); return; }
    }
    if (e.key === " " && e.ctrlKey) { e.preventDefault(); suggest(value || "", e.target.selectionStart); return; }
    if (e.key === "Enter" && !multiline) e.preventDefault(); // one line: Enter adds no newline
  }

  const listId = `${id}-names`;
  return (
    <div className={`cel ${invalid ? "invalid" : ""}`}>
      <pre className="cel-hl" aria-hidden="true">{tokens.map(([k, t], i) => <span key={i} className={`tok-${k}`}>{t}</span>)}{"\n"}</pre>
      <textarea ref={ta} id={id} className="cel-input" value={value || ""} rows={multiline ? 3 : 1} spellCheck={false}
        aria-label={label} aria-invalid={invalid || undefined} aria-describedby={describedBy}
        role="combobox" aria-expanded={!!open} aria-controls={listId} aria-autocomplete="list"
        aria-activedescendant={open ? `${listId}-${active}` : undefined}
        onChange={(e) => { onChange(e.target.value); suggest(e.target.value, e.target.selectionStart); }}
        onKeyDown={onKeyDown} onBlur={() => setTimeout(() => setOpen(null), 150)} />
      {open && (
        <ul className="cel-complete" role="listbox" id={listId} aria-label="Names in scope">
          {open.items.map((n, i) => (
            <li key={n.name} id={`${listId}-${i}`} role="option" aria-selected={i === active} className={i === active ? "active" : ""}
                onMouseDown={(e) => { e.preventDefault(); accept(n); }}>
              <code>{n.name}</code>{n.type ? <span className="muted"> {n.type}</span> : null}
              {n.detail ? <span className="muted small"> — {n.detail}</span> : null}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
