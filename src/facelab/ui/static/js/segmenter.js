// Segmenter page: start / stop / save `seg train` for the workspace's segmenter, watch its iteration, loss graph and
// preview (rows: training faces (drawn labels), src faces, dst faces), and run `seg apply` as a job. Like the
// Training page it reads only what training writes anyway: the job's events (the shared event stream), its figures
// (/api/jobs/{id}/points, at most once a second) and the folder (/api/seg/models). See docs/ui.md, "Segmenter".
import { api, duration, h, onJobs, showError, toast } from "./api.js";
import { LineChart, formatNumber } from "./chart.js";
import { readFields, renderFields } from "./form.js";

const $ = (id) => document.getElementById(id);
const DEFAULT = "segmenter";

const S = {
  models: [], ranges: [], name: DEFAULT,
  detail: null,   // GET /api/seg/models/{name}, or null before its first save
  job: null,      // the seg-train job of this segmenter (running, or the last one followed)
  applyJob: null, // the seg-apply job followed
  live: { id: null, next: 0, rows: [], busy: false, last: 0, timer: null },
  range: 0, previewStamp: null, runningKey: "", chartKey: "", applied: null,
};

async function loadModels() {
  const r = await api("/api/seg/models");
  S.models = r.models; S.ranges = r.ranges;
  const names = S.models.map((m) => m.name);
  if (!names.includes(S.name) && names.length) S.name = (S.models.find((m) => m.jobs && m.jobs.train) || S.models[0]).name;
  const pick = $("seg-pick");
  const options = names.includes(S.name) ? names : [S.name, ...names];
  pick.replaceChildren(...options.map((n) => {
    const m = S.models.find((x) => x.name === n);
    return h("option", { value: n }, `${n}${m ? (m.unsaved ? " · new" : ` · ${m.resolution} px ${m.face_type}`) : " · not trained yet"}${m && m.jobs && m.jobs.train ? " · training" : ""}`);
  }));
  pick.value = S.name;
  const nameField = $("f-name");
  if (nameField && !nameField.value) nameField.placeholder = S.name;
  renderRangeTabs();
}

function rangeParam() { return S.range === 0 ? "all" : String(S.ranges[S.range - 1]); }

async function loadDetail() {
  const m = S.models.find((x) => x.name === S.name);
  if (!m || m.unsaved) { S.detail = null; S.applied = null; render(); return; }
  const name = S.name;
  const q = new URLSearchParams({ range: rangeParam() });
  const d = await api(`/api/seg/models/${encodeURIComponent(name)}?${q}`);
  if (name !== S.name) return;
  S.detail = d;
  render();
  loadApplied().catch(() => {});
}

async function loadApplied() {
  const name = S.name;
  const a = await api(`/api/seg/applied?name=${encodeURIComponent(name)}`);
  if (name === S.name) { S.applied = a; render(); }
}

function currentIteration() {
  // the job (S.job is this model's: picking another model clears it) knows its iteration before the model's
  // detail is fetched again, also the one it saved at when it ends
  const saved = (S.detail && S.detail.iteration) || 0;
  if (S.job && S.job.done) return S.job.state === "running" ? S.job.done : Math.max(S.job.done, saved);
  return saved;
}

// ---------------------------------------------------------------- jobs and figures

function onJobsMessage(jobs) {
  const before = S.job;
  const mine = jobs.find((j) => j.step === "seg-train" && j.state === "running" && (j.writes || []).includes(`model/${S.name}`));
  S.job = mine || (S.job ? jobs.find((j) => j.id === S.job.id) || null : null);
  const beforeApply = S.applyJob;
  S.applyJob = jobs.find((j) => j.step === "seg-apply" && j.state === "running") ||
    (S.applyJob ? jobs.find((j) => j.id === S.applyJob.id) || null : null);
  const runningKey = jobs.filter((j) => j.step.startsWith("seg-") && j.state === "running").map((j) => j.id).join();
  if (runningKey !== S.runningKey) {
    S.runningKey = runningKey;
    loadModels().then(loadDetail).catch(showError);
  }
  if (before && S.job && before.id === S.job.id && before.state === "running" && S.job.state !== "running") {
    toast(`segmenter training ${S.job.state}`, S.job.state === "failed" ? S.job.error || "" : `saved at iteration ${S.job.done}`,
      S.job.state === "failed" ? "error" : "info");
  }
  if (beforeApply && S.applyJob && beforeApply.state === "running" && S.applyJob.state !== "running") {
    toast(`seg apply ${S.applyJob.state}`, S.applyJob.summary ? S.applyJob.summary.line : S.applyJob.error || "",
      S.applyJob.state === "failed" ? "error" : "info");
  }
  if (S.job && !S.job.external) {
    if (S.live.id !== S.job.id) S.live = { id: S.job.id, next: 0, rows: [], busy: false, last: 0, timer: null };
    if (S.job.points !== S.live.next) fetchPoints();
    if (S.job.preview && S.job.preview !== S.previewStamp) {
      S.previewStamp = S.job.preview;
      loadModels().then(loadDetail).catch(showError);
    }
  }
  render();
}

