// Manual extraction page: place faces by hand on a list of frames. The box follows the mouse and the
// landmarks are found in it live (at most one request in flight; the latest box wins), the wheel sizes it,
// a click locks it, single landmarks can be dragged, N keeps a face and places another, Enter writes the
// frame's faces as `facelab extract` would and goes on.
import { api, h, showError, toast } from "./api.js";
import { View, dot, everyFrame, helpWidth, keyTable, loadImage, median, pointer, typing } from "./canvas.js";

const HELP = [
  ["mouse", "the box follows it; the landmarks are found inside"],
  ["wheel", "size the box"],
  ["click", "lock the face here (click again: follow the mouse)"],
  ["drag", "move one landmark of a locked face"],
  ["N", "keep this face and place another one"],
  ["Delete", "remove the kept face under the mouse"],
  ["E", "edit the faces stored for this frame"],
  ["Enter", "accept: write the frame's faces and go on"],
  ["Space", "skip this frame (it stays on the list)"],
  [", / .", "previous / next frame"],
  ["A", "accurate landmarks on / off"],
  ["Esc", "unlock the face"],
  ["H", "hide / show this help"],
];
const LIST_LABELS = {
  pending: (n) => `Waiting for a person (${n})`,
  no_face: (n) => `No face found (${n})`,
  deleted_debug: (n) => (n === null ? "Debug image deleted (no debug images)" : `Debug image deleted (${n})`),
  all: (n) => `All frames (${n})`,
  pick: () => "Frames I pick…",
};
// landmark groups of the 68-point layout: [from, to, closed]
const PARTS = [[0, 17, false], [17, 22, false], [22, 27, false], [27, 31, false], [31, 36, false],
  [36, 42, true], [42, 48, true], [48, 60, true], [60, 68, true]];
const COLOR = { box: "#5fa8ff", crop: "#f0b43c", points: "#4cc38a", stored: "#9aa1ad", hover: "#ffffff" };
const $ = (id) => document.getElementById(id);

const canvas = $("m-canvas");
const view = new View(canvas);
const S = {
  side: "dst", session: null, list: "pending",
  frame: null,        // {name, width, height, img, stored: [{box, points, crop}], status}
  faces: [],          // faces kept for this frame (N, E): {box: {cx, cy, size}, rect?, points, crop, accurate, locked}
  active: null,       // the face being placed: the same fields
  size: null,         // box side in frame pixels, kept from frame to frame
  accurate: false, mouse: null, drag: null, hover: null, times: [],
};

// --- live landmarks: one request in flight, the latest box wins ------------------------------------------

let inflight = false;
let queued = null;
const waiting = [];

const keyOf = (f) => `${f.box.cx.toFixed(2)},${f.box.cy.toFixed(2)},${f.box.size.toFixed(2)},${f.accurate}`;

function want(face) {
  queued = face;
  if (!inflight) pump();
}

async function pump() {
  while (queued) {
    const face = queued;
    queued = null;
    if (!S.frame) break;
    const frame = S.frame.name, key = keyOf(face), { cx, cy, size } = face.box;
    inflight = true;
    const t0 = performance.now();
    try {
      const r = await api(`/api/manual/${S.side}/landmarks`, { method: "POST",
        body: { frame, cx, cy, size, accurate: face.accurate } });
      S.times.push(performance.now() - t0);
      if (S.times.length > 30) S.times.shift();
      // a following face shows what came back even if the mouse has moved on (the next request is queued)
      if (S.frame && S.frame.name === frame && (keyOf(face) === key || !face.locked)) {
        Object.assign(face, { points: r.points, crop: r.crop, key, edited: false });
      }
    } catch (err) {
      if (err.status !== 400) showError(err);  // a 400 is a box the model cannot use: the next move fixes it
    } finally {
      inflight = false;
    }
  }
  const ms = median(S.times);
  $("m-ms").textContent = ms === null ? "" : `landmarks ${Math.round(ms)} ms`;
  $("m-ms").dataset.ms = ms === null ? "" : ms.toFixed(1);
  draw();
  waiting.splice(0).forEach((resolve) => resolve());
}

const settled = () => (inflight || queued ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve());

