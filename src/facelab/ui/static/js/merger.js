// Interactive merger page: one dst frame merged again on every settings change (latest change wins),
// DeepFaceLab's keys, apply to this frame / a range / all, then render the rest as a job.
import { api, h, showError, toast } from "./api.js";

const S = {
  fields: new Map(),   // option name -> declared field (GET /api/merger)
  groups: [],
  masks: [],
  enhancers: [],
  models: [],
  model: null,         // {name, gpu}
  frames: [],          // [{n, faces, file, name}]
  index: 0,            // into frames
  plan: { default: {}, ranges: [], saved: false },
  pending: {},         // settings changed here and not applied yet: they follow from frame to frame
  view: "image",
  zoom: 1,
  draftScale: 1,       // from the last full render (the server's draft_scale)
  lastDraft: false,
};
const $ = (id) => document.getElementById(id);
const SEAMLESS = ["seamless", "seamless-hist-match"];

// ---- settings: the plan's for a frame (as MergePlan.settings_for), with the pending changes on top

function rangeOf(text) {
  const [a, b] = String(text).split("-").map((x) => parseInt(x, 10));
  return [a, Number.isNaN(b) ? a : b];
}

function settingsFor(n) {
  const out = { ...S.plan.default };
  for (const r of S.plan.ranges) {
    const [a, b] = rangeOf(r.frames);
    if (a <= n && n <= b) Object.assign(out, r.settings);
  }
  return out;
}

const frame = () => S.frames[S.index];
const shown = () => ({ ...settingsFor(frame().n), ...S.pending });

function setValue(name, value) {
  const next = { ...shown(), [name]: value };
  // seamless_hist and mode seamless-hist-match are one thing (MergeSettings makes them agree)
  if (name === "mode") next.seamless_hist = value === "seamless-hist-match";
  if (name === "seamless_hist") {
    if (value && !SEAMLESS.includes(next.mode)) next.mode = "seamless-hist-match";
    else next.mode = value ? "seamless-hist-match" : next.mode === "seamless-hist-match" ? "seamless" : next.mode;
  }
  const base = settingsFor(frame().n);
  S.pending = {};
  for (const [k, v] of Object.entries(next)) if (base[k] !== v) S.pending[k] = v;
  syncControls();
}

// ---- rendering: at most one request in flight; while it runs only the newest request waits

let inflight = false;
let queued = null;
let shownUrl = null;
let renders = 0;

function requestRender({ draft = false, t0 = performance.now() } = {}) {
  if (!S.frames.length) return;
  const req = { frame: frame(), settings: shown(), view: S.view, draft, t0 };
  if (inflight) { queued = req; return; }
  send(req);
}

async function send(req) {
  inflight = true;
  S.lastDraft = req.draft;
  const img = $("mg-image");
  try {
    let url;
    let head = null;
    if (req.view === "original") {
      url = `/files/${req.frame.file}`;  // the dst frame as extracted: not made by facelab, not marked
    } else {
      const res = await fetch("/api/merger/render", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: S.model.name, gpu: S.model.gpu, frame: req.frame.n, settings: req.settings,
          view: req.view, scale: req.draft ? S.draftScale : 1, format: "jpeg" }),
      });
      if (!res.ok) {
        const data = await res.json().catch(() => ({}));
        const err = new Error(data.error || `${res.status} ${res.statusText}`);
        err.hint = data.hint;
        throw err;
      }
      head = res.headers;
      url = URL.createObjectURL(await res.blob());
    }
    img.src = url;
    await img.decode();
    const ms = performance.now() - req.t0;
    performance.measure("merger-update", { start: req.t0, end: req.t0 + ms });
    if (shownUrl && shownUrl.startsWith("blob:")) URL.revokeObjectURL(shownUrl);
    shownUrl = url;
    img.dataset.seq = String(++renders);
    img.dataset.frame = String(req.frame.n);
    img.classList.toggle("draft", req.draft && S.draftScale < 1);
    img.classList.toggle("alpha", Boolean(head && head.get("content-type") === "image/png" && req.view === "image"));
    showTiming(ms, head, req);
  } catch (err) {
    if (err.name !== "EncodingError") showError(err);  // a decode cut short by a newer image is no error
  } finally {
    inflight = false;
    if (queued) { const q = queued; queued = null; send(q); }
  }
}

