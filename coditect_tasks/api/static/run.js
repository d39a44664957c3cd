"use strict";
// The live page of one run: its DAG drawn in layers (left to right), every node coloured by its
// state, kept current by the run's event stream; a click shows a node's attempts, worker, times,
// error and result. Every node element carries data-node and data-status.

const SVG = "http://www.w3.org/2000/svg";
const BOX = { w: 150, h: 42, gapX: 48, gapY: 14, col: 20, pad: 16 };
const ROWS = 30; // a layer taller than this wraps into several columns
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
// Transitions that put a node back in line for another attempt.
const AS_STATUS = {
  retrying: "queued", requeued: "queued", rerouted: "queued", throttled: "queued", approved: "waiting", rejected: "waiting",
};

const runId = decodeURIComponent(location.pathname.split("/").pop());
const flower = document.querySelector('meta[name="flower-url"]').content.replace(/\/$/, "");
let doc = null;
let selected = null;
const boxes = new Map();
const specs = new Map(); // node id -> its spec in the DAG (what it does)

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (parent) parent.append(node);
  return node;
}

// Longest-path layers, then one barycentre sweep so edges cross less.
function layout(dag) {
  const after = new Map(dag.nodes.map((n) => [n.id, n.after || []]));
  const succs = new Map(dag.nodes.map((n) => [n.id, []]));
  const waiting = new Map();
  for (const [id, preds] of after) {
    waiting.set(id, preds.length);
    for (const p of preds) succs.get(p).push(id);
  }
  const depth = new Map();
  const ready = dag.nodes.filter((n) => !after.get(n.id).length).map((n) => n.id);
  while (ready.length) {
    const id = ready.shift();
    depth.set(id, Math.max(0, ...after.get(id).map((p) => depth.get(p) + 1)));
    for (const s of succs.get(id)) {
      waiting.set(s, waiting.get(s) - 1);
      if (waiting.get(s) === 0) ready.push(s);
    }
  }
  const layers = [];
  for (const n of dag.nodes) (layers[depth.get(n.id)] ||= []).push(n.id);
  const rank = new Map();
  layers.forEach((layer, i) => {
    if (i > 0) {
      const centre = (id) => {
        const ps = after.get(id).filter((p) => depth.get(p) === i - 1);
        return ps.length ? ps.reduce((sum, p) => sum + rank.get(p), 0) / ps.length : 0;
      };
      layer.sort((a, b) => centre(a) - centre(b));
    }
    layer.forEach((id, k) => rank.set(id, k));
  });
  const place = new Map();
  let x = BOX.pad;
  let height = 0;
  for (const layer of layers) {
    const columns = Math.ceil(layer.length / ROWS);
    layer.forEach((id, k) => {
      const column = Math.floor(k / ROWS);
      const row = k % ROWS;
      place.set(id, { x: x + column * (BOX.w + BOX.col), y: BOX.pad + row * (BOX.h + BOX.gapY) });
    });
    height = Math.max(height, Math.min(layer.length, ROWS) * (BOX.h + BOX.gapY));
    x += columns * (BOX.w + BOX.col) - BOX.col + BOX.gapX;
  }
  return { place, after, width: x - BOX.gapX + BOX.pad, height: height + 2 * BOX.pad };
}

