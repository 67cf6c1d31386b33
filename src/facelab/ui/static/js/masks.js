// Mask editor page: include (left button) and exclude (right button) polygons on aligned faces, stored in
// each face file's metadata, with the seed's keys (matched by event.code, so any keyboard layout works).
import { api, h, showError, toast } from "./api.js";
import { View, dot, everyFrame, helpWidth, keyTable, loadImage, pointer, typing } from "./canvas.js";

const HELP = [
  ["click", "include polygon: add a point"],
  ["right-click", "exclude polygon: add a point"],
  ["click first point", "close the polygon (or middle-click)"],
  ["drag point", "move it"],
  ["click edge", "insert a point (Ctrl+click: new polygon)"],
  ["right-click point", "delete it (or Delete)"],
  ["Backspace", "take back the last point drawn"],
  ["wheel", "undo / redo (Ctrl: all the way)"],
  ["Ctrl+Z Ctrl+Y", "undo / redo"],
  ["- + 0", "zoom out / in / fit"],
  ["middle-drag", "pan (or Space+drag)"],
  ["X / C", "save / skip, next face"],
  ["E", "save, move to aligned_confirmed"],
  ["W", "move to aligned_skipped, unsaved"],
  ["Q / Z", "previous face (back to aligned)"],
  ["Shift", "with Q Z C X E W: 10 faces"],
  ["Esc", "drop the polygon being drawn"],
  ["M", "segmenter's mask over the face on / off"],
  ["U", "next unlabelled face the segmenter is least sure of"],
  ["H", "hide / show this help"],
];
const PLACES = { aligned: "aligned", confirmed: "aligned_confirmed", skipped: "aligned_skipped", all: "all three" };
const COLOR = { include: "#4cc38a", exclude: "#ef6461", fill: "rgb(76, 195, 138)", hover: "#ffffff" };
const SEG_RGB = [91, 140, 255];  // the segmenter's mask: blue, apart from the polygons' green
const $ = (id) => document.getElementById(id);

const canvas = $("k-canvas");
const view = new View(canvas);
const overlay = document.createElement("canvas");  // the mask at face resolution, tinted over the face
const S = {
  side: "src", place: "aligned", order: "name", list: [], counts: {}, index: 0,
  seg: { show: localStorage.getItem("facelab.masks.seg") !== "hidden", key: null, canvas: null, info: null },
  face: null,                        // {name, place, id, size, img, saved (JSON of the stored polygons), ...}
  doc: { polys: [], drawing: null }, // polys: [{kind, points: [[x, y], ...]}]; drawing: the open polygon
  hist: [], hi: 0,                   // snapshots of doc for undo/redo
  drafts: new Map(),                 // face name -> {doc, hist, hi}: unsaved edits kept while moving between faces
  hover: null, drag: null, pan: null, mouse: null, space: false, fitScale: 1, loading: 0, lastWheel: 0,
};

// --- the document and its history -------------------------------------------------------------------------

const snapshot = () => JSON.stringify(S.doc);
const polysJSON = (polys) => JSON.stringify(polys.map((p) => ({ kind: p.kind, points: p.points })));
const dirty = () => !!S.face && (polysJSON(S.doc.polys) !== S.face.saved || !!S.doc.drawing);

function commit() {
  S.hist = S.hist.slice(0, S.hi + 1);
  S.hist.push(snapshot());
  S.hi = S.hist.length - 1;
  changed();
}

function travel(to) {
  to = Math.max(0, Math.min(S.hist.length - 1, to));
  if (to === S.hi) return;
  S.hi = to;
  S.doc = JSON.parse(S.hist[to]);
  S.hover = null;
  changed();
}

function changed() {
  draw();
  status();
  preview();
}

function close() {
  const d = S.doc.drawing;
  if (!d) return;
  if (d.points.length < 3) return toast("A polygon needs at least 3 points", "add points, or Esc to drop it");
  S.doc.polys.push(d);
  S.doc.drawing = null;
  commit();
}

function deletePoint(p, i) {
  const poly = S.doc.polys[p];
  poly.points.splice(i, 1);
  if (poly.points.length < 3) S.doc.polys.splice(p, 1);
  S.hover = null;
  commit();
}

// --- drawing ----------------------------------------------------------------------------------------------

const draw = everyFrame(paint);

