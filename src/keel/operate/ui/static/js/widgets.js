// Widget outputs: a ChatKit widget (its JSON form, as Keel's ChatKit endpoint sends it) drawn in
// the chat page. The same components ChatKit draws: Card, ListView, Basic roots; Box, Row, Col,
// Form; Title, Text, Caption, Markdown (as text), Badge, Label, Divider, Spacer, Image; Button,
// Input, Textarea, Select, Checkbox, DatePicker. Anything else shows its children. Text is set
// as text, never as HTML. A button or form calls ``onAction({type, payload})``; a form's fields
// go into the payload by their ``name`` (as ChatKit does). See docs/widgets.md.
import { h } from "./api.js";

const SIZES = { xs: ".75rem", sm: ".85rem", md: "1rem", lg: "1.15rem", xl: "1.3rem" };

function gapOf(node) {
  const g = node.gap;
  return g == null ? null : typeof g === "number" ? `${g * 0.25}rem` : String(g);
}

function box(node, cls, children) {
  const el = h(`div.w-${cls}`, {}, children);
  const gap = gapOf(node);
  if (gap) el.style.gap = gap;
  if (node.width) el.style.flex = `0 0 ${node.width}`;
  return el;
}

function textOf(node, tag, cls) {
  const el = h(`${tag}.${cls}`, {}, node.value == null ? "" : String(node.value));
  if (node.weight) el.dataset.weight = node.weight;
  if (node.size && SIZES[node.size]) el.style.fontSize = SIZES[node.size];
  if (node.width) el.style.flex = `0 0 ${node.width}`;
  return el;
}

/** The fields a form holds, by name. */
function formValues(form) {
  const out = {};
  for (const el of form.querySelectorAll("[name]")) out[el.name] = el.type === "checkbox" ? el.checked : el.value;
  return out;
}

/** ``doc`` (a widget root) as DOM; ``onAction(action)`` runs what its buttons and forms send. */
export function renderWidget(doc, onAction) {
  const draw = (node) => {
    if (node == null || typeof node !== "object") return null;
    const kids = () => (Array.isArray(node.children) ? node.children : node.children ? [node.children] : []).map(draw);
    switch (node.type) {
      case "Card": return box(node, "card", kids());
      case "Basic": return box(node, "basic", kids());
      case "ListView": return h("div.w-listview", {}, node.status?.text ? h("div.w-status", {}, node.status.text) : "",
        h("ul.w-list", {}, kids().map((k) => k)));
      case "ListViewItem": return h("li.w-item", {}, kids());
      case "Box": case "Col": return box(node, "col", kids());
      case "Row": return box(node, "row", kids());
      case "Form": {
        const form = h("form.w-form", {}, kids());
        const gap = gapOf(node);
        if (gap) form.style.gap = gap;
        form.addEventListener("submit", (ev) => {
          ev.preventDefault();
          const a = node.onSubmitAction;
          if (a) act(form, { type: a.type, payload: { ...(a.payload || {}), ...formValues(form) } });
        });
        return form;
      }
      case "Title": return textOf(node, "div", "w-title");
      case "Text": case "Markdown": return textOf(node, "div", "w-text");
      case "Caption": return textOf(node, "div", "w-caption");
      case "Label": return h("label.w-label", { for: node.fieldName ? `w-field-${node.fieldName}` : null }, node.value ?? "");
      case "Badge": return h("span.w-badge", {}, node.label ?? "");
      case "Divider": return h("hr.w-divider");
      case "Spacer": return h("div.w-spacer");
      case "Image": return h("img.w-image", { src: node.src, alt: node.alt || "" });
      case "Input": return h("input.w-input", { name: node.name, id: node.name ? `w-field-${node.name}` : null,
        type: node.inputType || "text", placeholder: node.placeholder || "", value: node.defaultValue ?? null, required: !!node.required });
      case "Textarea": return h("textarea.w-input", { name: node.name, id: node.name ? `w-field-${node.name}` : null,
        placeholder: node.placeholder || "" }, node.defaultValue ?? "");
      case "DatePicker": return h("input.w-input", { type: "date", name: node.name, value: node.defaultValue ?? null });
      case "Checkbox": return h("label.w-check", {}, h("input", { type: "checkbox", name: node.name, checked: !!node.defaultChecked }), " ", node.label ?? "");
      case "Select": return h("select.w-input", { name: node.name },
        (node.options || []).map((o) => h("option", { value: o.value, selected: o.value === node.defaultValue }, o.label ?? o.value)));
      case "Button": {
        const b = h(`button.w-button${node.style === "primary" ? ".primary" : ""}`, { type: node.submit ? "submit" : "button" }, node.label ?? "");
        if (node.color === "danger") b.classList.add("danger");
        if (!node.submit && node.onClickAction) {
          b.addEventListener("click", () => act(b, { type: node.onClickAction.type, payload: node.onClickAction.payload || {} }));
        }
        return b;
      }
      default: return h("div.w-other", {}, kids());
    }
  };
  const root = h("div.widget", { role: "group", "aria-label": "Widget", "data-key": doc.key || "" }, draw(doc));
  function act(from, action) {
    if (!onAction) return;
    root.querySelectorAll("button, input, textarea, select").forEach((el) => { el.disabled = true; });
    onAction(action);
  }
  return root;
}
