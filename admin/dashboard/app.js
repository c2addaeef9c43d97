// herd dashboard: renders the primary's figures, streamed as server-sent
// events about once a second, and sends the actions with the admin token.
"use strict";

const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

function fmtNum(n, digits) {
  if (n === null || n === undefined) return "–";
  return n.toLocaleString("en-US", { maximumFractionDigits: digits ?? 0 });
}
function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  return v < 10 ? v.toFixed(2) + " ms" : v.toFixed(0) + " ms";
}
function fmtBytes(b) {
  if (!b) return "–";
  if (b >= 1 << 30) return (b / (1 << 30)).toFixed(2) + " GB";
  return (b / (1 << 20)).toFixed(1) + " MB";
}
function fmtUptime(s) {
  if (!s) return "–";
  if (s < 60) return Math.floor(s) + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  if (s < 172800) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d";
}

// spark draws values (nulls are gaps drawn as 0) into an inline SVG.
function spark(svg, values) {
  const w = 180, h = 32;
  const vals = values.map((v) => (v === null || v === undefined ? 0 : v));
  const hi = Math.max(1e-9, ...vals);
  // At least a minute across, so a short history is not a speck.
  const step = w / Math.max(59, vals.length - 1);
  const x0 = w - (vals.length - 1) * step;
  const pts = vals.map((v, i) => (x0 + i * step).toFixed(1) + "," + (h - 1 - (v / hi) * (h - 2)).toFixed(1)).join(" ");
  let line = svg.firstChild;
  if (!line) {
    line = document.createElementNS(SVG, "polyline");
    svg.appendChild(line);
  }
  line.setAttribute("points", pts);
}

function sparkSVG() {
  const s = document.createElementNS(SVG, "svg");
  s.setAttribute("class", "spark");
  s.setAttribute("viewBox", "0 0 180 32");
  s.setAttribute("preserveAspectRatio", "none");
  return s;
}

function token() {
  return $("#token").value.trim();
}

let actionsAllowed = false;

