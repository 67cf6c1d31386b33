// Shared helpers of every page: JSON requests, the toast, the job event stream, small DOM builders.

export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: text }; }
  if (!res.ok) {
    const err = new Error((data && data.error) || `${res.status} ${res.statusText}`);
    err.hint = data && data.hint;
    err.status = res.status;
    throw err;
  }
  return data;
}

let toastTimer = null;
export function toast(message, hint = "", kind = "info") {
  const el = document.getElementById("toast");
  el.replaceChildren(h("strong", {}, message), hint ? h("span", {}, ` (${hint})`) : "");
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 9000 : 4000);
}

export function showError(err) {
  toast(err.message, err.hint || "", "error");
}

// h("div", {class: "x", onclick: f}, child, ...): an element; strings become text nodes (never HTML)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false || c === "") continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// One EventSource per page; listeners get every `jobs` message.
const listeners = new Set();
let source = null;
export function onJobs(fn) {
  listeners.add(fn);
  if (!source) {
    source = new EventSource("/api/events");
    source.addEventListener("jobs", (e) => {
      const jobs = JSON.parse(e.data);
      badge(jobs);
      for (const l of listeners) l(jobs);
    });
  }
  return () => listeners.delete(fn);
}

function badge(jobs) {
  const el = document.getElementById("job-badge");
  if (!el) return;
  const running = jobs.filter((j) => j.state === "running");
  el.hidden = running.length === 0;
  el.textContent = running.length === 1 ? `${running[0].title}: ${percent(running[0])}` : `${running.length} jobs running`;
}

export function percent(job) {
  if (!job.total) return job.done ? `${job.done}` : "starting";
  return `${Math.floor((100 * job.done) / job.total)} %`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// keep the badge current on pages that do not listen themselves
if (document.body.dataset.page !== "jobs") onJobs(() => {});