function newFace(x, y) {
  return { box: { cx: x, cy: y, size: S.size }, points: null, crop: null, key: null, accurate: S.accurate, locked: false };
}

// --- drawing ----------------------------------------------------------------------------------------------

const draw = everyFrame(paint);

function paint() {
  const ctx = view.begin();
  const f = S.frame;
  canvas.dataset.state = !S.active ? "none" : S.active.locked ? "locked" : "following";
  canvas.dataset.ready = S.active && S.active.points && S.active.key === keyOf(S.active) && !inflight && !queued ? "1" : "0";
  $("m-mode").textContent = !S.active ? "" : S.active.locked ? "locked: drag points, Enter accepts" : "follows the mouse: click locks";
  if (!f) return;
  view.drawImage(f.img);
  if (!S.editingStored) for (const face of f.stored) drawFace(ctx, face, "stored");
  for (const face of S.faces) drawFace(ctx, face, "kept");
  if (S.active) drawFace(ctx, S.active, S.active.locked ? "locked" : "following");
}

function drawFace(ctx, face, kind) {
  const stored = kind === "stored";
  ctx.save();
  ctx.globalAlpha = stored ? 0.75 : 1;
  if (face.crop) {
    ctx.setLineDash([]);
    ctx.lineWidth = 1;
    ctx.strokeStyle = stored ? COLOR.stored : COLOR.crop;
    path(ctx, face.crop, true);
    ctx.stroke();
  }
  const rect = face.rect || (face.box && square(face.box));
  if (rect && !stored) {
    const [X0, Y0] = view.toScreen(rect[0] - 0.5, rect[1] - 0.5), [X1, Y1] = view.toScreen(rect[2] - 0.5, rect[3] - 0.5);
    ctx.setLineDash(kind === "following" ? [6, 4] : []);
    ctx.lineWidth = kind === "locked" ? 2 : 1.5;
    ctx.strokeStyle = COLOR.box;
    ctx.strokeRect(X0, Y0, X1 - X0, Y1 - Y0);
  }
  if (face.points) {
    ctx.setLineDash(stored ? [3, 3] : []);
    ctx.lineWidth = 1;
    ctx.strokeStyle = stored ? COLOR.stored : COLOR.points;
    for (const [a, b, closed] of PARTS) { path(ctx, face.points.slice(a, b), closed); ctx.stroke(); }
    const editable = kind === "locked" || kind === "kept";
    if (!stored) {
      face.points.forEach(([x, y], i) => {
        const [X, Y] = view.toScreen(x, y);
        const hot = S.hover && S.hover.face === face && S.hover.i === i;
        dot(ctx, X, Y, hot ? 5 : editable ? 2.6 : 1.8, hot ? COLOR.hover : COLOR.points);
      });
    }
  }
  ctx.restore();
}

function path(ctx, pts, closed) {
  ctx.beginPath();
  pts.forEach(([x, y], i) => { const [X, Y] = view.toScreen(x, y); i ? ctx.lineTo(X, Y) : ctx.moveTo(X, Y); });
  if (closed) ctx.closePath();
}

const square = ({ cx, cy, size }) => [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2];

// the landmark under the pointer, of a face that can be edited (kept, or locked)
function hitPoint(X, Y) {
  let best = null, bestD = 7;
  for (const face of [...S.faces, ...(S.active && S.active.locked ? [S.active] : [])]) {
    (face.points || []).forEach(([x, y], i) => {
      const [PX, PY] = view.toScreen(x, y);
      const d = Math.hypot(PX - X, PY - Y);
      if (d < bestD) { best = { face, i }; bestD = d; }
    });
  }
  return best;
}

// --- the mouse --------------------------------------------------------------------------------------------

canvas.addEventListener("mousemove", (e) => {
  if (!S.frame) return;
  const [X, Y] = pointer(e, canvas);
  const [x, y] = view.toImage(X, Y);
  S.mouse = [x, y];
  if (S.drag) {
    S.drag.face.points[S.drag.i] = [x, y];
    S.drag.face.edited = true;
  } else if (!S.active) {
    S.active = newFace(x, y);
    want(S.active);
  } else if (!S.active.locked) {
    Object.assign(S.active.box, { cx: x, cy: y });
    want(S.active);
  }
  S.hover = S.drag || hitPoint(X, Y);
  canvas.classList.toggle("grab", !!S.hover);
  draw();
});