function setMsg(text, isError) {
  const m = $("#msg");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

async function act(path, what) {
  if (!actionsAllowed) return;
  if (!token()) {
    setMsg("enter the admin token first", true);
    return;
  }
  setMsg(what + "…", false);
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  try {
    const r = await fetch(path, { method: "POST", headers: { Authorization: "Bearer " + token() } });
    const body = await r.json().catch(() => ({ error: "HTTP " + r.status }));
    if (r.ok) setMsg(what + ": " + body.message, false);
    else setMsg(what + " failed: " + body.error, true);
  } catch (e) {
    setMsg(what + " failed: " + e, true);
  } finally {
    for (const b of document.querySelectorAll("button")) b.disabled = !actionsAllowed;
  }
}

function workerRow(id) {
  let tr = document.querySelector('#workers tr[data-worker="' + id + '"]');
  if (tr) return tr;
  tr = document.createElement("tr");
  tr.dataset.worker = id;
  for (const c of ["id", "pid", "state", "uptime", "rps", "rps-spark", "p50", "p99", "p99-spark", "inflight", "conns", "rss", "restarts", "requests", "act"]) {
    const td = document.createElement("td");
    td.className = c;
    tr.appendChild(td);
  }
  tr.querySelector(".rps-spark").appendChild(sparkSVG());
  tr.querySelector(".p99-spark").appendChild(sparkSVG());
  const b = document.createElement("button");
  b.className = "small restart";
  b.textContent = "restart";
  b.addEventListener("click", () => act("/api/workers/" + id + "/restart", "restart worker " + id));
  tr.querySelector(".act").appendChild(b);
  const body = $("#workers tbody");
  const after = [...body.children].find((r) => Number(r.dataset.worker) > id);
  body.insertBefore(tr, after || null);
  return tr;
}

function render(v) {
  $("#primary").textContent = "primary " + v.primaryPid + " serving " + v.addr;
  $("#total-ready").textContent = v.ready + " / " + v.want;
  $("#total-rps").textContent = fmtNum(v.totals.rps, 1);
  $("#total-lat").textContent = fmtMs(v.totals.p50Ms) + " / " + fmtMs(v.totals.p99Ms);
  $("#total-load").textContent = fmtNum(v.totals.inFlight) + " / " + fmtNum(v.totals.conns);
  $("#total-rss").textContent = fmtBytes(v.totals.rss);
  $("#total-restarts").textContent = fmtNum(v.totals.restarts);
  $("#total-requests").textContent = fmtNum(v.totals.requests);
  $("#total-backlog").textContent = v.backlog.known ? v.backlog.queued + " / " + v.backlog.limit : "–";
  spark($("#spark-rps"), v.rpsHistory);
  spark($("#spark-p99"), v.p99History);

  actionsAllowed = v.actions.allowed;
  for (const b of document.querySelectorAll("button")) b.disabled = !actionsAllowed;
  if (!actionsAllowed && !$("#msg").textContent) setMsg(v.actions.why, true);
  if (v.actions.tokenPath) $("#token").placeholder = "in " + v.actions.tokenPath;

  const seen = new Set();
  for (const w of v.workers) {
    seen.add(String(w.id));
    const tr = workerRow(w.id);
    const cell = (c) => tr.querySelector("." + c);
    cell("id").textContent = w.id;
    cell("pid").textContent = w.pid || "–";
    const st = cell("state");
    st.textContent = w.state + (w.stale ? " (stale)" : "");
    st.className = "state state-" + w.state + (w.stale ? " stale" : "");
    cell("uptime").textContent = fmtUptime(w.uptimeS);
    cell("rps").textContent = fmtNum(w.rps, 1);
    cell("p50").textContent = fmtMs(w.p50Ms);
    cell("p99").textContent = fmtMs(w.p99Ms);
    cell("inflight").textContent = fmtNum(w.inFlight);
    cell("conns").textContent = fmtNum(w.conns);
    cell("rss").textContent = fmtBytes(w.rss);
    cell("restarts").textContent = fmtNum(w.restarts);
    cell("restarts").title = Object.entries(w.restartsByReason).filter(([, n]) => n > 0).map(([r, n]) => r + ": " + n).join(", ");
    cell("requests").textContent = fmtNum(w.requests);
    spark(cell("rps-spark").firstChild, w.rpsHistory);
    spark(cell("p99-spark").firstChild, w.p99History);
  }
  for (const tr of [...document.querySelectorAll("#workers tbody tr")]) {
    if (!seen.has(tr.dataset.worker)) tr.remove();
  }

  const ol = $("#events");
  ol.replaceChildren(...(v.events || []).map((e) => {
    const li = document.createElement("li");
    li.className = "kind-" + e.kind;
    const t = document.createElement("time");
    t.textContent = new Date(e.time).toLocaleTimeString();
    li.appendChild(t);
    const who = e.worker ? "worker " + e.worker + (e.pid ? " (pid " + e.pid + ")" : "") + ": " : "";
    li.appendChild(document.createTextNode(who + e.text));
    return li;
  }));
}

function connect() {
  const q = token() ? "?token=" + encodeURIComponent(token()) : "";
  const es = new EventSource("/api/stream" + q);
  es.addEventListener("view", (ev) => {
    $("#conn").textContent = "live";
    $("#conn").className = "badge live";
    render(JSON.parse(ev.data));
  });
  es.addEventListener("error", () => {
    $("#conn").textContent = "reconnecting…";
    $("#conn").className = "badge down";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem("herd-token", fromHash);
    history.replaceState(null, "", location.pathname);
  }
  $("#token").value = sessionStorage.getItem("herd-token") || "";
  $("#token").addEventListener("change", () => sessionStorage.setItem("herd-token", token()));
  $("#reload").addEventListener("click", () => act("/api/reload", "reload"));
  $("#scale").addEventListener("click", () => {
    const n = $("#scale-n").value;
    act("/api/scale?n=" + encodeURIComponent(n), "scale to " + n);
  });
  connect();
});
