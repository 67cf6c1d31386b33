// Training page: pick a model, start / stop / save / back up its training, watch the iteration, ms per iteration,
// ETA, the live preview (with its history) and the loss graph. Everything comes from what training writes anyway:
// the job's events (the shared event stream), its figures (/api/jobs/{id}/points, fetched at most once a second)
// and the model folder (/api/train/models). Keys follow DeepFaceLab's trainer window (matched by event.code, so
// they work on any keyboard layout): see KEYS below and docs/ui.md, "Training".
import { api, duration, h, onJobs, showError, toast } from "./api.js";
import { LineChart, formatNumber } from "./chart.js";
import { readFields, renderFields } from "./form.js";

const NEW = "\u0000new";  // the picker's "new model" entry
const $ = (id) => document.getElementById(id);

const S = {
  models: [], columns: [], ranges: [],
  sel: null,          // {name, prefix} or null for a new model
  detail: null,       // GET /api/train/models/{name}
  job: null,          // the job (from the event stream) that trains the selected model, or the last one that did
  live: { id: null, next: 0, rows: [], busy: false, last: 0, timer: null },  // the job's figures
  range: 0,           // index into ["all", ...ranges]
  view: 0,            // index into views() (Space)
  hist: 0,            // preview history position
  targetEdited: false,
  previewStamp: null, // job.preview of the preview shown
  runningKey: "",
  chartKey: "",
};

// ---------------------------------------------------------------- reading

async function loadModels() {
  const r = await api("/api/train/models");
  S.models = r.models; S.columns = r.columns; S.ranges = r.ranges;
  const pick = $("model-pick");
  const key = (m) => `${m.name}\u0000${m.prefix}`;
  pick.replaceChildren(...S.models.map((m) => h("option", { value: key(m) },
    `${m.name}${m.prefix ? ` (${m.prefix.slice(0, -1)})` : ""}${m.architecture && m.architecture !== m.name ? ` · ${m.architecture}` : ""}${m.job ? " · training" : ""}`)),
  h("option", { value: NEW }, "New model…"));
  if (S.sel && !S.models.some((m) => m.name === S.sel.name && m.prefix === S.sel.prefix)) S.sel = null;
  if (!S.sel && S.models.length) {
    const m = S.models.find((x) => x.job) || S.models[0];
    S.sel = { name: m.name, prefix: m.prefix };
  }
  pick.value = S.sel ? `${S.sel.name}\u0000${S.sel.prefix}` : NEW;
  renderRangeTabs();
}

function rangeParam() { return S.range === 0 ? "all" : String(S.ranges[S.range - 1]); }

async function loadDetail() {
  const sel = S.sel;
  const m = sel && S.models.find((x) => x.name === sel.name && x.prefix === sel.prefix);
  if (!sel || !m || m.unsaved || m.broken) { S.detail = null; render(); return; }
  const until = currentIteration();
  const q = new URLSearchParams({ prefix: sel.prefix, range: rangeParam() });
  if (until) q.set("until", String(until));
  const d = await api(`/api/train/models/${encodeURIComponent(sel.name)}?${q}`);
  if (S.sel !== sel) return;  // the user picked another model meanwhile
  const atEnd = !S.detail || S.detail.name !== d.name || S.hist >= S.detail.history.length - 1;
  S.detail = d;
  S.hist = atEnd ? Math.max(0, d.history.length - 1) : Math.min(S.hist, Math.max(0, d.history.length - 1));
  render();
}

function selectedSummary() {
  return S.sel && S.models.find((x) => x.name === S.sel.name && x.prefix === S.sel.prefix);
}

function currentIteration() {
  if (S.job && S.job.done) return S.job.done;
  const m = selectedSummary();
  return (S.detail && S.detail.iteration) || (m && m.iteration) || 0;
}

// ---------------------------------------------------------------- the job and its figures

function jobFor(jobs) {
  if (!S.sel) return null;
  const mine = jobs.find((j) => j.step === "train" && j.state === "running" && (j.writes || []).includes(`model/${S.sel.name}`));
  if (mine) return mine;
  return S.job ? jobs.find((j) => j.id === S.job.id) || null : null;  // the one we followed, now finished
}

