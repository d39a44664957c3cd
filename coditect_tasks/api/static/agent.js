"use strict";
// One agent: /api/agents/<name> read every 2 s.
const agentName = decodeURIComponent(location.pathname.split("/").pop());

function seconds(epoch) {
  return new Date(epoch * 1000).toISOString();
}

async function load() {
  const agent = await getJSON(`/api/agents/${encodeURIComponent(agentName)}`);
  document.title = `coditect-tasks: ${agent.name}`;
  document.getElementById("title").textContent = agent.name;
  const breaker = document.getElementById("breaker");
  breaker.textContent = `breaker ${agent.breaker}`;
  breaker.className = `badge ${agent.breaker === "closed" ? "succeeded" : "failed"}`;
  const facts = [
    `queue ${agent.queue}: ${agent.queue_depth} waiting`, `demand ${agent.demand}`, `upcoming ${agent.upcoming}`,
    `${agent.slots} slots`, agent.fallback ? `fallback ${agent.fallback}` : "no fallback",
  ];
  if (agent.description) facts.unshift(agent.description);
  document.getElementById("summary").replaceChildren(...facts.map((text) => {
    const span = document.createElement("span");
    span.textContent = text;
    return span;
  }));
  const workers = document.querySelector("#workers tbody");
  workers.replaceChildren();
  for (const w of agent.workers) {
    const row = workers.insertRow();
    row.dataset.worker = w.hostname;
    cell(row, w.hostname);
    cell(row, String(w.pid));
    cell(row, String(w.concurrency));
    cell(row, timeCell(seconds(w.started_at)));
    cell(row, timeCell(seconds(w.last_seen)));
  }
  if (!agent.workers.length) cell(workers.insertRow(), "no live worker serves this agent").colSpan = 5;
  const nodes = document.querySelector("#nodes tbody");
  nodes.replaceChildren();
  for (const n of agent.nodes) {
    const row = nodes.insertRow();
    cell(row, link(`/runs/${encodeURIComponent(n.run_id)}`, n.run_id.slice(0, 12)));
    cell(row, n.node_id);
    cell(row, badge(n.status));
    cell(row, String(n.attempts));
    cell(row, duration(n.started_at, n.finished_at));
    cell(row, timeCell(n.finished_at));
    cell(row, n.worker || "-");
    cell(row, n.error ? n.error.split("\n")[0].slice(0, 120) : "").title = n.error || "";
  }
  if (!agent.nodes.length) cell(nodes.insertRow(), "no recorded node yet").colSpan = 8;
  document.body.dataset.ready = "true";
}

every(2, load);
