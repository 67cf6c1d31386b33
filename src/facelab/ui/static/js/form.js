// A form generated from an option declaration list (GET /api/steps gives each step's `fields`).
import { h } from "./api.js";

function input(field) {
  const id = `f-${field.name}`;
  const common = { id, name: field.name, "data-kind": field.kind };
  if (field.choices) {
    const sel = h("select", common, h("option", { value: "" }, `default (${field.shown_default})`),
      field.choices.map((c) => h("option", { value: c }, c)));
    return sel;
  }
  if (field.kind === "boolean") {
    return h("select", common, h("option", { value: "" }, `default (${field.shown_default})`),
      h("option", { value: "true" }, "on"), h("option", { value: "false" }, "off"));
  }
  const attrs = { ...common, type: field.kind === "string" || field.kind === "path" ? "text" : "number",
    placeholder: field.shown_default };
  if (field.kind === "integer") attrs.step = field.multiple_of || 1;
  if (field.kind === "number") attrs.step = "any";
  if (field.min !== null && !field.min_open) attrs.min = field.min;
  if (field.max !== null && !field.max_open) attrs.max = field.max;
  if (field.required) attrs.required = true;
  return h("input", attrs);
}

export function renderFields(container, fields) {
  const groups = new Map();
  for (const f of fields) {
    const g = f.group || "Options";
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(f);
  }
  const parts = [];
  for (const [group, list] of groups) {
    parts.push(h("fieldset", {}, h("legend", {}, group),
      list.map((f) => h("label", { class: "field", title: f.help, for: `f-${f.name}` },
        h("span", { class: "name" }, f.flag), input(f), h("span", { class: "help" }, f.help)))));
  }
  container.replaceChildren(...parts);
}

// the values the user set (empty = the default, left out)
export function readFields(container) {
  const out = {};
  for (const el of container.querySelectorAll("[data-kind]")) {
    const v = el.value.trim();
    if (v === "") continue;
    const kind = el.dataset.kind;
    if (kind === "boolean") out[el.name] = v === "true";
    else if (kind === "integer") out[el.name] = parseInt(v, 10);
    else if (kind === "number") out[el.name] = parseFloat(v);
    else out[el.name] = v;
  }
  return out;
}