function fetchPoints() {
  const L = S.live;
  if (L.busy || L.timer) return;
  const wait = 1000 - (performance.now() - L.last);
  if (wait > 0) { L.timer = setTimeout(() => { L.timer = null; fetchPoints(); }, wait); return; }
  L.busy = true; L.last = performance.now();
  api(`/api/jobs/${L.id}/points?since=${L.next}`).then((r) => {
    if (S.live !== L) return;
    if (r.next < L.next + r.points.length) { L.rows = []; L.next = 0; L.busy = false; fetchPoints(); return; }
    for (const [it, v] of r.points) L.rows.push([it, v.bce ?? null, v.ms ?? null]);
    L.next = r.next;
    L.busy = false;
    render();
    if (S.job && S.job.points > L.next) fetchPoints();
  }).catch((err) => { L.busy = false; if (err.status !== 404) showError(err); });
}

function graphRows() {
  const live = S.live.id && S.job && S.live.id === S.job.id ? S.live.rows : [];
  const saved = S.detail ? S.detail.loss.points : [];
  const firstLive = live.length ? live[0][0] : Infinity;
  const rows = saved.filter((r) => r[0] < firstLive).map((r) => [r[0], r[1]]).concat(live.map((r) => [r[0], r[1]]));
  if (S.range === 0 || !rows.length) return rows;
  const cut = Math.max(rows[rows.length - 1][0], currentIteration()) - S.ranges[S.range - 1];
  return rows.filter((r) => r[0] > cut);
}

// ---------------------------------------------------------------- rendering

let chart = null;

function renderRangeTabs() {
  const labels = ["all", ...S.ranges.map((r) => `${r / 1000}k`)];
  $("seg-range-tabs").replaceChildren(...labels.map((l, i) => h("button", { type: "button", role: "tab",
    "aria-selected": i === S.range ? "true" : "false", onclick: () => setRange(i) }, l)));
}

function setRange(i) { S.range = i; renderRangeTabs(); loadDetail().catch(showError); }

function text(id, value) { const el = $(id); if (el.textContent !== value) el.textContent = value; }

function ago(t) { const s = Math.max(0, Date.now() / 1000 - t); return s < 60 ? "just now" : `${duration(s)} ago`; }

function render() {
  const j = S.job, d = S.detail;
  const running = !!(j && j.state === "running");
  const own = running && !j.external;
  const applying = !!(S.applyJob && S.applyJob.state === "running");
  const ended = { cancelled: "stopped (saved)", done: "finished (saved)", failed: "failed" };
  const st = $("seg-state");
  st.textContent = running ? "training" : applying ? `applying ${S.applyJob.done}${S.applyJob.total ? `/${S.applyJob.total}` : ""}` :
    j ? ended[j.state] || j.state : d ? "idle" : "not trained yet";
  st.className = `state ${running || applying ? "running" : j ? j.state : ""}`;
  $("seg-start").disabled = running;
  $("seg-stop").disabled = !running;
  $("seg-save").disabled = !own;
  $("seg-preview").disabled = !own;
  $("seg-apply").disabled = applying || !d;

  const it = currentIteration();
  text("ss-iter", it.toLocaleString("en-US"));
  text("ss-target", running && j.total ? `of ${j.total.toLocaleString("en-US")}` : "");
  const ms = running && j.rate ? 1000 / j.rate : null;
  text("ss-ms", ms ? `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms` : "–");
  const rows = graphRows();
  const last = rows.length ? rows[rows.length - 1] : null;
  text("ss-loss", last && last[1] !== null ? formatNumber(last[1]) : "–");
  text("ss-saved", d && d.saved ? ago(d.saved) : "never");
  text("ss-model", d ? `${d.resolution} px, ${d.face_type}${d.save_id ? ` · save ${d.save_id}` : ""}` : "");
  const a = S.applied;
  if (a) {
    const cur = a.sides.src.current + a.sides.dst.current, all = a.sides.src.faces + a.sides.dst.faces;
    text("ss-applied", `${cur} / ${all}`);
    text("ss-applied-sub", `src ${a.sides.src.current}/${a.sides.src.faces} · dst ${a.sides.dst.current}/${a.sides.dst.faces} of this save` +
      (a.sides.src.applied + a.sides.dst.applied > cur ? ` (${a.sides.src.applied + a.sides.dst.applied - cur} older)` : ""));
  } else { text("ss-applied", "–"); text("ss-applied-sub", ""); }

  const key = `${rows.length}:${last ? last.join() : ""}:${rows.length ? rows[0][0] : ""}`;
  if (key !== S.chartKey) { S.chartKey = key; chart.setData(rows); $("seg-chart").dataset.points = String(rows.length); }

  const jp = j && !j.external && j.preview_file ? j : null;
  const id = jp ? jp.preview_file : d && d.preview;
  const stamp = jp ? jp.preview : d && d.preview_time;
  const img = $("sp-img");
  const src = id ? `/files/${id}?t=${stamp}` : null;
  if (src && img.getAttribute("src") !== src) img.setAttribute("src", src);
  img.hidden = !src;
  $("sp-none").hidden = !!src;
  text("sp-label", src ? `${S.name} · iteration ${jp ? jp.done : d ? d.iteration : 0}` : "");
}