function showTiming(ms, head, req) {
  const parts = [`${Math.round(ms)} ms`];
  if (head) {
    parts.push(`server ${Math.round(parseFloat(head.get("x-facelab-ms")))} ms`);
    const scale = parseFloat(head.get("x-facelab-scale"));
    if (scale < 1) parts.push(`draft ×${scale}`);
    const draft = head.get("x-facelab-draft-scale");
    if (draft !== null && !req.draft) S.draftScale = parseFloat(draft);
    const notes = JSON.parse(head.get("x-facelab-notes") || "[]");
    $("mg-info").replaceChildren(infoLine(), ...notes.map((n) => h("span", { class: "mg-note" }, ` · ${n}`)));
  } else {
    $("mg-info").replaceChildren(infoLine());
  }
  $("mg-ms").textContent = parts.join(" · ");
}

function infoLine() {
  const f = frame();
  const ranges = S.plan.ranges.filter((r) => { const [a, b] = rangeOf(r.frames); return a <= f.n && f.n <= b; });
  return `frame ${f.n} (${f.name}) · ${f.faces === 1 ? "1 face" : `${f.faces} faces`} · settings: default` +
    ranges.map((r) => ` + frames ${r.frames}`).join("");
}

// ---- controls, generated from the declared merge options

function control(field) {
  const id = `mg-o-${field.name}`;
  const onInput = (value, draft) => { setValue(field.name, value); requestRender({ draft }); };
  let input;
  if (field.name === "mask" || field.name === "enhancer" || field.choices) {
    const choices = field.name === "mask" ? S.masks : field.name === "enhancer" ? ["", ...S.enhancers] : field.choices;
    input = h("select", { id, "data-name": field.name },
      choices.map((c) => h("option", { value: c }, c === "" ? "none" : c)));
    input.addEventListener("change", () => onInput(field.name === "enhancer" && input.value === "" ? null : input.value, false));
  } else if (field.kind === "boolean") {
    input = h("input", { id, type: "checkbox", "data-name": field.name });
    input.addEventListener("change", () => onInput(input.checked, false));
  } else {
    const slider = h("input", { id, type: "range", min: field.min, max: field.max, step: 1, "data-name": field.name });
    const box = h("input", { type: "number", min: field.min, max: field.max, step: 1, class: "mg-num",
      "aria-label": `${field.name} value`, "data-box": field.name });
    slider.addEventListener("input", () => onInput(parseInt(slider.value, 10), true));
    slider.addEventListener("change", () => onInput(parseInt(slider.value, 10), false));
    box.addEventListener("change", () => {
      const v = Math.min(field.max, Math.max(field.min, parseInt(box.value, 10) || 0));
      onInput(v, false);
    });
    input = h("span", { class: "mg-slider" }, slider, box);
  }
  const keys = KEY_OF[field.name];
  return h("div", { class: "mg-ctl", "data-ctl": field.name, title: field.help },
    h("label", { for: id }, field.name.replaceAll("_", " "), keys ? h("kbd", {}, keys) : ""), input);
}

function renderControls() {
  const byGroup = new Map(S.groups.map((g) => [g, []]));
  for (const f of S.fields.values()) byGroup.get(f.group).push(f);
  $("mg-controls").replaceChildren(...[...byGroup].map(([g, list]) =>
    h("fieldset", {}, h("legend", {}, g), list.map(control))));
}

function syncControls() {
  const s = shown();
  for (const el of document.querySelectorAll("#mg-controls [data-name]")) {
    const v = s[el.dataset.name];
    if (el.type === "checkbox") el.checked = Boolean(v);
    else if (el.tagName === "SELECT") {
      const value = v === null || v === undefined ? "" : String(v);
      if (![...el.options].some((o) => o.value === value)) el.append(h("option", { value }, value));
      el.value = value;
    } else el.value = v;
  }
  for (const box of document.querySelectorAll("#mg-controls [data-box]")) box.value = s[box.dataset.box];
  for (const row of document.querySelectorAll("#mg-controls [data-ctl]")) {
    row.classList.toggle("changed", row.dataset.ctl in S.pending);
  }
  const names = Object.keys(S.pending);
  $("mg-pending").replaceChildren(names.length
    ? h("span", {}, h("strong", {}, "Not applied: "), names.map((k) => `${k} ${fmt(S.pending[k])}`).join(", "))
    : h("span", { class: "muted" }, "No changes: the frame shows its saved settings."));
  for (const id of ["mg-apply-frame", "mg-apply-range", "mg-apply-all", "mg-discard"]) $(id).disabled = !names.length;
}