function paint() {
  const ctx = view.begin();
  const f = S.face;
  if (!f) return;
  view.drawImage(f.img);
  const seg = S.seg;
  if (seg.show && seg.canvas && seg.key === segKey(f)) {  // the segmenter's mask, under the polygons
    ctx.save();
    ctx.globalAlpha = 0.45;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(seg.canvas, view.ox, view.oy, f.size * view.scale, f.size * view.scale);
    ctx.restore();
  }
  // the mask: includes add, excludes cut away, in drawing order (as the trainer rasterizes them)
  const o = overlay.getContext("2d");
  o.clearRect(0, 0, overlay.width, overlay.height);
  for (const p of S.doc.polys) {
    o.globalCompositeOperation = p.kind === "include" ? "source-over" : "destination-out";
    o.fillStyle = COLOR.fill;
    o.beginPath();
    p.points.forEach(([x, y], i) => (i ? o.lineTo(x + 0.5, y + 0.5) : o.moveTo(x + 0.5, y + 0.5)));
    o.closePath();
    o.fill();
  }
  o.globalCompositeOperation = "source-over";
  ctx.save();
  ctx.globalAlpha = 0.32;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(overlay, view.ox, view.oy, f.size * view.scale, f.size * view.scale);
  ctx.restore();

  S.doc.polys.forEach((p, pi) => outline(ctx, p, pi, true));
  const d = S.doc.drawing;
  if (d) {
    outline(ctx, d, -1, false);
    if (S.mouse && !S.pan) {  // the next edge, to the pointer
      const [X0, Y0] = view.toScreen(...d.points[d.points.length - 1]);
      ctx.save();
      ctx.setLineDash([5, 4]);
      ctx.strokeStyle = COLOR[d.kind];
      ctx.beginPath(); ctx.moveTo(X0, Y0); ctx.lineTo(...S.mouse); ctx.stroke();
      ctx.restore();
    }
    if (d.points.length >= 3) {  // the first point closes it
      const [X, Y] = view.toScreen(...d.points[0]);
      const hot = S.hover && S.hover.type === "first";
      ctx.beginPath(); ctx.arc(X, Y, hot ? 9 : 7, 0, 2 * Math.PI);
      ctx.strokeStyle = hot ? COLOR.hover : COLOR[d.kind]; ctx.lineWidth = 2; ctx.stroke();
    }
  }
  if (S.hover && S.hover.type === "edge") {
    const [X, Y] = view.toScreen(...S.hover.at);
    dot(ctx, X, Y, 4, COLOR.hover);
  }
}

function outline(ctx, p, pi, closed) {
  ctx.save();
  ctx.strokeStyle = COLOR[p.kind];
  ctx.lineWidth = 1.6;
  ctx.beginPath();
  p.points.forEach(([x, y], i) => { const [X, Y] = view.toScreen(x, y); i ? ctx.lineTo(X, Y) : ctx.moveTo(X, Y); });
  if (closed) ctx.closePath();
  ctx.stroke();
  p.points.forEach(([x, y], i) => {
    const [X, Y] = view.toScreen(x, y);
    const hot = S.hover && S.hover.type === "vertex" && S.hover.p === pi && S.hover.i === i;
    dot(ctx, X, Y, hot ? 5 : 3, hot ? COLOR.hover : COLOR[p.kind]);
  });
  ctx.restore();
}

// what is under the pointer: the first point of the open polygon, a point, or an edge (CSS pixels)
function hit(X, Y) {
  const d = S.doc.drawing;
  if (d) {
    if (d.points.length >= 3) {
      const [PX, PY] = view.toScreen(...d.points[0]);
      if (Math.hypot(PX - X, PY - Y) <= 9) return { type: "first" };
    }
    return null;
  }
  let best = null, bestD = 8;
  S.doc.polys.forEach((p, pi) => p.points.forEach(([x, y], i) => {
    const [PX, PY] = view.toScreen(x, y);
    const dist = Math.hypot(PX - X, PY - Y);
    if (dist < bestD) { best = { type: "vertex", p: pi, i }; bestD = dist; }
  }));
  if (best) return best;
  bestD = 6;
  S.doc.polys.forEach((p, pi) => p.points.forEach((a, i) => {
    const b = p.points[(i + 1) % p.points.length];
    const [AX, AY] = view.toScreen(...a), [BX, BY] = view.toScreen(...b);
    const len2 = (BX - AX) ** 2 + (BY - AY) ** 2 || 1;
    const t = Math.max(0, Math.min(1, ((X - AX) * (BX - AX) + (Y - AY) * (BY - AY)) / len2));
    const dist = Math.hypot(AX + t * (BX - AX) - X, AY + t * (BY - AY) - Y);
    if (dist < bestD && t > 0.05 && t < 0.95) {
      best = { type: "edge", p: pi, i, at: [a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])] };
      bestD = dist;
    }
  }));
  return best;
}