function onJobsMessage(jobs) {
  const before = S.job;
  S.job = jobFor(jobs);
  const runningKey = jobs.filter((j) => j.step === "train" && j.state === "running").map((j) => j.id).join();
  if (runningKey !== S.runningKey) {  // a training started or ended somewhere: the list and folder changed
    S.runningKey = runningKey;
    loadModels().then(loadDetail).catch(showError);
  }
  if (before && S.job && before.id === S.job.id && before.state === "running" && S.job.state !== "running") {
    toast(`training ${S.job.state}`, S.job.state === "failed" ? S.job.error || "" : `saved at iteration ${S.job.done}`,
      S.job.state === "failed" ? "error" : "info");
  }
  if (S.job && !S.job.external) {
    if (S.live.id !== S.job.id) S.live = { id: S.job.id, next: 0, rows: [], busy: false, last: 0, timer: null };
    if (S.job.points > S.live.next || S.job.points < S.live.next) fetchPoints();
    if (S.job.preview && S.job.preview !== S.previewStamp) {
      S.previewStamp = S.job.preview;
      S.view = 0;
      loadDetail().catch(showError);  // a new history frame, maybe
    }
  }
  render();
}

// at most one request a second; the job's list can shrink (halved past its cap): then start again from 0
function fetchPoints() {
  const L = S.live;
  if (L.busy || L.timer) return;
  const wait = 1000 - (performance.now() - L.last);
  if (wait > 0) { L.timer = setTimeout(() => { L.timer = null; fetchPoints(); }, wait); return; }
  L.busy = true; L.last = performance.now();
  api(`/api/jobs/${L.id}/points?since=${L.next}`).then((r) => {
    if (S.live !== L) return;
    if (r.next < L.next + r.points.length) {  // decimated on the server: what we have is stale
      L.rows = []; L.next = 0;
      L.busy = false;
      fetchPoints();
      return;
    }
    for (const [it, v] of r.points) L.rows.push([it, v.src ?? v.loss ?? null, v.dst ?? null, v.ms ?? null]);
    L.next = r.next;
    L.busy = false;
    render();
    if (S.job && S.job.points > L.next) fetchPoints();
  }).catch((err) => { L.busy = false; if (err.status !== 404) showError(err); });
}

// the graph's rows: the saved history up to the first live figure, then the live figures, within the range
function graphRows() {
  const live = S.live.id && S.job && S.live.id === S.job.id ? S.live.rows : [];
  const saved = S.detail ? S.detail.loss.points : [];
  const firstLive = live.length ? live[0][0] : Infinity;
  const rows = saved.filter((r) => r[0] < firstLive).concat(live.map((r) => [r[0], r[1], r[2]]));
  if (S.range === 0 || !rows.length) return rows;
  const cut = Math.max(rows[rows.length - 1][0], currentIteration()) - S.ranges[S.range - 1];
  return rows.filter((r) => r[0] > cut);
}

// ---------------------------------------------------------------- previews (Space cycles the views)

function views() {
  const out = [{ kind: "latest" }];
  if (S.detail && S.detail.history.length) out.push({ kind: "history" });
  for (const m of S.models) {
    if (m.preview && !(S.sel && m.name === S.sel.name && m.prefix === S.sel.prefix)) out.push({ kind: "model", model: m });
  }
  return out;
}

function showPreview() {
  const vs = views();
  if (S.view >= vs.length) S.view = 0;
  const v = vs[S.view];
  const m = selectedSummary();
  let src = null, label = "";
  const name = S.sel ? `${S.sel.name}${S.sel.prefix ? ` (${S.sel.prefix.slice(0, -1)})` : ""}` : "";
  if (v.kind === "latest") {
    const j = S.job && !S.job.external && S.job.preview_file ? S.job : null;
    const id = j ? j.preview_file : (S.detail && S.detail.preview) || (m && m.preview);
    const stamp = j ? j.preview : (S.detail && S.detail.preview_time) || (m && m.preview_time);
    if (id) src = `/files/${id}?t=${stamp}`;
    label = `${name} · latest${j ? ` · iteration ${j.done}` : ""}`;
  } else if (v.kind === "history") {
    const [it, id] = S.detail.history[S.hist];
    src = `/files/${id}`;
    label = `${name} · history · iteration ${it}`;
  } else {
    src = `/files/${v.model.preview}?t=${v.model.preview_time}`;
    label = `${v.model.name} · latest · iteration ${v.model.iteration} (another model)`;
  }
  const img = $("pv-img");
  if (src && img.getAttribute("src") !== src) img.setAttribute("src", src);
  img.hidden = !src;
  img.alt = `preview: ${S.columns.join(", ")}`;
  $("pv-none").hidden = !!src;
  $("pv-label").textContent = `${label}${vs.length > 1 ? `  [${S.view + 1}/${vs.length}, Space]` : ""}`;
  const hist = S.detail ? S.detail.history : [];
  $("pv-history").hidden = !hist.length;
  const slider = $("pv-slider");
  slider.max = String(Math.max(0, hist.length - 1));
  slider.value = String(S.hist);
  $("pv-hist-label").textContent = hist.length ? `history: iteration ${hist[S.hist][0]} (${S.hist + 1} of ${hist.length})` : "";
}

