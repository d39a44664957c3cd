"use strict";
// The overview: /api/overview read every 2 s; nothing on it needs a reload.
const SVG = "http://www.w3.org/2000/svg";

// Stacked bars per minute (succeeded below, failed above), scaled to the busiest minute.
function chart(svg, minutes) {
  const width = 600, height = 90, gap = 1;
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 14}`);
  svg.replaceChildren();
  const top = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed));
  const bar = width / minutes.length;
  minutes.forEach((m, i) => {
    let y = height;
    for (const [count, kind] of [[m.succeeded, "ok"], [m.failed, "bad"]]) {
      if (!count) continue;
      const h = Math.max(1, (count / top) * height);
      y -= h;
      const rect = document.createElementNS(SVG, "rect");
      Object.entries({ x: i * bar, y, width: bar - gap, height: h, class: kind }).forEach(([k, v]) => rect.setAttribute(k, v));
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = `${m.minute} UTC: ${m.succeeded} succeeded, ${m.failed} failed`;
      rect.append(tip);
      svg.append(rect);
    }
  });
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", 0); label.setAttribute("y", height + 12); label.setAttribute("class", "axis");
  const total = minutes.reduce((sum, m) => sum + m.succeeded + m.failed, 0);
  label.textContent = `peak ${top === 1 && total === 0 ? 0 : top}/min · ${total} in the hour`;
  svg.append(label);
  svg.setAttribute("aria-label", label.textContent);
}

function agentRow(body, name, agent) {
  const row = body.insertRow();
  row.dataset.agent = name;
  const hosts = agent.workers.map((w) => w.hostname).join(", ");
  cell(row, link(`/agents/${encodeURIComponent(name)}`, name));
  cell(row, String(agent.workers.length)).title = hosts;
  cell(row, String(agent.slots));
  cell(row, String(agent.queue_depth));
  cell(row, String(agent.demand));
  cell(row, String(agent.upcoming));
  cell(row, agent.oldest_queued ? timeCell(agent.oldest_queued) : "-");
  cell(row, badge(agent.breaker === "closed" ? "closed" : agent.breaker)).dataset.breaker = agent.breaker;
  if (!agent.workers.length) row.classList.add("idle");
}

async function load() {
  const view = await getJSON("/api/overview");
  for (const status of ["running", "succeeded", "failed", "cancelled"]) {
    document.getElementById(`count-${status}`).textContent = view.runs[status] ?? 0;
  }
  document.getElementById("waiting").textContent = Object.values(view.waiting).reduce((a, b) => a + b, 0);
  document.getElementById("waiting").parentElement.title = Object.entries(view.waiting).map(([k, v]) => `${k}: ${v}`).join(", ");
  document.getElementById("lag").textContent = view.recorder.lag_entries;
  chart(document.getElementById("chart-runs"), view.throughput.runs);
  chart(document.getElementById("chart-nodes"), view.throughput.nodes);
  const agents = document.querySelector("#agents tbody");
  agents.replaceChildren();
  for (const [name, agent] of Object.entries(view.agents)) agentRow(agents, name, agent);
  const limits = document.querySelector("#limits tbody");
  limits.replaceChildren();
  for (const limit of view.limits) {
    const row = limits.insertRow();
    const d = limit.definition || {};
    const parts = [d.concurrency ? `concurrency ${d.concurrency}` : "", d.rate ? `${d.rate} per ${d.per} s` : "", d.key ? `per ${d.key}` : ""];
    cell(row, limit.name);
    cell(row, parts.filter(Boolean).join(", "));
    cell(row, String(limit.in_use));
    cell(row, String(limit.waiting));
    cell(row, limit.waiting ? `${limit.oldest_wait.toFixed(1)} s` : "-");
  }
  if (!view.limits.length) cell(limits.insertRow(), "no limits declared").colSpan = 5;
  const schedules = document.querySelector("#schedules tbody");
  schedules.replaceChildren();
  for (const item of view.schedules) {
    const row = schedules.insertRow();
    row.dataset.schedule = item.name;
    cell(row, item.name);
    cell(row, item.when);
    cell(row, item.overlap);
    cell(row, item.paused ? badge("paused") : timeCell(item.next_fire));
    cell(row, item.last_run ? link(`/runs/${item.last_run}`, item.last_run.slice(0, 8)) : "-");
  }
  if (!view.schedules.length) cell(schedules.insertRow(), "no schedules (coditect-tasks schedule add)").colSpan = 5;
  document.getElementById("updated").textContent = `updated ${new Date(view.generated_at).toLocaleTimeString()}`;
  document.body.dataset.ready = "true";
}

every(2, load);