const fmt = (v) => (v === null ? "none" : typeof v === "boolean" ? (v ? "on" : "off") : String(v));

// ---- frames: the scrubber, its face marks and the plan's ranges

function setFrame(index, { draft = false, t0 } = {}) {
  if (!S.frames.length) return;
  S.index = Math.max(0, Math.min(S.frames.length - 1, index));
  const f = frame();
  $("mg-frame").value = S.index;
  $("mg-frame-no").value = f.n;
  syncControls();
  drawMarks();
  requestRender({ draft, t0 });
}

function drawMarks() {
  const canvas = $("mg-marks");
  const w = canvas.clientWidth * devicePixelRatio;
  if (!w || !S.frames.length) return;
  canvas.width = w;
  canvas.height = 12 * devicePixelRatio;
  const ctx = canvas.getContext("2d");
  const css = getComputedStyle(document.documentElement);
  const n = S.frames.length;
  const step = w / n;
  ctx.clearRect(0, 0, w, canvas.height);
  S.frames.forEach((f, i) => {
    ctx.fillStyle = f.faces ? css.getPropertyValue("--accent") : css.getPropertyValue("--line");
    ctx.globalAlpha = f.faces ? 0.55 : 1;
    ctx.fillRect(i * step, 0, Math.max(1, step - (step > 3 ? 1 : 0)), 6 * devicePixelRatio);
  });
  ctx.globalAlpha = 1;
  ctx.fillStyle = css.getPropertyValue("--warn");
  const first = S.frames[0].n;
  const last = S.frames[n - 1].n;
  for (const r of S.plan.ranges) {
    const [a, b] = rangeOf(r.frames);
    const i0 = S.frames.findIndex((f) => f.n >= a);
    const i1 = S.frames.findLastIndex((f) => f.n <= b);
    if (i0 < 0 || i1 < i0 || b < first || a > last) continue;
    ctx.fillRect(i0 * step, 8 * devicePixelRatio, (i1 - i0 + 1) * step, 4 * devicePixelRatio);
  }
  ctx.fillStyle = css.getPropertyValue("--text");
  ctx.fillRect(S.index * step, 0, Math.max(2, step), 6 * devicePixelRatio);
}

function indexOf(n) {
  const i = S.frames.findIndex((f) => f.n >= n);
  return i < 0 ? S.frames.length - 1 : i;
}

async function loadFrames(refresh = false) {
  const q = new URLSearchParams({ model: S.model.name });
  if (S.model.gpu !== null) q.set("gpu", S.model.gpu);
  if (refresh) q.set("refresh", "true");
  $("mg-ms").textContent = "loading the model…";
  const data = await api(`/api/merger/frames?${q}`);
  S.frames = data.frames;
  for (const w of data.warnings) toast(w, "", "info");
  if (!S.frames.length) { empty("No dst frames: extract the dst frames first (Workspace page)."); return; }
  const slider = $("mg-frame");
  slider.max = S.frames.length - 1;
  $("mg-first").value = S.frames[0].n;
  $("mg-last").value = S.frames[S.frames.length - 1].n;
  const withFace = S.frames.findIndex((f) => f.faces > 0);
  setFrame(S.index && S.index < S.frames.length ? S.index : Math.max(0, withFace));
}

function empty(message) {
  $("mg-empty").textContent = message;
  $("mg-empty").hidden = false;
  $("mg-image").hidden = true;
  $("mg-ms").textContent = "";
}

// ---- the plan: apply, forget, render the rest