function cycleView(step) {
  const n = views().length;
  S.view = (S.view + step + n) % n;
  showPreview();
}

function historyStep(step) {
  const hist = S.detail ? S.detail.history : [];
  if (!hist.length) return;
  S.hist = Math.min(hist.length - 1, Math.max(0, S.hist + step));
  S.view = views().findIndex((v) => v.kind === "history");
  showPreview();
}

// ---------------------------------------------------------------- rendering

let chart = null;

function renderRangeTabs() {
  const labels = ["all", ...S.ranges.map((r) => `${r / 1000}k`)];
  $("range-tabs").replaceChildren(...labels.map((l, i) => h("button", { type: "button", role: "tab",
    "aria-selected": i === S.range ? "true" : "false", "data-range": i === 0 ? "all" : S.ranges[i - 1],
    onclick: () => setRange(i) }, l)));
}

function setRange(i) {
  S.range = i;
  renderRangeTabs();
  loadDetail().catch(showError);
}

function text(id, value) {
  const el = $(id);
  if (el.textContent !== value) el.textContent = value;
}

function render() {
  const j = S.job, m = selectedSummary(), d = S.detail;
  const running = !!(j && j.state === "running");
  const own = running && !j.external;
  const st = $("train-state");
  const ended = { cancelled: "stopped (saved)", done: "finished (saved)", failed: "failed" };
  st.textContent = running ? (j.external ? "training (command line)" : "training") : j ? ended[j.state] || j.state : S.sel ? "idle" : "new model";
  st.className = `state ${running ? "running" : j ? j.state : ""}`;
  $("btn-start").disabled = running;
  $("btn-stop").disabled = !running;
  for (const id of ["btn-save", "btn-backup", "btn-preview"]) $(id).disabled = !own;

  const iteration = currentIteration();
  text("st-iter", iteration ? iteration.toLocaleString("en-US") : "0");
  const lastLive = S.live.rows.length && S.live.id === (j && j.id) ? S.live.rows[S.live.rows.length - 1] : null;
  const ms = running && j.rate ? 1000 / j.rate : null;
  text("st-ms", ms ? `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms` : "–");
  const lastSaved = d && d.loss.points.length ? d.loss.points[d.loss.points.length - 1] : null;
  const losses = lastLive || lastSaved;
  text("st-src", losses && losses[1] !== null ? formatNumber(losses[1]) : "–");
  text("st-dst", losses && losses[2] !== null ? formatNumber(losses[2]) : "–");
  const target = $("st-target");
  const suggested = (running && j.total) || (d && d.target) || (m && m.target) || "";
  if (!S.targetEdited && document.activeElement !== target && target.value !== String(suggested)) target.value = suggested;
  const goal = parseInt(target.value, 10);
  let eta = "–";
  if (goal && iteration >= goal) eta = "reached";
  else if (goal && running && j.rate) eta = duration((goal - iteration) / j.rate);
  text("st-eta", eta);
  const saved = d ? d.saved : m && m.saved;
  text("st-saved", saved ? ago(saved) : "never");
  text("st-saved-it", saved ? `at iteration ${((d && d.iteration) || (m && m.iteration) || 0).toLocaleString("en-US")}` : "");

  const rows = graphRows();
  const key = `${rows.length}:${rows.length ? rows[rows.length - 1].join() : ""}:${rows.length ? rows[0][0] : ""}`;
  if (key !== S.chartKey) { S.chartKey = key; chart.setData(rows); $("loss-chart").dataset.points = String(rows.length); }
  showPreview();
}

function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 60 ? "just now" : `${duration(s)} ago`;
}

// ---------------------------------------------------------------- actions

async function start() {
  const form = $("train-form");
  const values = readFields(form);
  const m = selectedSummary();
  if (m) {  // continue this model: its folder and architecture
    values.name = m.name;
    if (m.architecture) values.model = m.architecture;
    if (m.prefix && values.gpu === undefined) values.gpu = parseInt(m.prefix.slice(3), 10);
  }
  try {
    const job = await api("/api/steps/train", { method: "POST", body: { values } });
    S.job = job;
    S.live = { id: job.id, next: 0, rows: [], busy: false, last: 0, timer: null };
    toast(`started: ${job.title}`, "training goes on when this page is closed");
    if (!m) {
      const name = values.name || values.model || "quick";
      S.sel = { name, prefix: values.gpu !== undefined ? `gpu${values.gpu}_` : "" };
    }
    await loadModels();
    await loadDetail();
  } catch (err) { showError(err); }
}

