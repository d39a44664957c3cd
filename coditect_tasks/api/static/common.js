"use strict";
// What every console page shares: reading the API, times as people read them, small elements.

async function getJSON(path, options) {
  const reply = await fetch(path, options);
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.error || reply.statusText);
  return body;
}

// "12 s ago", "3 min ago", "in 2 h": the exact time goes in the element's title (on hover).
function ago(iso) {
  if (!iso) return "-";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  const span = Math.abs(seconds);
  const text = span < 60 ? `${Math.round(span)} s` : span < 3600 ? `${Math.round(span / 60)} min`
    : span < 86400 ? `${Math.round(span / 3600)} h` : `${Math.round(span / 86400)} d`;
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

function timeCell(iso) {
  const node = document.createElement("time");
  node.textContent = ago(iso);
  if (iso) { node.dateTime = iso; node.title = new Date(iso).toLocaleString(); }
  return node;
}

// Every <time> element's relative text, kept current between fetches.
setInterval(() => {
  for (const node of document.querySelectorAll("time[datetime]")) node.textContent = ago(node.dateTime);
}, 5000);

function duration(start, end) {
  if (!start) return "-";
  const seconds = ((end ? Date.parse(end) : Date.now()) - Date.parse(start)) / 1000;
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function badge(status) {
  const span = document.createElement("span");
  span.className = `badge ${status}`;
  span.textContent = status;
  return span;
}

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function cell(row, content) {
  const td = row.insertCell();
  if (content instanceof Node) td.append(content); else td.textContent = content ?? "-";
  return td;
}

// Call `load` now and again `seconds` after each time it ends (so a slow server is never asked
// twice at once); a failure shows in #message and the next try goes on.
function every(seconds, load) {
  const tick = async () => {
    try {
      await load();
      document.getElementById("message").textContent = "";
    } catch (error) {
      document.getElementById("message").textContent = error.message;
    }
    setTimeout(tick, seconds * 1000);
  };
  tick();
}