// --- the mouse --------------------------------------------------------------------------------------------

canvas.addEventListener("contextmenu", (e) => e.preventDefault());

canvas.addEventListener("mousedown", (e) => {
  if (!S.face) return;
  e.preventDefault();  // no middle-button autoscroll, no text selection
  canvas.focus();
  const [X, Y] = pointer(e, canvas);
  if (e.button === 1 || (e.button === 0 && S.space)) {
    S.pan = { X, Y, moved: false, button: e.button };
    canvas.classList.add("panning");
    return;
  }
  if (e.button !== 0 && e.button !== 2) return;
  const pt = view.toImage(X, Y).map((v) => Math.round(v * 1000) / 1000);
  const kind = e.button === 0 ? "include" : "exclude";
  const d = S.doc.drawing;
  const under = e.ctrlKey ? null : hit(X, Y);
  if (d) {
    if (under && under.type === "first") return close();
    d.points.push(pt);
    return commit();
  }
  if (under && under.type === "vertex") {
    if (e.button === 2) return deletePoint(under.p, under.i);
    S.drag = { p: under.p, i: under.i, moved: false };
    return;
  }
  if (under && under.type === "edge" && e.button === 0) {
    S.doc.polys[under.p].points.splice(under.i + 1, 0, under.at.map((v) => Math.round(v * 1000) / 1000));
    S.drag = { p: under.p, i: under.i + 1, moved: true };
    S.hover = { type: "vertex", p: under.p, i: under.i + 1 };
    return draw();
  }
  S.doc.drawing = { kind, points: [pt] };
  commit();
});

canvas.addEventListener("mousemove", (e) => {
  if (!S.face) return;
  const [X, Y] = pointer(e, canvas);
  if (S.pan) {
    if (Math.hypot(X - S.pan.X, Y - S.pan.Y) > 3) S.pan.moved = true;
    if (S.pan.moved) { view.panBy(X - S.pan.X, Y - S.pan.Y); S.pan.X = X; S.pan.Y = Y; }
  } else if (S.drag) {
    S.doc.polys[S.drag.p].points[S.drag.i] = view.toImage(X, Y).map((v) => Math.round(v * 1000) / 1000);
    S.drag.moved = true;
  } else {
    S.hover = hit(X, Y);
  }
  S.mouse = [X, Y];
  canvas.classList.toggle("grab", !!S.hover && S.hover.type !== "first");
  draw();
});

canvas.addEventListener("mouseleave", () => { S.mouse = null; if (!S.drag) S.hover = null; draw(); });

window.addEventListener("mouseup", () => {
  if (S.pan) {
    const { moved, button } = S.pan;
    S.pan = null;
    canvas.classList.remove("panning");
    if (!moved && button === 1) close();  // a middle click (not a drag) closes the polygon
    return zoomLabel();
  }
  if (S.drag) {
    const { moved } = S.drag;
    S.drag = null;
    if (moved) commit();
  }
});

canvas.addEventListener("wheel", (e) => {
  if (!S.face) return;
  e.preventDefault();
  const now = performance.now();
  if (now - S.lastWheel < 60) return;  // one step per notch, not per trackpad event
  S.lastWheel = now;
  if (e.ctrlKey) travel(e.deltaY < 0 ? 0 : S.hist.length - 1);
  else travel(S.hi + (e.deltaY < 0 ? -1 : 1));
}, { passive: false });

// --- keys (event.code: the key's place, whatever the layout prints on it) ------------------------------------