async function stop() {
  if (!S.job || S.job.state !== "running") return;
  try { await api(`/api/jobs/${S.job.id}/cancel`, { method: "POST" }); toast("stopping", "training saves first"); }
  catch (err) { showError(err); }
}

async function ask(what) {
  if (!S.job || S.job.state !== "running" || S.job.external) return;
  const savedBefore = S.detail ? S.detail.saved : null;
  try {
    await api(`/api/jobs/${S.job.id}/ask/${what}`, { method: "POST" });
  } catch (err) { showError(err); return; }
  if (what === "preview") { S.view = 0; toast("preview asked", "it shows after this iteration"); return; }
  toast(`${what} asked`, "between two iterations");
  for (let i = 0; i < 120; i++) {  // the folder changes when the save is done
    await new Promise((r) => setTimeout(r, 1000));
    await loadDetail().catch(() => {});
    if (S.detail && S.detail.saved !== savedBefore) {
      toast(what === "backup" ? "saved and backed up" : "saved", `iteration ${S.detail.iteration}`);
      return;
    }
  }
}

const KEYS = {
  Space: (e) => cycleView(e.shiftKey ? -1 : 1),
  KeyP: () => (S.job && S.job.state === "running" ? ask("preview") : loadDetail().catch(showError)),
  KeyL: () => setRange((S.range + 1) % (S.ranges.length + 1)),
  KeyS: () => ask("save"),
  KeyB: () => ask("backup"),
  Enter: () => stop(),
  NumpadEnter: () => stop(),
  ArrowLeft: () => historyStep(-1),
  ArrowRight: () => historyStep(1),
};

function onKey(e) {
  const t = e.target;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (t.closest && t.closest("input, select, textarea, [contenteditable], details")) return;
  const action = KEYS[e.code];
  if (!action) return;
  if ((e.code === "Enter" || e.code === "NumpadEnter") && t.closest && t.closest("button, a")) return;  // activates it
  e.preventDefault();
  if (e.repeat && e.code !== "ArrowLeft" && e.code !== "ArrowRight") return;
  action(e);
}

// ---------------------------------------------------------------- start

async function main() {
  chart = new LineChart($("loss-chart"), {
    series: [{ name: "src", color: "#f5a524" }, { name: "dst", color: "#4aa3ff" }], logY: true,
    onHover: (row) => {
      $("loss-readout").textContent = row ? `iteration ${row[0].toLocaleString("en-US")} · src ${formatNumber(row[1])} · dst ${formatNumber(row[2])}` : "\u00a0";
    },
  });
  const steps = await api("/api/steps");
  renderFields($("train-form"), steps.find((s) => s.name === "train").fields);
  $("btn-start").addEventListener("click", start);
  $("btn-stop").addEventListener("click", stop);
  $("btn-save").addEventListener("click", () => ask("save"));
  $("btn-backup").addEventListener("click", () => ask("backup"));
  $("btn-preview").addEventListener("click", () => ask("preview"));
  $("pv-prev").addEventListener("click", () => historyStep(-1));
  $("pv-next").addEventListener("click", () => historyStep(1));
  $("pv-slider").addEventListener("input", (e) => { S.hist = parseInt(e.target.value, 10); historyStep(0); });
  $("st-target").addEventListener("input", () => { S.targetEdited = true; render(); });
  $("model-pick").addEventListener("change", (e) => {
    const v = e.target.value;
    if (v === NEW) {
      S.sel = null;
      $("train-options").open = true;
      $("f-name").focus();
    } else {
      const [name, prefix] = v.split("\u0000");
      S.sel = { name, prefix };
    }
    S.job = null; S.detail = null; S.view = 0; S.hist = 0; S.targetEdited = false; S.previewStamp = null;
    S.live = { id: null, next: 0, rows: [], busy: false, last: 0, timer: null };
    S.runningKey = "";  // the next message finds this model's job
    loadDetail().catch(showError);
  });
  document.addEventListener("keydown", onKey);
  await loadModels();
  if (!S.sel) $("train-options").open = true;  // nothing to continue: a new model's options
  await loadDetail();
  onJobs(onJobsMessage);
}

main().catch(showError);
