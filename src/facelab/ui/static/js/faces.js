// Face sets page: a side's faces as a virtualised grid (only the rows near the viewport exist), sorted and
// filtered; select, delete to the trash, restore, undo/redo; one face in detail in the side panel.
import { api, h, onJobs, percent, showError, toast } from "./api.js";

const $ = (sel) => document.querySelector(sel);
const F = { name: 0, version: 1, source: 2, index: 3, inFrame: 4, blur: 5, yaw: 6, pitch: 7, error: 8 };  // row columns
const encId = (id) => id.split("/").map(encodeURIComponent).join("/");
const fmt = new Intl.NumberFormat();

const S = {
  side: "src", view: "aligned",     // view: aligned | trash | noface
  rows: [], prefix: "", total: 0,   // the listing (name order, filtered by the server)
  list: [], at: new Map(),          // display order, and name -> position in it
  frames: [],                       // the "no face in frame" view's frames
  order: null,                      // {method, pos: Map name -> rank, trash: Set} of the chosen sort
  selected: new Set(), anchor: -1, focus: -1,
  history: { undo: [], redo: [] },
  reference: null,                  // face id the identity order compares with
  jobs: { measure: null, order: null, apply: null },  // ids of this page's running jobs
  detail: null,                     // id shown in the panel
  seq: 0,                           // listing requests (a late answer to an older one is dropped)
};

// --- the virtual grid -------------------------------------------------------------------------------

class VGrid {
  constructor(el, space, fill) {
    this.el = el; this.space = space; this.fill = fill;
    this.n = 0; this.cols = 1; this.box = 128; this.pool = new Map(); this.spare = []; this.raf = 0;
    this.lastTop = 0; this.fast = false; this.pending = new Map(); this.flushTimer = 0;  // images held back in a fling
    el.addEventListener("scroll", () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.layout()).observe(el);
  }
  get itemW() { return this.box + 8; }
  get itemH() { return this.box + 24; }
  static GAP = 6; static PAD = 8; static OVERSCAN = 3;
  setBox(px) { this.box = px; this.el.style.setProperty("--box", `${px}px`); this.layout(true); }
  setItems(n) { this.n = n; this.layout(true); }
  schedule() { if (!this.raf) this.raf = requestAnimationFrame(() => { this.raf = 0; this.render(false); }); }
  layout(refill = false) {
    const { GAP, PAD } = VGrid;
    const width = this.el.clientWidth - 2 * PAD;
    this.cols = Math.max(1, Math.floor((width + GAP) / (this.itemW + GAP)));
    this.left = PAD + Math.max(0, (width - (this.cols * (this.itemW + GAP) - GAP)) / 2);
    const rows = Math.ceil(this.n / this.cols);
    this.space.style.height = `${rows ? 2 * PAD + rows * (this.itemH + GAP) - GAP : 0}px`;
    this.render(true, refill);
  }
  pos(i) {
    const { GAP, PAD } = VGrid;
    return [this.left + (i % this.cols) * (this.itemW + GAP), PAD + Math.floor(i / this.cols) * (this.itemH + GAP)];
  }
  range() {
    const rowH = this.itemH + VGrid.GAP, top = this.el.scrollTop - VGrid.PAD;
    const first = Math.max(0, Math.floor(top / rowH) - VGrid.OVERSCAN);
    const last = Math.ceil((top + this.el.clientHeight) / rowH) + VGrid.OVERSCAN;
    return [first * this.cols, Math.min(this.n, last * this.cols)];
  }
  render(moved, refill = false) {
    // jumping more than most of a screen a frame (a fling, the scrollbar dragged): the rows shown now are gone
    // next frame, so their images wait until the grid slows down instead of loading and decoding for nothing
    const top = this.el.scrollTop;
    this.fast = Math.abs(top - this.lastTop) > 0.75 * this.el.clientHeight;
    this.lastTop = top;
    const [a, b] = this.range();
    for (const [i, el] of this.pool) {
      if (i < a || i >= b) { el.hidden = true; this.pending.delete(el.firstChild); this.spare.push(el); this.pool.delete(i); }
    }
    if (!this.fast && this.pending.size) { clearTimeout(this.flushTimer); this.flush(); }
    for (let i = a; i < b; i++) {
      let el = this.pool.get(i);
      const fresh = !el;
      if (fresh) {
        el = this.spare.pop() || this.make();
        el.hidden = false;
        this.pool.set(i, el);
      }
      if (fresh || moved) { const [x, y] = this.pos(i); el.style.transform = `translate(${x}px, ${y}px)`; }
      if (fresh || refill) { el.dataset.i = i; this.fill(el, i); }
    }
  }
  make() {
    const el = h("div", { class: "fcell", role: "option" }, h("img", { alt: "", decoding: "async", draggable: "false" }),
      h("span", { class: "cap" }));
    this.el.append(el);
    return el;
  }
  each(fn) { for (const [i, el] of this.pool) fn(el, i); }
  image(img, src) {  // show src in img now, or when the grid slows down
    if (this.fast) {
      if (img.dataset.src !== src) { img.removeAttribute("src"); img.dataset.src = ""; }
      this.pending.set(img, src);
      clearTimeout(this.flushTimer);
      this.flushTimer = setTimeout(() => this.flush(), 120);
    } else {
      this.pending.delete(img);
      if (img.dataset.src !== src) { img.dataset.src = src; img.src = src; }
    }
  }
  flush() {
    for (const [img, src] of this.pending) if (img.dataset.src !== src) { img.dataset.src = src; img.src = src; }
    this.pending.clear();
  }
  show(i) {  // scroll so item i is in view
    const [, y] = this.pos(i), top = this.el.scrollTop, h0 = this.el.clientHeight;
    if (y < top) this.el.scrollTop = y - VGrid.PAD;
    else if (y + this.itemH > top + h0) this.el.scrollTop = y + this.itemH - h0 + VGrid.PAD;
  }
  pageRows() { return Math.max(1, Math.floor(this.el.clientHeight / (this.itemH + VGrid.GAP))); }
}