document.addEventListener("keydown", (e) => {
  if (typing(e) || e.altKey || !S.face) return;
  const n = e.shiftKey ? 10 : 1;
  if (e.ctrlKey || e.metaKey) {
    const act = { KeyZ: () => travel(S.hi + (e.shiftKey ? 1 : -1)), KeyY: () => travel(S.hi + 1) }[e.code];
    if (act) { e.preventDefault(); act(); }
    return;
  }
  const zoomAt = S.mouse || [view.width / 2, view.height / 2];
  const act = {
    KeyQ: () => back(n), KeyZ: () => back(n),
    KeyX: () => saveAnd(null, n), KeyE: () => saveAnd("confirmed", n),
    KeyC: () => skipAnd(null, n), KeyW: () => skipAnd("skipped", n),
    Minus: () => zoom(1 / 1.25, zoomAt), NumpadSubtract: () => zoom(1 / 1.25, zoomAt),
    Equal: () => zoom(1.25, zoomAt), NumpadAdd: () => zoom(1.25, zoomAt),
    Digit0: fit, Numpad0: fit,
    Escape: () => { if (S.doc.drawing) { S.doc.drawing = null; commit(); } },
    Backspace: () => {
      const d = S.doc.drawing;
      if (!d) return;
      d.points.pop();
      if (!d.points.length) S.doc.drawing = null;
      commit();
    },
    Delete: () => { if (S.hover && S.hover.type === "vertex") deletePoint(S.hover.p, S.hover.i); },
    KeyH: toggleHelp,
    KeyM: toggleSeg,
    KeyU: nextUnsure,
    Space: () => { S.space = true; },
  }[e.code];
  if (!act) return;
  e.preventDefault();
  const once = ["KeyX", "KeyE", "KeyC", "KeyW", "KeyH", "KeyM", "KeyU", "Space"];
  if (!(e.repeat && once.includes(e.code))) act();
});
document.addEventListener("keyup", (e) => { if (e.code === "Space") S.space = false; });

function zoom(factor, [X, Y]) { view.zoomAt(factor, X, Y); zoomLabel(); draw(); }

function fit() {
  if (!S.face) return;
  view.fit(S.face.size, S.face.size, 16, helpWidth($("k-help")));
  S.fitScale = view.scale;
  zoomLabel();
  draw();
}

function zoomLabel() { $("k-zoom").textContent = S.face ? `${Math.round((100 * view.scale) / S.fitScale)} %` : ""; }

function toggleHelp() {
  const help = $("k-help");
  help.hidden = !help.hidden;
  localStorage.setItem("facelab.masks.help", help.hidden ? "hidden" : "shown");
  fit();
}

// --- saving, moving, going between faces --------------------------------------------------------------------

async function save() {
  const d = S.doc.drawing;
  if (d) {  // an open polygon is closed by saving when it can be, else left out
    if (d.points.length >= 3) S.doc.polys.push(d);
    S.doc.drawing = null;
    commit();
  }
  const f = S.face;
  const r = await api(`/api/masks/${S.side}/faces/${encodeURIComponent(f.name)}/polygons`, { method: "PUT",
    body: { polygons: S.doc.polys } });
  f.saved = polysJSON(S.doc.polys);
  S.drafts.delete(f.name);
  const item = S.list.find((x) => x.name === f.name);
  if (item) item.polygons = r.polygons;
  status();
  return r;
}

async function move(to) {
  const f = S.face;
  const r = await api(`/api/masks/${S.side}/faces/${encodeURIComponent(f.name)}/move`, { method: "POST", body: { to } });
  const item = S.list.find((x) => x.name === f.name);
  if (item) Object.assign(item, { place: r.place, id: r.id });
  Object.assign(f, { place: r.place, id: r.id });
  S.counts = null;
}

async function saveAnd(to, n) {
  try {
    const r = await save();
    if (to) await move(to);
    toast(`${S.face.name}: ${r.polygons} polygon${r.polygons === 1 ? "" : "s"} saved${to ? `, moved to ${PLACES[to]}` : ""}`);
    await openFace(S.index + n);
  } catch (err) { showError(err); }
}

async function skipAnd(to, n) {
  try {
    S.drafts.delete(S.face.name);
    if (to) { await move(to); toast(`${S.face.name}: moved to ${PLACES[to]}`); }
    await openFace(S.index + n, true);
  } catch (err) { showError(err); }
}

// Q/Z: back; a face moved out of aligned while going through aligned comes back (as the seed's editor did)
async function back(n) {
  try {
    await openFace(S.index - n);
    if (S.place === "aligned" && S.face && S.face.place !== "aligned") {
      await move("aligned");
      toast(`${S.face.name}: back in aligned`);
      status();
    }
  } catch (err) { showError(err); }
}