canvas.addEventListener("mouseleave", () => {
  S.mouse = null;
  if (S.active && !S.active.locked) S.active = null;
  draw();
});

canvas.addEventListener("mousedown", (e) => {
  if (e.button !== 0 || !S.frame) return;
  e.preventDefault();
  canvas.focus();
  const [X, Y] = pointer(e, canvas);
  const hit = hitPoint(X, Y);
  if (hit) { S.drag = hit; return; }
  const [x, y] = view.toImage(X, Y);
  if (!S.active) S.active = newFace(x, y);
  S.active.locked = !S.active.locked;
  Object.assign(S.active.box, { cx: x, cy: y });
  if (S.active.key !== keyOf(S.active)) want(S.active);
  draw();
});

window.addEventListener("mouseup", async () => {
  if (!S.drag) return;
  const { face } = S.drag;
  S.drag = null;
  try {  // the square the face is cut from follows the dragged point
    face.crop = (await api(`/api/manual/${S.side}/crop`, { method: "POST", body: { points: face.points } })).crop;
    draw();
  } catch (err) { showError(err); }
});

canvas.addEventListener("wheel", (e) => {
  if (!S.frame) return;
  e.preventDefault();
  const limit = 4 * Math.max(S.frame.width, S.frame.height);
  S.size = Math.min(limit, Math.max(16, S.size * (e.deltaY < 0 ? 1.1 : 1 / 1.1)));
  if (S.active) { S.active.box.size = S.size; want(S.active); }
  draw();
}, { passive: false });

// --- keys (by their place on the keyboard: event.code) ----------------------------------------------------

document.addEventListener("keydown", (e) => {
  if (typing(e) || e.ctrlKey || e.metaKey || e.altKey || !S.session) return;
  const act = {
    Enter: accept, NumpadEnter: accept, Space: skip, Comma: () => step(-1), Period: () => step(1),
    KeyA: toggleAccurate, KeyH: toggleHelp, KeyN: keep, KeyE: editStored, Delete: remove, Backspace: remove,
    Escape: unlock,
  }[e.code];
  if (!act) return;
  e.preventDefault();
  if (!e.repeat || e.code === "Comma" || e.code === "Period") act();
});

function toggleHelp() {
  const help = $("m-help");
  help.hidden = !help.hidden;
  localStorage.setItem("facelab.manual.help", help.hidden ? "hidden" : "shown");
  refit();
}

function refit() {
  if (!S.frame) return;
  view.fit(S.frame.width, S.frame.height, 12, helpWidth($("m-help")));
  draw();
}

function toggleAccurate() {
  S.accurate = !S.accurate;
  $("m-accurate").setAttribute("aria-pressed", String(S.accurate));
  if (S.active) { S.active.accurate = S.accurate; want(S.active); }
}

function keep() {
  if (!S.active || !S.active.points) return toast("No face to keep", "move the box onto a face first");
  S.active.locked = true;
  S.faces.push(S.active);
  S.active = null;
  if (S.mouse) { S.active = newFace(...S.mouse); want(S.active); }
  toolbar();
  draw();
}

function editStored() {
  if (!S.frame || !S.frame.stored.length) return toast("No stored faces", "this frame has no faces yet");
  if (S.editingStored) return;
  S.editingStored = true;
  for (const f of S.frame.stored) {
    const [x0, y0, x1, y1] = f.box;
    S.faces.push({ box: { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, size: (x1 - x0 + y1 - y0) / 2 }, rect: f.box,
      points: f.points.map((p) => [...p]), crop: f.crop, key: null, accurate: S.session.settings.accurate, locked: true });
  }
  if (S.active && !S.active.locked) S.active = null;
  toolbar();
  draw();
}

function remove() {
  if (!S.mouse) return;
  const [x, y] = S.mouse;
  const inside = (f) => { const [x0, y0, x1, y1] = f.rect || square(f.box); return x >= x0 && x <= x1 && y >= y0 && y <= y1; };
  const i = S.faces.findIndex(inside);
  if (i >= 0) S.faces.splice(i, 1);
  else if (S.active && S.active.locked && inside(S.active)) S.active.locked = false;
  toolbar();
  draw();
}