const grid = new VGrid($("#grid"), $("#grid-space"), fillCell);

function thumbUrl(row, px) {
  return `/api/faces/thumb/${encId(S.prefix + row[F.name])}?v=${row[F.version]}&px=${px}`;
}

function fillCell(el, i) {
  const img = el.firstChild, cap = el.lastChild;
  let src, title, name;
  if (S.view === "noface") {
    const f = S.frames[i];
    src = `/api/faces/frame/${encId(f.id)}?v=${f.version}&px=256`;
    name = f.name; title = `${f.name}: no face found (double-click opens the frame)`;
    el.classList.remove("sel", "focus", "would-trash", "bad");
  } else {
    const r = S.list[i];
    name = r[F.name];
    src = thumbUrl(r, grid.box > 128 ? 256 : 128);
    const blur = r[F.blur] === null ? "" : ` · blur ${r[F.blur]}`;
    title = r[F.error] ? `${name}: ${r[F.error]}` : `${name} · frame ${r[F.source]} face ${r[F.index]}${blur}`;
    el.classList.toggle("sel", S.selected.has(name));
    el.classList.toggle("focus", i === S.focus);
    el.classList.toggle("would-trash", !!(S.order && S.order.trash.has(name)));
    el.classList.toggle("bad", !!r[F.error]);
    el.setAttribute("aria-selected", S.selected.has(name));
  }
  grid.image(img, src);
  cap.textContent = showBlur() && S.list[i] && S.list[i][F.blur] !== null ? `${name} · ${S.list[i][F.blur]}` : name;
  el.title = title;
}

function showBlur() {  // captions carry the blur score while it is what the grid is about
  return S.view === "aligned" && ($("#f-blur").checked || $("#sort").value === "blur");
}

function repaint() {  // selection and focus changed: only the cells that exist
  grid.each((el, i) => {
    if (S.view === "noface") return;
    const name = S.list[i][F.name];
    el.classList.toggle("sel", S.selected.has(name));
    el.classList.toggle("focus", i === S.focus);
    el.setAttribute("aria-selected", S.selected.has(name));
  });
  showCount();
}

// --- listing -----------------------------------------------------------------------------------------

function query() {
  const q = new URLSearchParams({ where: S.view === "trash" ? "trash" : "aligned" });
  if (S.view === "aligned") {
    if ($("#f-several").checked) q.set("several", "1");
    if ($("#f-blur").checked) q.set("blur_lowest", $("#f-blur-pct").value || "10");
    if ($("#f-unreadable").checked) q.set("unreadable", "1");
  }
  return q;
}