// show face `i` of the list (clamped); the unsaved edits of the face left are kept unless `discard`
async function openFace(i, discard = false) {
  if (!S.list.length) return showFace(null);
  i = Math.max(0, Math.min(S.list.length - 1, i));
  if (S.face && i === S.index && S.list[i].name === S.face.name && !discard) return;
  if (S.face && !discard && dirty()) S.drafts.set(S.face.name, { doc: S.doc, hist: S.hist, hi: S.hi });
  const token = ++S.loading;
  const item = S.list[i];
  const f = await api(`/api/masks/${S.side}/faces/${encodeURIComponent(item.name)}`);
  const img = await loadImage(`/files/${f.id.split("/").map(encodeURIComponent).join("/")}?v=${f.version}`);
  if (token !== S.loading) return;  // a later key press asked for another face meanwhile
  S.index = i;
  Object.assign(item, { place: f.place, id: f.id });
  showFace({ ...f, img, saved: polysJSON(f.polygons) });
  if (f.broken) toast(`${f.name}: its stored polygons cannot be read`, `${f.broken}; saving replaces them`, "error");
}

function showFace(f) {
  S.face = f;
  S.hover = null; S.drag = null;
  $("k-empty").hidden = !!f;
  for (const el of document.querySelectorAll(".mask-preview, #k-nav")) el.hidden = !f;
  $("k-empty").textContent = f ? "" : `No faces in data_${S.side}/${PLACES[S.place]}.`;
  if (f) {
    const draft = S.drafts.get(f.name);
    if (draft) {
      Object.assign(S, { doc: draft.doc, hist: draft.hist, hi: draft.hi });
    } else {
      S.doc = { polys: f.polygons, drawing: null };
      S.hist = [snapshot()];
      S.hi = 0;
    }
    overlay.width = overlay.height = f.size;
    view.resize();
    fit();
    if (S.seg.show) loadSeg().catch(showError);
  }
  changed();
  strip();
}

// --- the segmenter's mask (M) and the faces it is least sure of (U) ---------------------------------------------

const segKey = (f) => `${S.side}/${f.name}@${f.version}`;

// the face's mask from the server (the applied one, else computed live), tinted into S.seg.canvas
async function loadSeg() {
  const f = S.face;
  if (!f || S.seg.key === segKey(f)) return;
  const key = segKey(f);
  const res = await fetch(`/api/masks/${S.side}/faces/${encodeURIComponent(f.name)}/segmask?v=${f.version}`);
  if (!S.face || segKey(S.face) !== key) return;  // another face meanwhile
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    Object.assign(S.seg, { key, canvas: null, info: { source: "none", error: body.error || res.statusText } });
    $("k-canvas").dataset.seg = "none";
    return status();
  }
  const bitmap = await createImageBitmap(await res.blob());
  const c = document.createElement("canvas");
  c.width = bitmap.width; c.height = bitmap.height;
  const g = c.getContext("2d");
  g.drawImage(bitmap, 0, 0);
  const px = g.getImageData(0, 0, c.width, c.height);
  const d = px.data;
  for (let i = 0; i < d.length; i += 4) { d[i + 3] = d[i]; d[i] = SEG_RGB[0]; d[i + 1] = SEG_RGB[1]; d[i + 2] = SEG_RGB[2]; }
  g.putImageData(px, 0, 0);
  const u = res.headers.get("x-seg-uncertainty");
  const info = { source: res.headers.get("x-seg-source"), model: res.headers.get("x-seg-model"), uncertainty: u ? parseFloat(u) : null };
  if (!S.face || segKey(S.face) !== key) return;
  Object.assign(S.seg, { key, canvas: c, info });
  const item = S.list.find((x) => x.name === f.name);
  if (item && item.uncertainty == null && info.uncertainty != null) item.uncertainty = info.uncertainty;
  $("k-canvas").dataset.seg = info.source;
  status();
  draw();
}

function toggleSeg() {
  S.seg.show = !S.seg.show;
  $("k-seg").checked = S.seg.show;
  localStorage.setItem("facelab.masks.seg", S.seg.show ? "shown" : "hidden");
  $("k-canvas").dataset.segShown = S.seg.show ? "1" : "0";
  if (S.seg.show) loadSeg().catch(showError);
  status();
  draw();
}