function planView() {
  const decl = S.fields;
  const changedDefault = Object.entries(S.plan.default).filter(([k, v]) => decl.has(k) && decl.get(k).default !== v);
  const rows = [h("li", {}, h("strong", {}, "All frames: "),
    changedDefault.length ? changedDefault.map(([k, v]) => `${k} ${fmt(v)}`).join(", ") : "the defaults")];
  for (const r of S.plan.ranges) {
    const [a] = rangeOf(r.frames);
    rows.push(h("li", {},
      h("button", { type: "button", class: "link", onclick: () => setFrame(indexOf(a)) }, `frames ${r.frames}`), ": ",
      Object.entries(r.settings).map(([k, v]) => `${k} ${fmt(v)}`).join(", "), " ",
      h("button", { type: "button", class: "link mg-forget", "data-frames": r.frames, onclick: () => forget(r.frames),
        title: "drop these frames' own settings" }, "forget")));
  }
  $("mg-plan").replaceChildren(h("h3", {}, S.plan.saved ? "Saved settings" : "Settings (not saved yet)"), h("ul", {}, rows));
  drawMarks();
}

// what the shown settings change of frame `base`'s saved ones (default: this frame) goes to `frames`
async function apply(frames, { move, base = frame().n } = {}) {
  try {
    const plan = await api("/api/merger/plan", { method: "POST", body: { frame: base, settings: shown(), frames } });
    const changed = Object.keys(plan.changed);
    S.plan = plan;
    S.pending = {};
    planView();
    toast(changed.length ? `applied ${changed.join(", ")} to ${frames === "all" ? "all frames" : `frames ${frames}`}`
      : "nothing to apply: the frame already has these settings");
    if (move !== undefined) setFrame(move);
    else { syncControls(); $("mg-info").replaceChildren(infoLine()); }
  } catch (err) { showError(err); }
}

async function forget(frames) {
  try {
    S.plan = await api("/api/merger/plan/forget", { method: "POST", body: { frames } });
    planView();
    setFrame(S.index);
  } catch (err) { showError(err); }
}

async function renderRest() {
  if (Object.keys(S.pending).length) {
    toast("apply or discard the changes first", "render the rest uses the saved settings", "error");
    return;
  }
  try {
    const job = await api("/api/merger/render-rest", { method: "POST", body: { model: S.model.name, gpu: S.model.gpu } });
    toast(`started: ${job.title}`, "follow it on the Jobs page");
  } catch (err) { showError(err); }
}

// ---- views and zoom

function setView(view) {
  S.view = view;
  for (const b of document.querySelectorAll(".mg-views button")) b.setAttribute("aria-pressed", String(b.dataset.view === view));
  requestRender();
}

function setZoom(z) {
  S.zoom = Math.max(1, Math.min(4, z));
  const img = $("mg-image");
  img.classList.toggle("zoomed", S.zoom > 1);
  img.style.width = S.zoom > 1 ? `${Math.round(S.zoom * 100)}%` : "";  // CSSOM: allowed by the page's CSP
  img.style.minWidth = img.style.width;
}

// ---- DeepFaceLab's keys, matched on event.code (the same place on any keyboard layout)

const cycle = (list, value, by) => list[(list.indexOf(value) + by + list.length) % list.length];
const step = (name, by) => (e) => {
  const f = S.fields.get(name);
  const v = shown()[name] + by * (e.shiftKey ? 5 : 1);
  setValue(name, Math.min(f.max, Math.max(f.min, v)));
  requestRender({ draft: e.repeat, t0: e.timeStamp });
};
const mode = (m) => (e) => { setValue("mode", m); requestRender({ t0: e.timeStamp }); };
const pick = (name, list, by) => (e) => {
  const l = list();
  setValue(name, cycle(l, shown()[name], e.shiftKey ? -by : by));
  requestRender({ t0: e.timeStamp });
};
const last = () => S.frames.length - 1;
const rangeText = (i, j) => `${S.frames[Math.min(i, j)].n}-${S.frames[Math.max(i, j)].n}`;

