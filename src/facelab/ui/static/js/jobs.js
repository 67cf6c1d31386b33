// Jobs page: every job with its progress bar, rate, ETA, live log and a Cancel button.
import { api, duration, h, onJobs, percent, showError, toast } from "./api.js";

const logs = new Map();  // job id -> lines so far
const seqs = new Map();  // job id -> how many lines of it we have (the stream sends lines from `log_from` on)

function render(jobs) {
  const list = document.getElementById("jobs");
  if (!jobs.length) {
    list.replaceChildren(h("p", { class: "muted" }, "No jobs yet: start one on the Workspace page."));
    return;
  }
  list.replaceChildren(...jobs.map((j) => {
    const lines = logs.get(j.id) || [];
    const have = seqs.get(j.id) || 0;
    const fresh = j.log.slice(Math.max(0, have - j.log_from));
    if (fresh.length) { lines.push(...fresh); logs.set(j.id, lines.slice(-400)); }
    seqs.set(j.id, Math.max(have, j.log_seq));
    if (j.external && j.message) logs.set(j.id, [j.message]);
    const frac = j.total ? j.done / j.total : null;
    const bar = h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": j.total || 0, "aria-valuenow": j.done });
    const fill = h("div", { class: "fill" });
    fill.style.width = frac === null ? (j.state === "running" ? "100%" : "0") : `${(100 * frac).toFixed(1)}%`;
    if (frac === null && j.state === "running") fill.classList.add("indeterminate");
    bar.append(fill);
    const stats = [j.phase, j.total ? `${j.done} / ${j.total}` : j.done ? `${j.done}` : "",
      j.rate ? `${j.rate.toFixed(j.rate < 10 ? 2 : 0)}/s` : "", j.eta ? `ETA ${duration(j.eta)}` : ""].filter(Boolean).join(" · ");
    return h("article", { class: `job ${j.state}`, "data-job": j.id },
      h("header", {}, h("strong", {}, j.title), h("span", { class: `state ${j.state}` }, j.state === "running" ? percent(j) : j.state),
        j.state === "running" ? h("button", { type: "button", class: "danger", "data-cancel": j.id, onclick: () => cancel(j.id) }, "Cancel") : ""),
      bar, h("p", { class: "stats" }, stats),
      j.error ? h("p", { class: "error" }, j.error, j.hint ? ` (${j.hint})` : "") : "",
      j.summary ? h("p", { class: "summary" }, j.summary.line) : "",
      j.summary && (j.summary.files || []).length ? h("p", { class: "files" }, ...j.summary.files.map((id) =>
        h("a", { href: `/files/${id.split("/").map(encodeURIComponent).join("/")}`, download: id.split("/").pop() },
          id.split("/").pop()))) : "",
      (logs.get(j.id) || []).length ? h("pre", { class: "log" }, logs.get(j.id).join("\n")) : "");
  }));
  for (const pre of list.querySelectorAll("pre.log")) pre.scrollTop = pre.scrollHeight;
}

async function cancel(id) {
  try { await api(`/api/jobs/${id}/cancel`, { method: "POST" }); toast("cancel asked", "finished work is kept"); }
  catch (err) { showError(err); }
}

async function main() {
  const jobs = await api("/api/jobs");
  for (const j of jobs) if (!j.external) {
    const full = await api(`/api/jobs/${j.id}?since=0`);
    logs.set(j.id, full.log);
    seqs.set(j.id, full.log_seq);
    j.log = [];
  }
  render(jobs);
  onJobs(render);
}

main().catch(showError);