function unlock() {
  if (S.active && S.active.locked) {
    S.active.locked = false;
    if (S.mouse) { Object.assign(S.active.box, { cx: S.mouse[0], cy: S.mouse[1] }); want(S.active); }
    draw();
  }
}

// --- decisions and moving between frames ------------------------------------------------------------------

// the faces Enter writes: the kept ones, and the one being placed if it is locked or the only one
function placed() {
  const out = [...S.faces];
  if (S.active && S.active.points && (S.active.locked || !out.length)) out.push(S.active);
  return out;
}

async function accept() {
  if (!S.frame) return;
  await settled();
  const faces = placed();
  if (!faces.length) return toast("No face placed", "move the box onto a face and press Enter, or Space to skip");
  const name = S.frame.name;
  try {
    const r = await api(`/api/manual/${S.side}/accept`, { method: "POST", body: {
      frame: name, accurate: faces.every((f) => f.accurate),
      faces: faces.map((f) => ({ points: f.points, box: f.rect || square(f.box) })) } });
    toast(`${name}: ${r.written.length} face${r.written.length === 1 ? "" : "s"} written`, r.written.join(", "));
    progressed(name, r);
    await openCurrent();
  } catch (err) { showError(err); }
}

async function skip() {
  if (!S.frame) return;
  const name = S.frame.name;
  try {
    progressed(name, await api(`/api/manual/${S.side}/skip`, { method: "POST", body: { frame: name } }));
    await openCurrent();
  } catch (err) { showError(err); }
}

async function step(by) {
  try {
    progressed(null, await api(`/api/manual/${S.side}/goto`, { method: "POST", body: { step: by } }));
    await openCurrent();
  } catch (err) { showError(err); }
}

async function goto(name) {
  try {
    progressed(null, await api(`/api/manual/${S.side}/goto`, { method: "POST", body: { frame: name } }));
    await openCurrent();
  } catch (err) { showError(err); }
}

// the session's answer after a decision or a move: the frame's new status and the progress
function progressed(name, r) {
  const s = S.session;
  Object.assign(s, { current: r.current, position: r.position, total: r.total, counts: r.counts });
  if (name) {
    const f = s.frames.find((x) => x.name === name);
    if (f) f.status = r.status;
    const li = document.querySelector(`#m-frames li[data-name="${CSS.escape(name)}"]`);
    if (li) li.className = r.status;
  }
  progress();
}

async function openCurrent() {
  const name = S.session.current;
  S.faces = []; S.active = null; S.drag = null; S.hover = null; S.editingStored = false;
  for (const li of document.querySelectorAll("#m-frames li")) li.classList.toggle("current", li.dataset.name === name);
  const current = document.querySelector("#m-frames li.current");
  if (current) current.scrollIntoView({ block: "nearest" });
  if (!name) {
    S.frame = null;
    empty(S.session.total ? "Every frame of this list is done. Choose another list on the left."
      : "No frame waits for a person on this side. Choose frames on the left: those whose debug image you deleted, or any you pick.");
    toolbar();
    return draw();
  }
  const f = await api(`/api/manual/${S.side}/frames/${encodeURIComponent(name)}`);
  const img = await loadImage(`/files/${f.id.split("/").map(encodeURIComponent).join("/")}?v=${f.version}`);
  S.frame = { name: f.name, width: f.width, height: f.height, img, stored: f.faces, status: f.status };
  if (f.faces.length) { const [x0, y0, x1, y1] = f.faces[0].box; S.size = (x1 - x0 + y1 - y0) / 2; }
  else if (!S.size) S.size = Math.min(f.width, f.height) / 3;
  empty(null);
  view.resize();
  view.fit(f.width, f.height, 12, helpWidth($("m-help")));
  if (S.mouse) { S.active = newFace(...S.mouse); want(S.active); }
  toolbar();
  draw();
}

// --- the panel --------------------------------------------------------------------------------------------