async function load({ top = false } = {}) {
  const seq = ++S.seq;
  if (S.view === "noface") return loadFrames(seq, top);
  const data = await api(`/api/faces/${S.side}?${query()}`);
  if (seq !== S.seq) return;
  S.rows = data.faces; S.prefix = data.prefix; S.total = data.total;
  S.jobs.measure = data.measuring || null;
  // until the faces are measured the listing has names only: no filter or sort to offer yet
  for (const el of document.querySelectorAll("#sort, #f-several, #f-blur, #f-unreadable")) el.disabled = !!S.jobs.measure;
  counts(data);
  const names = new Set(S.rows.map((r) => r[F.name]));
  for (const n of [...S.selected]) if (!names.has(n)) S.selected.delete(n);
  arrange(top);
  showStatus();
}

async function loadFrames(seq, top) {
  const data = await api(`/api/faces/${S.side}/no-face`);
  if (seq !== S.seq) return;
  S.frames = data.frames;
  const hint = $("#noface-hint");
  hint.hidden = false;
  hint.replaceChildren(h("strong", {}, `${data.frames.length} frame(s) of data_${S.side} where extract found no face. `),
    data.frames.length ? "Double-click one to open it. " : "", h("span", { class: "muted" }, data.hint));
  $("#n-noface").textContent = data.frames.length || "";
  if (top) $("#grid").scrollTop = 0;
  grid.setItems(S.frames.length);
  showCount();
}

function counts(data) {
  $("#n-trash").textContent = data.in_trash || "";
  $("#n-noface").textContent = data.no_face || "";
  S.history = data.history;
  const undo = S.history.undo.at(-1), redo = S.history.redo.at(-1);
  $("#undo").disabled = !undo; $("#redo").disabled = !redo;
  $("#undo").title = undo ? `undo the ${undo.kind} of ${undo.faces} face(s) (Ctrl+Z)` : "nothing to undo";
  $("#redo").title = redo ? `redo the ${redo.kind} of ${redo.faces} face(s) (Ctrl+Shift+Z)` : "nothing to redo";
}

function arrange(top = false) {
  const list = S.rows.slice();
  if (S.order && S.view === "aligned") {
    const pos = S.order.pos, last = pos.size;
    list.sort((a, b) => (pos.get(a[F.name]) ?? last) - (pos.get(b[F.name]) ?? last) || (a[F.name] < b[F.name] ? -1 : 1));
  }
  S.list = list;
  S.at = new Map(list.map((r, i) => [r[F.name], i]));
  S.focus = Math.min(S.focus, list.length - 1);
  if (top) { $("#grid").scrollTop = 0; S.focus = list.length ? 0 : -1; S.anchor = S.focus; }
  grid.setItems(list.length);
  showCount();
}

function showCount() {
  let text;
  if (S.view === "noface") text = `${fmt.format(S.frames.length)} frame(s) without a face`;
  else {
    const n = S.list.length, what = S.view === "trash" ? "in the trash" : "faces";
    text = `${fmt.format(n)} ${what}` + (n !== S.total ? ` (of ${fmt.format(S.total)})` : "");
    if (S.selected.size) text += ` · ${fmt.format(S.selected.size)} selected`;
  }
  $("#count").textContent = text;
  const some = S.selected.size > 0 || S.focus >= 0;
  $("#delete").disabled = S.view !== "aligned" || !some;
  $("#restore").disabled = S.view !== "trash" || !some;
}

// --- selection and keys ------------------------------------------------------------------------------

function nameAt(i) { return S.list[i][F.name]; }

function setFocus(i, { select = "only", keepAnchor = false } = {}) {
  if (!S.list.length) return;
  i = Math.max(0, Math.min(S.list.length - 1, i));
  if (select === "only") S.selected = new Set([nameAt(i)]);
  else if (select === "toggle") {
    const n = nameAt(i);
    if (S.selected.has(n)) S.selected.delete(n); else S.selected.add(n);
  } else if (select === "range" || select === "add-range") {
    const a = S.anchor >= 0 ? S.anchor : i;
    if (select === "range") S.selected.clear();
    for (let k = Math.min(a, i); k <= Math.max(a, i); k++) S.selected.add(nameAt(k));
  }
  if (!keepAnchor) S.anchor = i;
  S.focus = i;
  grid.show(i);
  repaint();
  if (S.detail) openSoon(i);
}

