"use strict";
// The run list: newest first, a page of 50, "older runs" pages on with ?before=<last run id>.
const PAGE = 50;

async function load() {
  const before = new URLSearchParams(location.search).get("before");
  const query = new URLSearchParams({ limit: PAGE });
  if (before) query.set("before", before);
  const reply = await fetch(`/api/runs?${query}`);
  const body = await reply.json();
  if (!reply.ok) { document.querySelector("main").textContent = body.error; return; }
  const rows = document.querySelector("#runs tbody");
  for (const run of body.runs) {
    const row = rows.insertRow();
    row.dataset.run = run.run_id;
    const link = document.createElement("a");
    link.href = `/runs/${encodeURIComponent(run.run_id)}`;
    link.textContent = run.run_id;
    row.insertCell().append(link);
    row.insertCell().textContent = run.name || "-";
    const badge = document.createElement("span");
    badge.className = `badge ${run.status}`;
    badge.textContent = run.status;
    row.insertCell().append(badge);
    row.insertCell().textContent = run.submitted_at || "-";
    row.insertCell().textContent = run.finished_at || "-";
  }
  if (body.runs.length === PAGE) {
    const older = document.getElementById("older");
    older.href = `/?before=${encodeURIComponent(body.runs[body.runs.length - 1].run_id)}`;
    older.hidden = false;
  }
}

load();