// {code, label, what it does here, option it changes, handler}; the Keys dialog and docs/ui.md list them
const K = (code, label, what, option, fn) => ({ code, label, what, option, fn });
const enhancers = () => [null, ...S.enhancers];
const KEYS = [
  K("Digit1", "1–7", "mode: 1 overlay, 2 hist-match, 3 seamless, 4 seamless-hist-match, 5 raw-rgb, 6 raw-predict, "
    + "7 hist-match-bw (facelab's)", "mode", mode("overlay")),
  K("Digit2", null, null, null, mode("hist-match")),
  K("Digit3", null, null, null, mode("seamless")),
  K("Digit4", null, null, null, mode("seamless-hist-match")),
  K("Digit5", null, null, null, mode("raw-rgb")),
  K("Digit6", null, null, null, mode("raw-predict")),
  K("Digit7", null, null, null, mode("hist-match-bw")),
  K("Backquote", "`", "the original frame, and back (DFL: mode original)", null,
    () => setView(S.view === "original" ? "image" : "original")),
  K("KeyQ", "Q / A", "hist threshold + / −", "hist_threshold", step("hist_threshold", 1)),
  K("KeyA", null, null, null, step("hist_threshold", -1)),
  K("KeyW", "W / S", "erode + / −", "erode", step("erode", 1)),
  K("KeyS", null, null, null, step("erode", -1)),
  K("KeyE", "E / D", "blur + / −", "blur", step("blur", 1)),
  K("KeyD", null, null, null, step("blur", -1)),
  K("KeyR", "R / F", "motion blur + / −", "motion_blur", step("motion_blur", 1)),
  K("KeyF", null, null, null, step("motion_blur", -1)),
  K("KeyT", "T / G", "enhancer: next / previous (DFL: super resolution power)", "enhancer", pick("enhancer", enhancers, 1)),
  K("KeyG", null, null, null, pick("enhancer", enhancers, -1)),
  K("KeyY", "Y / H", "sharpen + / − (below 0 it blurs)", "sharpen", step("sharpen", 1)),
  K("KeyH", null, null, null, step("sharpen", -1)),
  K("KeyU", "U / J", "face scale + / −", "face_scale", step("face_scale", 1)),
  K("KeyJ", null, null, null, step("face_scale", -1)),
  K("KeyI", "I / K", "denoise frame + / −", "denoise_frame", step("denoise_frame", 1)),
  K("KeyK", null, null, null, step("denoise_frame", -1)),
  K("KeyO", "O / L", "bicubic degrade + / −", "bicubic_degrade", step("bicubic_degrade", 1)),
  K("KeyL", null, null, null, step("bicubic_degrade", -1)),
  K("KeyP", "P / ;", "colour degrade + / − (Shift+; is DFL's :, −5)", "degrade_color", step("degrade_color", 1)),
  K("Semicolon", null, null, null, step("degrade_color", -1)),
  K("KeyZ", "Z", "masked hist match on / off", "masked_hist",
    (e) => { setValue("masked_hist", !shown().masked_hist); requestRender({ t0: e.timeStamp }); }),
  K("KeyX", "X", "next mask (Shift: previous)", "mask", pick("mask", () => S.masks, 1)),
  K("KeyC", "C", "next colour transfer (Shift: previous)", "color", pick("color", () => S.fields.get("color").choices, 1)),
  K("KeyV", "V", "next view: merged, side by side, mask", null, () => setView(cycle(["image", "side_by_side", "mask"], S.view, 1))),
  K("Comma", ", / .", "previous / next frame (Shift+, the first; Shift+. renders the rest, a job)", null,
    (e) => setFrame(e.shiftKey ? 0 : S.index - 1, { t0: e.timeStamp })),
  K("Period", null, null, null, (e) => (e.shiftKey ? renderRest() : setFrame(S.index + 1, { t0: e.timeStamp }))),
  K("ArrowLeft", "← / →", "previous / next frame", null, (e) => setFrame(S.index - 1, { t0: e.timeStamp })),
  K("ArrowRight", null, null, null, (e) => setFrame(S.index + 1, { t0: e.timeStamp })),
  K("KeyM", "M", "give the previous frame the shown settings and go there (Shift: every frame before, go to the first)",
    null, (e) => carry(e.shiftKey ? 0 : S.index - 1)),
  K("Slash", "/", "give the next frame the shown settings and go there (Shift: every frame after, go to the last)",
    null, (e) => carry(e.shiftKey ? last() : S.index + 1)),
  K("Minus", "− / =", "zoom out / in (1× fits the frame)", null, () => setZoom(S.zoom / 1.25)),
  K("Equal", null, null, null, () => setZoom(S.zoom * 1.25)),
];
const KEY_OF = Object.fromEntries(KEYS.filter((k) => k.option).map((k) => [k.option, k.label]));
const HANDLERS = new Map(KEYS.map((k) => [k.code, k.fn]));