function cellIndex(e) {
  const el = e.target.closest(".fcell");
  return el ? Number(el.dataset.i) : -1;
}

$("#grid").addEventListener("click", (e) => {
  const i = cellIndex(e);
  if (i < 0 || S.view === "noface") return;
  const mod = e.ctrlKey || e.metaKey;
  if (e.shiftKey) setFocus(i, { select: mod ? "add-range" : "range", keepAnchor: true });
  else setFocus(i, { select: mod ? "toggle" : "only" });
});

$("#grid").addEventListener("dblclick", (e) => {
  const i = cellIndex(e);
  if (i < 0) return;
  if (S.view === "noface") window.open(`/files/${encId(S.frames[i].id)}`, "_blank", "noopener");
  else open(i);
});

document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (t.closest && (t.closest("select, textarea") || (t.matches("input") && !["checkbox", "radio"].includes(t.type)))) return;
  const mod = e.ctrlKey || e.metaKey;
  if (mod && e.code === "KeyZ") { e.preventDefault(); (e.shiftKey ? redo : undo)(); return; }
  if (mod && e.code === "KeyY") { e.preventDefault(); redo(); return; }
  if (S.view === "noface") return;
  const onButton = t.matches && t.matches("button, a");
  const how = { select: e.shiftKey ? "range" : mod ? "none" : "only", keepAnchor: e.shiftKey };
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -grid.cols, ArrowDown: grid.cols,
    PageUp: -grid.cols * grid.pageRows(), PageDown: grid.cols * grid.pageRows() }[e.code];
  if (step !== undefined) {
    e.preventDefault();
    setFocus(S.focus < 0 ? 0 : S.focus + step, how);
  } else if (e.code === "Home" || e.code === "End") {
    e.preventDefault();
    setFocus(e.code === "Home" ? 0 : S.list.length - 1, how);
  } else if ((e.code === "Delete" || e.code === "Backspace") && !mod) {
    e.preventDefault();
    if (S.view === "aligned") remove();
    else toast("these faces are in the trash already", "Restore puts the selected ones back");
  } else if (e.code === "Enter" && !onButton && S.focus >= 0) {
    e.preventDefault(); open(S.focus);
  } else if (e.code === "Space" && !onButton && S.focus >= 0) {
    e.preventDefault(); setFocus(S.focus, { select: "toggle" });
  } else if (mod && e.code === "KeyA") {
    e.preventDefault();
    S.selected = new Set(S.list.map((r) => r[F.name])); repaint();
  } else if (e.code === "Escape") {
    if (S.detail) closeDetail(); else { S.selected.clear(); repaint(); }
  }
});

// --- delete, restore, undo, redo ---------------------------------------------------------------------

function targets() {
  if (S.selected.size) return [...S.selected];
  return S.focus >= 0 ? [nameAt(S.focus)] : [];
}

async function move(kind) {
  const names = targets();
  if (!names.length) return;
  try {
    const r = await api(`/api/faces/${S.side}/${kind}`, { method: "POST", body: { names } });
    after(r, kind === "delete" ? "moved to the trash" : "restored");
  } catch (err) { showError(err); }
}
const remove = () => move("delete");
const restore = () => move("restore");

async function reverse(op) {
  if (S.view === "noface") return;
  try {
    const r = await api(`/api/faces/${S.side}/${op}`, { method: "POST" });
    if (!r.action) { toast(`nothing to ${op}`); counts(r); return; }
    after(r, op === "undo" ? "undone" : "redone");
  } catch (err) { showError(err); }
}
const undo = () => reverse("undo");
const redo = () => reverse("redo");