// U: the next face without drawn polygons, least sure first (the segmenter's uncertainty, from `seg apply` or a
// live mask seen here); faces without a figure come after, in list order
function nextUnsure() {
  if (!S.list.length) return;
  const rank = (item, i) => [item.uncertainty == null ? 1 : 0, -(item.uncertainty ?? 0), i];
  const after = (a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
  const here = rank(S.list[S.index], S.index);
  const todo = S.list.map((item, i) => [item, i]).filter(([item, i]) => item.polygons === 0 && i !== S.index)
    .map(([item, i]) => rank(item, i)).filter((r) => after(r, here) > 0).sort(after);
  if (!todo.length) return toast("no unlabelled face further down the least-sure order", "Q goes back; the order restarts from the top after a reload");
  const target = S.list[todo[0][2]];
  openFace(todo[0][2]).then(() => {
    if (target.uncertainty != null) toast(`${target.name}: uncertainty ${target.uncertainty.toFixed(3)}`, "the segmenter is least sure of it");
  }).catch(showError);
}

function status() {
  const f = S.face;
  $("k-name").textContent = f ? f.name : "";
  $("k-place-chip").textContent = f ? PLACES[f.place] : "";
  $("k-place-chip").className = `chip ${f ? f.place : ""}`;
  $("k-dirty").textContent = f && dirty() ? "unsaved" : "";
  $("k-dirty").className = "chip unsaved";
  const d = S.doc.drawing;
  $("k-mode").textContent = !f ? "" : d ? `drawing an ${d.kind} polygon: ${d.points.length} point${d.points.length === 1 ? "" : "s"}` :
    `${S.doc.polys.length} polygon${S.doc.polys.length === 1 ? "" : "s"}`;
  $("k-undo").disabled = !f || S.hi === 0;
  $("k-redo").disabled = !f || S.hi >= S.hist.length - 1;
  $("k-save").disabled = !f;
  const facts = !f ? [] : [["face", `${S.index + 1} of ${S.list.length}`], ["in", PLACES[f.place]], ["frame", f.source],
    ["size", `${f.size} px, ${f.face_type}`], ["saved polygons", JSON.parse(f.saved).length],
    ["segmenter", segText(f)], ["uncertainty", segUncertainty(f)],
    ["unsaved faces", S.drafts.size + (dirty() && !S.drafts.has(f.name) ? 1 : 0)]];
  $("k-facts").replaceChildren(...facts.map(([k, v]) => [h("dt", {}, k), h("dd", { title: String(v) }, String(v))]).flat());
}

function segText(f) {
  const i = S.seg.key === segKey(f) ? S.seg.info : null;
  if (i) return i.source === "none" ? "none" : `${i.source} mask${S.seg.show ? "" : " (hidden, M)"}`;
  if (f.seg && f.seg.applied) return "applied mask";
  return f.seg && f.seg.segmenter ? (S.seg.show ? "computing…" : "live (M to show)") : "none";
}

function segUncertainty(f) {
  const i = S.seg.key === segKey(f) ? S.seg.info : null;
  const u = i && i.uncertainty != null ? i.uncertainty : f.seg && f.seg.applied ? f.seg.applied.uncertainty : null;
  return u == null ? "–" : u.toFixed(3);
}

// the strip of neighbouring faces under the canvas
function strip() {
  const from = Math.max(0, S.index - 6), to = Math.min(S.list.length, S.index + 7);
  $("k-strip").replaceChildren(...S.list.slice(from, to).map((item, k) => {
    const i = from + k;
    return h("figure", { class: `${item.place}${i === S.index ? " current" : ""}`, title: `${item.name} (${PLACES[item.place]})`,
      onclick: () => openFace(i).catch(showError) },
      h("img", { src: `/files/${item.id.split("/").map(encodeURIComponent).join("/")}`, alt: item.name, loading: "lazy" }),
      item.polygons ? h("span", {}, String(item.polygons)) : "");
  }));
}

// the mask as the server rasterizes it (what training reads): one request in flight, the latest drawing wins
let previewBusy = false, previewAgain = false, previewURL = null;
async function preview() {
  if (!S.face) return;
  // no polygon: an empty (black) mask would say the face is background; seg train takes the hull for it instead
  const none = !S.doc.polys.length;
  $("k-mask").hidden = none;
  $("k-mask-cap").textContent = none ? "no polygons: seg train learns this face's landmark hull (unless --labels-only)"
    : "the mask seg train learns from your polygons";
  if (none) return;
  if (previewBusy) { previewAgain = true; return; }
  previewBusy = true;
  try {
    const res = await fetch(`/api/masks/${S.side}/preview`, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ size: S.face.size, polygons: S.doc.polys }) });
    if (res.ok) {
      if (previewURL) URL.revokeObjectURL(previewURL);
      previewURL = URL.createObjectURL(await res.blob());
      $("k-mask").src = previewURL;
    }
  } finally {
    previewBusy = false;
    if (previewAgain) { previewAgain = false; preview(); }
  }
}