function label(text, max) {
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

function fanout(spec) {
  if (!spec.foreach) return "";
  if (Array.isArray(spec.foreach)) return ` ×${spec.foreach.length}`;
  const result = doc.nodes[spec.id] && doc.nodes[spec.id].result;
  return Array.isArray(result) ? ` ×${result.length}` : " ×n";
}

function draw(dag) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const { place, after, width, height } = layout(dag);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const edges = el("g", { class: "edges" }, svg);
  for (const [id, preds] of after) {
    const to = place.get(id);
    for (const p of preds) {
      const from = place.get(p);
      const x1 = from.x + BOX.w, y1 = from.y + BOX.h / 2, x2 = to.x, y2 = to.y + BOX.h / 2;
      const bend = Math.max(30, (x2 - x1) / 2);
      el("path", { class: "edge", d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}` }, edges);
    }
  }
  const nodes = el("g", { class: "nodes" }, svg);
  for (const spec of dag.nodes) {
    const at = place.get(spec.id);
    const state = doc.nodes[spec.id] || { status: "pending" };
    const g = el("g", { class: "node", "data-node": spec.id, "data-status": state.status, transform: `translate(${at.x},${at.y})` }, nodes);
    if (spec.foreach) {
      // a foreach node runs once per item: drawn as a stack, its item count beside the agent
      el("rect", { class: "stack", x: 6, y: -6, width: BOX.w, height: BOX.h, rx: 6 }, g);
      el("rect", { class: "stack", x: 3, y: -3, width: BOX.w, height: BOX.h, rx: 6 }, g);
    }
    el("rect", { width: BOX.w, height: BOX.h }, g);
    el("text", { x: 8, y: 17 }, g).textContent = label(spec.id, 20);
    el("text", { x: 8, y: 33, class: "agent" }, g).textContent = label(state.agent || kindOf(spec), 16) + fanout(spec);
    specs.set(spec.id, spec);
    g.addEventListener("click", () => select(spec.id));
    boxes.set(spec.id, g);
  }
}

// What a node does: its agent, or what a waiting node waits for.
function kindOf(spec) {
  if (spec.wait) return `event ${spec.wait.event}`;
  if (spec.approval) return `approval ×${spec.approval.approvers || 1}`;
  if (spec.sleep) return "sleep";
  return spec.agent;
}

// Approve or reject a waiting approval node, as the name the decider typed (kept for next time).
// One form per node, kept across re-renders of the details, so an update never loses what is typed.
const forms = new Map();
function decisionForm(nodeId) {
  if (forms.has(nodeId)) return forms.get(nodeId);
  const form = document.createElement("form");
  forms.set(nodeId, form);
  form.id = "decide";
  const who = Object.assign(document.createElement("input"), { name: "by", placeholder: "your name", required: true });
  who.value = localStorage.getItem("coditect-approver") || "";
  const comment = Object.assign(document.createElement("input"), { name: "comment", placeholder: "comment" });
  form.append(who, comment);
  for (const [text, reject] of [["Approve", false], ["Reject", true]]) {
    const button = Object.assign(document.createElement("button"), { type: "button", textContent: text });
    button.dataset.decision = reject ? "reject" : "approve";
    button.onclick = async () => {
      if (!who.reportValidity()) return;
      localStorage.setItem("coditect-approver", who.value);
      try {
        await getJSON(`/api/runs/${encodeURIComponent(runId)}/nodes/${encodeURIComponent(nodeId)}/approve`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ by: who.value, reject, comment: comment.value }),
        });
        await refresh();
      } catch (error) {
        document.getElementById("message").textContent = error.message;
      }
    };
    form.append(button);
  }
  return form;
}

// A node's streamed output (call.stream), followed once its details are open: text chunks run on,
// JSON ones a line each; a rewind (a retried attempt) starts it over. One box per node, kept
// across re-renders; only the open node's stream stays connected.
const outputs = new Map();
function outputOf(nodeId) {
  for (const [id, box] of outputs) {
    if (id !== nodeId && box.source) { box.source.close(); box.source = null; }
  }
  let box = outputs.get(nodeId);
  if (!box) {
    const holder = document.createElement("div");
    holder.id = "output";
    holder.hidden = true;
    const title = document.createElement("dt");
    title.textContent = "output";
    const text = document.createElement("pre");
    holder.append(title, text);
    box = { holder, text, source: null, ended: false };
    outputs.set(nodeId, box);
  }
  if (!box.source && !box.ended) {
    box.text.textContent = ""; // the stream starts from the node's first chunk again
    box.holder.dataset.chunks = "0";
    box.source = new EventSource(`/api/runs/${encodeURIComponent(runId)}/nodes/${encodeURIComponent(nodeId)}/stream`);
    box.source.addEventListener("end", () => { box.source.close(); box.source = null; box.ended = true; });
    box.source.onmessage = (message) => {
      const chunk = JSON.parse(message.data);
      if (chunk.rewind) {
        box.text.textContent = "";
        box.holder.dataset.attempt = chunk.attempt;
      } else {
        box.text.textContent += typeof chunk.data === "string" ? chunk.data : JSON.stringify(chunk.data) + "\n";
      }
      box.holder.dataset.chunks = String(Number(box.holder.dataset.chunks || 0) + (chunk.rewind ? 0 : 1));
      box.holder.hidden = false;
      box.text.scrollTop = box.text.scrollHeight;
    };
  }
  return box.holder;
}

function setStatus(nodeId, status) {
  const g = boxes.get(nodeId);
  if (g) g.setAttribute("data-status", status);
}

function header() {
  document.title = `coditect-tasks: ${doc.name || runId}`;
  document.getElementById("title").textContent = `${doc.name || "run"} · ${runId}`;
  const badge = document.getElementById("status");
  badge.textContent = doc.status;
  badge.className = `badge ${doc.status}`;
  const counts = {};
  for (const node of Object.values(doc.nodes)) counts[node.status] = (counts[node.status] || 0) + 1;
  const box = document.getElementById("counts");
  box.replaceChildren(...Object.entries(counts).map(([status, n]) => {
    const span = document.createElement("span");
    span.textContent = `${status} ${n}`;
    return span;
  }));
  const parent = document.getElementById("parent");
  parent.replaceChildren();
  if (doc.parent_run_id) {
    const link = document.createElement("a");
    link.href = `/runs/${encodeURIComponent(doc.parent_run_id)}`;
    link.textContent = (doc.parent_node ? `spawned by ${doc.parent_node} of ` : "retry of ") + doc.parent_run_id.slice(0, 8);
    parent.append(link);
  }
  document.getElementById("cancel").disabled = TERMINAL.has(doc.status);
  document.getElementById("retry").disabled = !(doc.status === "failed" || doc.status === "cancelled");
}

function field(list, name, value) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  if (value instanceof Node) dd.append(value); else dd.textContent = value ?? "-";
  list.append(dt, dd);
}

function pre(text) {
  const block = document.createElement("pre");
  block.textContent = text;
  return block;
}

function seconds(start, end) {
  if (!start || !end) return "-";
  return `${((Date.parse(end) - Date.parse(start)) / 1000).toFixed(3)} s`;
}

function showDetails() {
  const panel = document.getElementById("details");
  if (!selected) return;
  const node = doc.nodes[selected];
  const title = document.createElement("h2");
  title.textContent = selected;
  const list = document.createElement("dl");
  field(list, "status", node.status);
  if (node.throttled) field(list, "waits for limit", node.throttled.key ? `${node.throttled.limit} (${node.throttled.key})` : node.throttled.limit);
  field(list, node.agent ? "agent" : "waits for", node.agent || kindOf(specs.get(selected) || {}));
  if (node.awaits) field(list, "event", node.awaits.key ? `${node.awaits.event} (${node.awaits.key})` : node.awaits.event);
  for (const d of node.approvals || node.result?.approved_by || []) field(list, d.decision === "approve" ? "approved by" : "rejected by", `${d.by}${d.comment ? ": " + d.comment : ""}`);
  if (node.agent) { // a waiting node has no attempts and no worker
    field(list, "attempts", node.attempts === 0 && node.status === "succeeded" ? "0 (result kept from the parent run)" : node.attempts);
    let worker = node.worker;
    if (worker && flower) {
      worker = document.createElement("a");
      worker.href = `${flower}/worker/${encodeURIComponent(node.worker)}`;
      worker.textContent = node.worker;
    }
    field(list, "worker", worker);
    field(list, "started", node.started_at);
    field(list, "finished", node.finished_at);
    field(list, "duration", seconds(node.started_at, node.finished_at));
  } else {
    field(list, "finished", node.finished_at);
  }
  if (node.children) {
    const runs = document.createElement("span");
    for (const id of node.children) {
      const link = document.createElement("a");
      link.href = `/runs/${encodeURIComponent(id)}`;
      link.textContent = id.slice(0, 8);
      runs.append(link, " ");
    }
    field(list, node.status === "waiting" ? "waits for child runs" : "child runs", runs);
  }
  if (node.error) field(list, node.status === "succeeded" ? "error of an earlier attempt" : "error", pre(node.error));
  if (node.result !== null && node.result !== undefined) field(list, "result", pre(JSON.stringify(node.result, null, 2)));
  panel.replaceChildren(title, list);
  if (node.agent) panel.append(outputOf(selected));
  if (node.status === "waiting" && specs.get(selected)?.approval) panel.append(decisionForm(selected));
}

async function select(nodeId) {
  if (selected) boxes.get(selected).classList.remove("selected");
  selected = nodeId;
  boxes.get(nodeId).classList.add("selected");
  showDetails();
  await refresh(); // results are not in the event stream: read the node's latest
}

// Read the run document again. Reads can overlap (a click, an approval, the run's end), and
// transitions arrive while one is on its way: only the newest read is shown, and the transitions
// that arrived during it are applied to it again, so an older document never hides a newer state
// (the stream is in order: one that is older than the document is followed by the newer ones).
let reads = 0;
const during = new Set(); // the transitions arriving while each read is on its way
async function refresh() {
  const mine = ++reads;
  const arrived = [];
  during.add(arrived);
  let fresh;
  try {
    fresh = await getJSON(`/api/runs/${encodeURIComponent(runId)}`);
  } finally {
    during.delete(arrived);
  }
  if (mine !== reads) return; // a newer read is on its way
  doc = fresh;
  for (const event of arrived) applyTo(event);
  for (const [id, node] of Object.entries(doc.nodes)) setStatus(id, node.status);
  header();
  showDetails();
}

function apply(event) {
  for (const arrived of during) arrived.push(event);
  applyTo(event);
}

function applyTo(event) {
  if (event.node === null) {
    doc.status = event.status;
  } else {
    const node = doc.nodes[event.node];
    if (!node) return;
    node.status = AS_STATUS[event.status] || event.status;
    if (event.attempt !== null && event.attempt > 0) node.attempts = Math.max(node.attempts, event.attempt);
    if (event.worker) node.worker = event.worker;
    if (event.status === "throttled") node.throttled = { limit: event.detail.limit, key: event.detail.key || "" };
    else if (event.status === "queued" || event.status === "running") delete node.throttled;
    if (event.status === "running") { node.started_at = event.ts; node.finished_at = null; node.error = null; }
    if (event.status === "succeeded" || event.status === "failed") node.finished_at = event.ts;
    if (event.error) node.error = event.error;
    setStatus(event.node, node.status);
  }
}

function listen() {
  const stream = new EventSource(`/api/runs/${encodeURIComponent(runId)}/events`);
  let pending = false;
  stream.onmessage = (message) => {
    const event = JSON.parse(message.data);
    apply(event);
    if (!pending) { // redraw the header and panel at most once a frame
      pending = true;
      requestAnimationFrame(() => { pending = false; header(); showDetails(); });
    }
    if (event.node === null && TERMINAL.has(event.status)) {
      stream.close();
      refresh();
    }
  };
}

async function post(action, button) {
  button.disabled = true; // one click, one request: a second retry would start a second run
  try {
    const body = await getJSON(`/api/runs/${encodeURIComponent(runId)}/${action}`, { method: "POST" });
    if (action === "retry") location.assign(`/runs/${encodeURIComponent(body.run_id)}`);
    else { doc = body; header(); }
  } catch (error) {
    document.getElementById("message").textContent = error.message;
    header();
  }
}

async function main() {
  try {
    const [dag, run] = await Promise.all([
      getJSON(`/api/runs/${encodeURIComponent(runId)}/dag`),
      getJSON(`/api/runs/${encodeURIComponent(runId)}`),
    ]);
    doc = run;
    draw(dag);
    header();
    document.body.dataset.ready = "true";
    for (const action of ["cancel", "retry"]) {
      const button = document.getElementById(action);
      button.onclick = () => post(action, button);
    }
    if (!TERMINAL.has(doc.status)) listen();
  } catch (error) {
    document.querySelector("main").textContent = error.message;
  }
}

main();