function after(r, what) {
  counts(r);
  const a = r.action, here = S.prefix;
  const gone = new Set(a.moved.filter(([from]) => from.startsWith(here)).map(([from]) => from.slice(here.length)));
  const came = a.moved.filter(([, to]) => to.startsWith(here)).map(([, to]) => to.slice(here.length));
  const focusName = S.focus >= 0 ? S.list.slice(S.focus).map((row) => row[F.name]).find((n) => !gone.has(n)) : null;
  // drop what left this view now; what came into it arrives with the listing
  S.rows = S.rows.filter((row) => !gone.has(row[F.name]));
  S.selected = new Set(came);
  arrange();
  if (focusName && S.at.has(focusName)) S.focus = S.at.get(focusName);
  repaint();
  if (S.detail && gone.has(S.detail.split("/").pop())) closeDetail();
  const missing = a.missing.length ? `${a.missing.length} not there any more` : "";
  toast(`${a.moved.length} face(s) ${what}`, missing || (a.op === "do" && a.kind === "delete" ? "Ctrl+Z undoes" : ""));
  load().then(() => { if (came.length && S.at.has(came[0])) { S.focus = S.at.get(came[0]); grid.show(S.focus); repaint(); } })
    .catch(showError);
}

// --- the detail panel ----------------------------------------------------------------------------------

let openTimer = 0;
function openSoon(i) { clearTimeout(openTimer); openTimer = setTimeout(() => open(i), 120); }

async function open(i) {
  const row = S.list[i];
  if (!row) return;
  const id = S.prefix + row[F.name];
  S.detail = id;
  const panel = $("#detail");
  panel.hidden = false;
  grid.layout();
  let d;
  try { d = await api(`/api/faces/detail/${encId(id)}`); } catch (err) {
    panel.replaceChildren(panelHead(row[F.name]), h("p", { class: "error" }, err.message, err.hint ? ` (${err.hint})` : ""));
    return;
  }
  if (S.detail !== id) return;
  const v = d.version;
  const urls = { face: `/files/${encId(id)}?v=${v}`, overlay: `/api/faces/overlay/${encId(id)}?v=${v}`,
    mask: `/api/faces/mask/${encId(id)}?v=${v}` };
  const big = h("img", { class: "big", src: urls[panel.dataset.show || "face"] || urls.face, alt: `face ${d.name}` });
  const tabs = h("div", { class: "seg views", role: "group", "aria-label": "show" }, Object.entries({ face: "Face",
    overlay: "Landmarks", mask: "Mask" }).map(([k, label]) => h("button", { type: "button", "data-show": k,
    "aria-pressed": String((panel.dataset.show || "face") === k), onclick: (e) => {
      panel.dataset.show = k; big.src = urls[k];
      for (const b of tabs.children) b.setAttribute("aria-pressed", String(b === e.currentTarget));
    } }, label)));
  panel.replaceChildren(panelHead(d.name), tabs, big, frameView(d), metaTable(d), panelActions(d));
}

function panelHead(name) {
  return h("header", {}, h("strong", { class: "fname" }, name),
    h("button", { type: "button", class: "link close", title: "close (Esc)", "aria-label": "close", onclick: closeDetail }, "✕"));
}

function frameView(d) {
  if (!d.source_frame) return h("p", { class: "muted" }, `source frame ${d.source_filename}: not in data_${d.side}`);
  const img = h("img", { src: `/api/faces/frame/${encId(d.source_frame)}?v=${d.source_frame_version}&px=480`,
    alt: `frame ${d.source_filename}` });
  const box = h("span", { class: "fbox" });
  const [w, hgt] = d.source_size, [x0, y0, x1, y1] = d.source_rect;
  Object.assign(box.style, { left: `${(100 * x0) / w}%`, top: `${(100 * y0) / hgt}%`,
    width: `${(100 * (x1 - x0)) / w}%`, height: `${(100 * (y1 - y0)) / hgt}%` });
  return h("figure", { class: "frame" }, h("a", { href: `/files/${encId(d.source_frame)}`, target: "_blank", rel: "noopener",
    title: "open the whole frame" }, h("span", { class: "frame-wrap" }, img, box)),
  h("figcaption", { class: "muted" }, `source frame ${d.source_filename} (${d.source_size.join(" × ")}), face ${d.face_index}`));
}