function toolbar() {
  const f = S.frame;
  $("m-name").textContent = f ? f.name : "";
  $("m-status").textContent = f ? f.status : "";
  $("m-status").className = `chip ${f ? f.status : ""}`;
  const kept = S.faces.length, stored = f ? f.stored.length : 0;
  $("m-faces").textContent = !f ? "" : [kept ? `${kept} face${kept === 1 ? "" : "s"} kept` : "",
    stored && !S.editingStored ? `${stored} stored (E edits them, Enter replaces them)` : ""].filter(Boolean).join(" · ");
  for (const id of ["m-accept", "m-skip"]) $(id).disabled = !f;
}

function progress() {
  const s = S.session;
  const bar = h("div", { class: "bar" }, h("div", { class: "fill" }));
  bar.firstChild.style.width = s.total ? `${(100 * (s.counts.accepted + s.counts.skipped)) / s.total}%` : "0";
  $("m-progress").replaceChildren(
    h("p", {}, s.total ? `Frame ${Math.min(s.position + 1, s.total)} of ${s.total}` : "No frames in this list"),
    bar,
    h("p", { class: "muted" }, `${s.counts.accepted} accepted · ${s.counts.skipped} skipped · ${s.counts.pending} to do`),
    s.missing.length ? h("p", { class: "muted" }, `not frames of data_${s.side}: ${s.missing.join(", ")}`) : "");
}

function render(session) {
  S.session = session;
  S.accurate = session.settings.accurate;
  $("m-accurate").setAttribute("aria-pressed", String(S.accurate));
  const select = $("m-list");
  select.replaceChildren(...Object.entries(LIST_LABELS).map(([k, label]) =>
    h("option", { value: k, selected: k === S.list }, label(session.lists[k]))));
  $("m-pick").hidden = select.value !== "pick";
  $("m-frames").replaceChildren(...session.frames.map((f) =>
    h("li", { class: f.status, "data-name": f.name, onclick: () => goto(f.name), title: f.status }, f.name)));
  progress();
  return openCurrent();
}

async function start(list, pick) {
  S.list = list;
  try {
    await settled();
    await render(await api(`/api/manual/${S.side}/session`, { method: "POST", body: { list, pick } }));
  } catch (err) { showError(err); }
}

function empty(message) {
  const el = $("m-empty");
  el.hidden = !message;
  el.textContent = message || "";
}

async function main() {
  const params = new URLSearchParams(location.search);
  S.side = params.get("side") === "src" ? "src" : "dst";
  for (const r of document.querySelectorAll("input[name=side]")) {
    r.checked = r.value === S.side;
    r.addEventListener("change", () => {
      r.blur();  // the editor's keys are for the canvas again
      S.side = r.value;
      S.list = "pending";
      openSide();
    });
  }
  $("m-help").append(h("h3", {}, "Keys"), keyTable(HELP));
  $("m-help").hidden = localStorage.getItem("facelab.manual.help") === "hidden";
  $("m-list").addEventListener("change", () => { $("m-pick").hidden = $("m-list").value !== "pick"; });
  $("m-chooser").addEventListener("submit", (e) => {
    e.preventDefault();
    document.activeElement.blur();
    start($("m-list").value, $("m-pick").value);
  });
  $("m-accept").addEventListener("click", (e) => { e.currentTarget.blur(); accept(); });
  $("m-skip").addEventListener("click", (e) => { e.currentTarget.blur(); skip(); });
  $("m-accurate").addEventListener("click", (e) => { e.currentTarget.blur(); toggleAccurate(); });
  new ResizeObserver(() => { if (view.resize()) refit(); }).observe(canvas);
  view.resize();
  if (params.get("frames")) {
    $("m-pick").value = params.get("frames");
    await start("pick", params.get("frames"));
  } else if (params.get("list")) {
    await start(params.get("list"));
  } else {
    await openSide();
  }
}

// the side's session (the unfinished one resumed, else the frames waiting); a side without frames says so
async function openSide() {
  try {
    await settled();
    await render(await api(`/api/manual/${S.side}`));
  } catch (err) {
    S.session = null; S.frame = null; S.faces = []; S.active = null;
    $("m-frames").replaceChildren();
    $("m-progress").replaceChildren();
    toolbar();
    draw();
    empty(`${err.message}${err.hint ? ` (${err.hint})` : ""}`);
  }
}

main().catch(showError);