// DFL's M and /: the frames from here to `to` take the settings shown (what differs from frame `to`'s)
function carry(to) {
  const j = Math.max(0, Math.min(last(), to));
  if (j === S.index) return;
  apply(rangeText(j, S.index), { move: j, base: S.frames[j].n });
}

function typingIn(el) {
  return el && (el.tagName === "SELECT" || el.tagName === "TEXTAREA" ||
    (el.tagName === "INPUT" && !["range", "checkbox", "radio", "button"].includes(el.type)));
}

function onKey(e) {
  if ($("mg-keys").open || e.ctrlKey || e.altKey || e.metaKey) return;
  if (e.code === "Escape") { document.activeElement.blur(); return; }
  if (typingIn(e.target) || !S.frames.length) return;
  if (e.target.type === "range" && e.code.startsWith("Arrow")) return;  // the focused slider moves itself
  const fn = HANDLERS.get(e.code);
  if (!fn) return;
  e.preventDefault();
  fn(e);
}

function onKeyUp() {
  if (S.lastDraft) requestRender();  // a held key stopped: the exact frame
}

function keysTable() {
  $("mg-keys-table").replaceChildren(h("tbody", {}, KEYS.filter((k) => k.label).map((k) =>
    h("tr", {}, h("td", {}, h("kbd", {}, k.label)), h("td", {}, k.what)))));
}

// ---- start

async function main() {
  const info = await api("/api/merger");
  for (const f of info.fields) S.fields.set(f.name, f);
  Object.assign(S, { groups: info.groups, masks: info.masks, enhancers: info.enhancers, models: info.models, plan: info.plan });
  renderControls();
  keysTable();
  planView();
  const sel = $("mg-model");
  sel.replaceChildren(...info.models.map((m, i) => h("option", { value: i },
    `${m.name}${m.gpu !== null ? ` (gpu ${m.gpu})` : ""}${m.architecture !== m.name ? ` · ${m.architecture}` : ""}`
    + ` · iteration ${m.iteration}`)));
  sel.addEventListener("change", () => { S.model = S.models[sel.value]; loadFrames().catch(showError); });
  const slider = $("mg-frame");
  slider.addEventListener("input", (e) => setFrame(parseInt(slider.value, 10), { draft: true, t0: e.timeStamp }));
  slider.addEventListener("change", () => setFrame(parseInt(slider.value, 10)));
  $("mg-frame-no").addEventListener("change", (e) => setFrame(indexOf(parseInt(e.target.value, 10))));
  $("mg-prev").addEventListener("click", () => setFrame(S.index - 1));
  $("mg-next").addEventListener("click", () => setFrame(S.index + 1));
  for (const b of document.querySelectorAll(".mg-views button")) b.addEventListener("click", () => setView(b.dataset.view));
  $("mg-apply-frame").addEventListener("click", () => apply(rangeText(S.index, S.index)));
  $("mg-apply-range").addEventListener("click", () => apply(`${$("mg-first").value}-${$("mg-last").value}`));
  $("mg-apply-all").addEventListener("click", () => apply("all"));
  $("mg-discard").addEventListener("click", () => { S.pending = {}; syncControls(); requestRender(); });
  $("mg-render-rest").addEventListener("click", renderRest);
  $("mg-keys-open").addEventListener("click", () => $("mg-keys").showModal());
  document.addEventListener("keydown", onKey);
  document.addEventListener("keyup", onKeyUp);
  window.addEventListener("resize", drawMarks);
  if (!info.models.length) {
    empty("No trained model in this workspace: train one first (Workspace page, Train).");
    $("mg-render-rest").disabled = true;
    return;
  }
  S.model = info.models[0];
  await loadFrames();
}

main().catch(showError);