function metaTable(d) {
  const rows = [["side", d.side + (d.in_trash ? " (in the trash)" : "")], ["file", d.id],
    ["face type", d.face_type], ["size", `${d.size} px`], ["face index", d.face_index],
    ["source frame", d.source_filename], ["detector box", d.source_rect.map((x) => Math.round(x)).join(", ")],
    ["blur score", d.blur_score === null ? "unreadable pixels" : d.blur_score.toFixed(1)],
    ["yaw", `${d.yaw}°`], ["pitch", `${d.pitch}°`], ["landmarks", `${d.landmarks.length} points`],
    ["file size", `${fmt.format(d.file_bytes)} bytes`], ["modified", new Date(d.modified * 1000).toLocaleString()],
    ...Object.entries(d.extra).map(([k, v]) => [k, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)])];
  return h("table", { class: "meta" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))));
}

function panelActions(d) {
  const name = d.name;
  const btns = d.in_trash
    ? [h("button", { type: "button", onclick: () => { S.selected = new Set([name]); restore(); } }, "Restore")]
    : [h("button", { type: "button", class: "danger", onclick: () => { S.selected = new Set([name]); remove(); } }, "Delete"),
      h("button", { type: "button", title: "order the grid by likeness to this face (identity sort)",
        onclick: () => { S.reference = d.id; $("#sort").value = "identity"; sortChanged(); } }, "Sort by likeness")];
  return h("div", { class: "actions" }, btns);
}

function closeDetail() {
  S.detail = null;
  $("#detail").hidden = true;
  grid.layout();
  $("#grid").focus();
}

// --- sorting -----------------------------------------------------------------------------------------

function setOrder(r) {
  const pos = new Map();
  [...r.order, ...r.trash, ...r.skipped].forEach((n, i) => pos.set(n, i));
  S.order = { method: r.method, pos, trash: new Set(r.trash) };
  arrange(true);
  if (r.trash.length) toast(`sort --by ${r.method} would move ${r.trash.length} face(s) to the trash`, "they are shown dimmed, last");
}

async function sortChanged() {
  const method = $("#sort").value;
  $("#target-wrap").hidden = method !== "final";
  $("#apply-sort").disabled = method === "name";
  if (method === "name") { S.order = null; arrange(true); return; }
  if (method === "identity" && !S.reference) {
    if (S.focus < 0) {
      toast("the identity order needs a reference face", "open a face and press 'Sort by likeness'", "error");
      $("#sort").value = S.order ? S.order.method : "name";
      return;
    }
    S.reference = S.prefix + nameAt(S.focus);
  }
  const body = { method, target: parseInt($("#target").value, 10) || 2000 };
  if (method === "identity") body.reference = S.reference;
  try {
    if (S.jobs.order) await cancelJob(S.jobs.order.id, true);
    const r = await api(`/api/faces/${S.side}/order`, { method: "POST", body });
    if (r.job) { S.jobs.order = { id: r.job.id, side: S.side, method }; showStatus(); }
    else setOrder(r);
  } catch (err) { showError(err); }
}

