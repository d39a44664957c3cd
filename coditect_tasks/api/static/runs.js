"use strict";
// The runs: filtered by what the URL holds (so a link shares the view), a page of 50, newest
// first. The first page is read again every 0.5 s: new runs appear at the top and changed ones
// change in place. Older pages (?before=<run id>) stay as they were read.
const PAGE = 50;
const FIELDS = ["status", "search", "name", "since", "until"];
const form = document.getElementById("filter");
const rows = new Map(); // run id -> its <tr>

function filterOf(params) {
  const query = new URLSearchParams();
  for (const field of FIELDS) {
    let value = params.get(field);
    if (!value) continue;
    if (field === "since" || field === "until") value = new Date(value).toISOString(); // the page's time zone
    query.set(field, value);
  }
  return query;
}

function showFilter(params) {
  for (const field of FIELDS) form.elements[field].value = params.get(field) || "";
}

function fill(row, run) {
  row.dataset.status = run.status;
  row.replaceChildren();
  cell(row, link(`/runs/${encodeURIComponent(run.run_id)}`, run.run_id.slice(0, 12))).title = run.run_id;
  cell(row, run.name || "-");
  cell(row, badge(run.status));
  cell(row, timeCell(run.submitted_at));
  cell(row, duration(run.submitted_at, run.finished_at)).className = "number";
  cell(row, run.finished_at ? timeCell(run.finished_at) : "-");
}

function show(runs, fresh) {
  const body = document.querySelector("#runs tbody");
  runs.forEach((run, index) => {
    let row = rows.get(run.run_id);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.run = run.run_id;
      rows.set(run.run_id, row);
      const next = runs.slice(index + 1).map((r) => rows.get(r.run_id)).find(Boolean);
      body.insertBefore(row, next || null); // newer than every row shown after it
      if (fresh) row.classList.add("fresh");
    }
    if (row.dataset.status !== run.status || row.dataset.finished !== String(run.finished_at)) {
      fill(row, run);
      row.dataset.finished = String(run.finished_at);
    } else if (!run.finished_at) {
      row.cells[4].textContent = duration(run.submitted_at, null); // a running run's time goes on
    }
  });
  const shown = new Set(runs.map((run) => run.run_id)); // the page read is the truth: a run the
  for (const [id, row] of rows) { // filter no longer passes (it finished) leaves, as do the oldest
    if (!shown.has(id)) { row.remove(); rows.delete(id); }
  }
}

function showCounts(counts, params) {
  const box = document.getElementById("counts");
  box.replaceChildren(...Object.entries(counts).map(([status, n]) => {
    const query = new URLSearchParams(params);
    query.set("status", status);
    query.delete("before");
    const a = link(`/runs?${query}`, `${status} ${n}`);
    a.className = status === params.get("status") ? "active" : "";
    return a;
  }));
  const note = document.createElement("span");
  note.textContent = "recorded runs of this filter";
  note.title = "Counted in the history: as fresh as the recorder (see its lag on the overview).";
  box.append(note);
}

async function load(params, fresh) {
  const query = filterOf(params);
  query.set("limit", PAGE);
  if (params.get("before")) query.set("before", params.get("before"));
  const body = await getJSON(`/api/runs?${query}`);
  show(body.runs, fresh);
  showCounts(body.counts, params);
  const older = document.getElementById("older");
  older.hidden = body.runs.length < PAGE;
  if (body.runs.length) {
    const next = new URLSearchParams(params);
    next.set("before", body.runs[body.runs.length - 1].run_id);
    older.href = `/runs?${next}`;
  }
  document.getElementById("newest").hidden = !params.get("before");
  document.body.dataset.ready = "true";
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = new URLSearchParams();
  for (const field of FIELDS) if (form.elements[field].value) params.set(field, form.elements[field].value);
  location.assign(`/runs${params.size ? "?" + params : ""}`); // the URL holds the filter
});
form.addEventListener("reset", () => setTimeout(() => location.assign("/runs")));

const params = new URLSearchParams(location.search);
showFilter(params);
if (params.get("before")) load(params, false).catch((e) => { document.getElementById("message").textContent = e.message; });
else { let first = true; every(0.5, async () => { await load(params, !first); first = false; }); }
