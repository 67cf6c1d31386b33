// Workspace page: what the workspace holds, the next step, and a form to run any step as a job.
import { api, h, onJobs, showError, toast } from "./api.js";
import { readFields, renderFields } from "./form.js";

let steps = [];
let current = null;

function card(title, rows, extra) {
  return h("article", { class: "card" }, h("h3", {}, title),
    h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])), extra || "");
}

async function loadOverview() {
  const o = await api("/api/workspace");
  const cards = ["src", "dst"].map((side) => {
    const s = o.sides[side];
    return card(side, [["video", s.video || "none"], ["frames", s.frames], ["faces", s.faces],
      ["frames without a face", s.no_face_frames], ["in trash", s.trash]]);
  });
  for (const m of o.models) {
    cards.push(card(`model/${m.name}${m.prefix ? ` (${m.prefix})` : ""}`, m.broken ? [["state", "unreadable"]] :
      [["architecture", m.architecture], ["iteration", m.iteration], ["resolution", m.resolution || ""],
        ["last save", new Date(m.saved * 1000).toLocaleString()]],
      m.preview ? h("img", { src: `/files/${m.preview}?t=${m.saved}`, alt: `preview of ${m.name}`, class: "preview", loading: "lazy" }) : ""));
  }
  cards.push(card("result", [["merged frames", o.merged], ["videos", o.results.join(", ") || "none"]]));
  document.getElementById("overview").replaceChildren(...cards);
  const next = o.next;
  document.getElementById("next").replaceChildren(h("p", {}, h("strong", {}, "Next: "), next.why,
    next.step ? h("button", { class: "link", type: "button", onclick: () => select(next.step, next.side) }, ` open ${next.step}`) : ""));
}

function select(name, side) {
  current = steps.find((s) => s.name === name);
  for (const tab of document.querySelectorAll("#step-tabs button")) tab.setAttribute("aria-selected", tab.dataset.step === name);
  const form = document.getElementById("step-form");
  const head = [];
  if (current.sides.length) {
    head.push(h("div", { class: "sides" }, current.sides.map((s, i) => h("label", {},
      h("input", { type: "radio", name: "side", value: s, checked: side ? s === side : i === 0 }), ` ${s}`))));
  }
  const fields = h("div", { class: "fields" });
  renderFields(fields, current.fields);
  form.replaceChildren(...head, fields, h("div", { class: "actions" },
    h("button", { type: "submit", class: "primary" }, `Run ${current.title.toLowerCase()}`)));
}

async function submit(e) {
  e.preventDefault();
  const form = e.target;
  const side = form.querySelector("input[name=side]:checked");
  try {
    const job = await api(`/api/steps/${current.name}`, { method: "POST",
      body: { side: side ? side.value : null, values: readFields(form) } });
    toast(`started: ${job.title}`, "follow it on the Jobs page");
  } catch (err) { showError(err); }
}

async function main() {
  steps = await api("/api/steps");
  document.getElementById("step-tabs").replaceChildren(...steps.map((s) =>
    h("button", { type: "button", role: "tab", "data-step": s.name, onclick: () => select(s.name) }, s.title)));
  select(steps[0].name);
  document.getElementById("step-form").addEventListener("submit", submit);
  await loadOverview();
  let lastDone = "";
  onJobs((jobs) => {  // refresh the counts when a job ends
    const done = jobs.filter((j) => j.state !== "running").map((j) => j.id).join();
    if (done !== lastDone) { lastDone = done; loadOverview().catch(showError); }
  });
}

main().catch(showError);