async function cancelJob(id, wait = false) {
  try { await api(`/api/jobs/${id}/cancel`, { method: "POST" }); } catch { return; }
  for (let k = 0; wait && k < 100; k++) {
    const j = await api(`/api/jobs/${id}`);
    if (j.state !== "running") return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function applySort() {
  const method = $("#sort").value;
  if (method === "name") return;
  const trashNote = S.order && S.order.trash.size ? ` ${S.order.trash.size} face(s) go to aligned_trash.` : "";
  if (!window.confirm(`Rename every face of data_${S.side}/aligned in the order of '${method}' (facelab sort --by ${method})?${trashNote}`)) return;
  const body = { method, target: parseInt($("#target").value, 10) || 2000 };
  if (method === "identity") body.reference = S.reference;
  try {
    const job = await api(`/api/faces/${S.side}/apply-sort`, { method: "POST", body });
    S.jobs.apply = { id: job.id, side: S.side };
    toast(`started: ${job.title} by ${method}`, "the Jobs page shows it");
    showStatus();
  } catch (err) { showError(err); }
}

// --- jobs this page follows ------------------------------------------------------------------------

let lastJobs = [];
const finished = new Set();
const opened = Date.now();

function showStatus() {
  const parts = [];
  const byId = new Map(lastJobs.map((j) => [j.id, j]));
  const describe = (id, what) => {
    const j = byId.get(id);
    parts.push(h("span", { class: "job-note" }, `${what}: ${j ? percent(j) : "starting"} `,
      h("button", { type: "button", class: "link", onclick: () => cancelJob(id) }, "cancel")));
  };
  if (S.jobs.measure) describe(S.jobs.measure, "measuring the faces for filters and sorts");
  if (S.jobs.order) describe(S.jobs.order.id, `ordering by ${S.jobs.order.method}`);
  if (S.jobs.apply) describe(S.jobs.apply.id, "renaming the files (sort)");
  if (S.reference && $("#sort").value === "identity") parts.push(h("span", { class: "muted" }, ` likeness to ${S.reference.split("/").pop()}`));
  $("#status").replaceChildren(...parts);
}

onJobs(async (jobs) => {
  lastJobs = jobs;
  for (const j of jobs) {
    if (j.state === "running" || finished.has(j.id)) continue;
    finished.add(j.id);
    if (S.jobs.order && j.id === S.jobs.order.id) {
      const mine = S.jobs.order;
      S.jobs.order = null;
      if (j.state === "done" && mine.side === S.side && $("#sort").value === mine.method) {
        try {
          const r = await api(`/api/faces/order/${j.id}`);
          if (r.state === "done") setOrder(r);
        } catch (err) { showError(err); }
      } else if (j.state === "failed") toast(j.error || "the order failed", j.hint || "", "error");
    } else if (S.jobs.measure && j.id === S.jobs.measure) {
      S.jobs.measure = null;
      load().catch(showError);
    } else if (S.jobs.apply && j.id === S.jobs.apply.id) {
      S.jobs.apply = null;
      if (j.state === "failed") toast(j.error || "sort failed", j.hint || "", "error");
      $("#sort").value = "name"; S.order = null;
      $("#apply-sort").disabled = true;
      load({ top: true }).catch(showError);
    } else if ((j.writes || []).includes(`data_${S.side}/aligned`) && j.finished && j.finished * 1000 > opened) {
      load().catch(showError);  // another job (extract, sort) changed these faces
    }
  }
  showStatus();
});

// --- the toolbar -------------------------------------------------------------------------------------

function pressed(group, value) {
  for (const b of document.querySelectorAll(`[data-${group}]`)) b.setAttribute("aria-pressed", String(b.dataset[group] === value));
}

function setView(view) {
  S.view = view;
  pressed("view", view);
  document.body.dataset.view = view;
  $("#delete").hidden = view === "trash"; $("#restore").hidden = view !== "trash";
  $("#noface-hint").hidden = view !== "noface";
  S.selected.clear();
  if (S.detail) closeDetail();
  $("#grid").focus();  // the keys act on the grid, not on the button just clicked
  load({ top: true }).catch(showError);
}

for (const b of document.querySelectorAll("[data-side]")) {
  b.addEventListener("click", () => {
    if (S.side === b.dataset.side) return;
    S.side = b.dataset.side; pressed("side", S.side);
    S.selected.clear(); S.order = null; S.reference = null; $("#sort").value = "name"; $("#apply-sort").disabled = true;
    $("#target-wrap").hidden = true;
    if (S.detail) closeDetail();
    $("#grid").focus();
    load({ top: true }).catch(showError);
  });
}
for (const b of document.querySelectorAll("[data-view]")) b.addEventListener("click", () => setView(b.dataset.view));
for (const id of ["#f-several", "#f-blur", "#f-unreadable"]) $(id).addEventListener("change", () => load({ top: true }).catch(showError));
$("#f-blur-pct").addEventListener("change", () => { if ($("#f-blur").checked) load({ top: true }).catch(showError); });
$("#sort").addEventListener("change", () => { $("#sort").blur(); $("#grid").focus(); sortChanged(); });
$("#target").addEventListener("change", () => { if ($("#sort").value === "final") sortChanged(); });
$("#apply-sort").addEventListener("click", applySort);
$("#zoom").addEventListener("change", () => { grid.setBox(Number($("#zoom").value)); $("#grid").focus(); });
$("#delete").addEventListener("click", remove);
$("#restore").addEventListener("click", restore);
$("#undo").addEventListener("click", undo);
$("#redo").addEventListener("click", redo);

grid.setBox(Number($("#zoom").value));
document.body.dataset.view = S.view;
load({ top: true }).then(() => $("#grid").focus()).catch(showError);