// --- the side and the list --------------------------------------------------------------------------------

async function load() {
  const r = await api(`/api/masks/${S.side}/faces?place=${S.place}&order=${S.order}`);
  S.list = r.faces;
  S.counts = r.counts;
  S.drafts.clear();
  const all = Object.values(r.counts).reduce((a, b) => a + b, 0);
  $("k-place").replaceChildren(...Object.entries(PLACES).map(([k, label]) =>
    h("option", { value: k, selected: k === S.place }, `${label} (${k === "all" ? all : r.counts[k]})`)));
  S.face = null;
  S.index = 0;
  await openFace(0, true);
}

// another list drops the unsaved edits: ask first
function mayDrop() {
  const n = S.drafts.size + (dirty() && !S.drafts.has(S.face.name) ? 1 : 0);
  return !n || confirm(`Drop the unsaved polygons of ${n} face${n === 1 ? "" : "s"}?`);
}

function navButton(key, label, run) {
  return h("button", { type: "button", title: key, onclick: (e) => { e.currentTarget.blur(); run(); } }, h("span", {}, label), h("kbd", {}, key));
}

async function main() {
  const params = new URLSearchParams(location.search);
  S.side = params.get("side") === "dst" ? "dst" : "src";
  if (params.get("place") in PLACES) S.place = params.get("place");
  for (const r of document.querySelectorAll("input[name=side]")) {
    r.checked = r.value === S.side;
    r.addEventListener("change", () => {
      r.blur();  // the editor's keys are for the canvas again
      if (!mayDrop()) { for (const o of document.querySelectorAll("input[name=side]")) o.checked = o.value === S.side; return; }
      S.side = r.value;
      load().catch(showError);
    });
  }
  $("k-place").addEventListener("change", () => {
    $("k-place").blur();
    if (!mayDrop()) { $("k-place").value = S.place; return; }
    S.place = $("k-place").value;
    load().catch(showError);
  });
  if (params.get("order") === "uncertainty") S.order = "uncertainty";
  $("k-order").value = S.order;
  $("k-order").addEventListener("change", () => {
    $("k-order").blur();
    if (!mayDrop()) { $("k-order").value = S.order; return; }
    S.order = $("k-order").value;
    load().catch(showError);
  });
  $("k-seg").checked = S.seg.show;
  $("k-canvas").dataset.segShown = S.seg.show ? "1" : "0";
  $("k-seg").addEventListener("change", () => { $("k-seg").blur(); if ($("k-seg").checked !== S.seg.show) toggleSeg(); });
  $("k-help").append(h("h3", {}, "Keys"), keyTable(HELP));
  $("k-help").hidden = localStorage.getItem("facelab.masks.help") === "hidden";
  $("k-nav").append(navButton("Q", "previous", () => back(1)), navButton("C", "skip", () => skipAnd(null, 1)),
    navButton("X", "save", () => saveAnd(null, 1)), navButton("E", "confirm", () => saveAnd("confirmed", 1)),
    navButton("W", "skip aside", () => skipAnd("skipped", 1)), navButton("U", "least sure", nextUnsure),
    navButton("H", "help", toggleHelp));
  $("k-undo").addEventListener("click", () => travel(S.hi - 1));
  $("k-redo").addEventListener("click", () => travel(S.hi + 1));
  $("k-save").addEventListener("click", async (e) => {
    e.currentTarget.blur();
    try { const r = await save(); toast(`${S.face.name}: ${r.polygons} polygon${r.polygons === 1 ? "" : "s"} saved`); }
    catch (err) { showError(err); }
  });
  window.addEventListener("beforeunload", (e) => { if (dirty() || S.drafts.size) { e.preventDefault(); e.returnValue = ""; } });
  new ResizeObserver(() => { if (view.resize() && S.face) fit(); }).observe(canvas);
  await load();
}

main().catch(showError);