// ---------------------------------------------------------------- actions

async function start() {
  const values = readFields($("seg-train-form"));
  if (!values.name) values.name = S.name;
  try {
    const job = await api("/api/seg/train", { method: "POST", body: { values } });
    S.job = job; S.name = values.name;
    S.live = { id: job.id, next: 0, rows: [], busy: false, last: 0, timer: null };
    toast(`started: ${job.title}`, "training goes on when this page is closed");
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
  try { await api(`/api/jobs/${S.job.id}/ask/${what}`, { method: "POST" }); toast(`${what} asked`, "between two iterations"); }
  catch (err) { showError(err); }
}

async function applyMasks() {
  if (!S.detail) return toast("no segmenter to apply yet", "train one first", "error");
  const values = readFields($("seg-apply-form"));
  if (!values.name) values.name = S.name;
  try {
    S.applyJob = await api("/api/seg/apply", { method: "POST", body: { values } });
    toast(`started: ${S.applyJob.title}`, "faces already masked by this save are skipped");
    render();
  } catch (err) { showError(err); }
}

const KEYS = {
  KeyP: () => (S.job && S.job.state === "running" ? ask("preview") : loadDetail().catch(showError)),
  KeyL: () => setRange((S.range + 1) % (S.ranges.length + 1)),
  KeyS: () => ask("save"),
  KeyA: () => applyMasks(),
  Enter: () => stop(),
  NumpadEnter: () => stop(),
};

function onKey(e) {
  const t = e.target;
  if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
  if (t.closest && t.closest("input, select, textarea, [contenteditable], details")) return;
  const action = KEYS[e.code];
  if (!action) return;
  if ((e.code === "Enter" || e.code === "NumpadEnter") && t.closest && t.closest("button, a")) return;
  e.preventDefault();
  action(e);
}

async function main() {
  chart = new LineChart($("seg-chart"), {
    series: [{ name: "bce", color: "#c77dff" }], logY: true,
    onHover: (row) => { $("seg-readout").textContent = row ? `iteration ${row[0].toLocaleString("en-US")} · bce ${formatNumber(row[1])}` : "\u00a0"; },
  });
  const forms = await api("/api/seg/forms");
  renderFields($("seg-train-form"), forms.train);
  renderFields($("seg-apply-form"), forms.apply);
  for (const el of $("seg-apply-form").querySelectorAll("[id^='f-']")) el.id = `a-${el.id.slice(2)}`;  // ids unique on the page
  for (const el of $("seg-apply-form").querySelectorAll("label[for^='f-']")) el.setAttribute("for", `a-${el.getAttribute("for").slice(2)}`);
  $("seg-start").addEventListener("click", start);
  $("seg-stop").addEventListener("click", stop);
  $("seg-save").addEventListener("click", () => ask("save"));
  $("seg-preview").addEventListener("click", () => ask("preview"));
  $("seg-apply").addEventListener("click", applyMasks);
  $("seg-pick").addEventListener("change", (e) => {
    S.name = e.target.value;
    S.job = null; S.detail = null; S.applied = null; S.previewStamp = null; S.runningKey = "";
    S.live = { id: null, next: 0, rows: [], busy: false, last: 0, timer: null };
    loadDetail().catch(showError);
  });
  document.addEventListener("keydown", onKey);
  await loadModels();
  if (!S.models.length) $("seg-train-options").open = true;
  await loadDetail();
  onJobs(onJobsMessage);
}

main().catch(showError);
