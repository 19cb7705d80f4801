// perdure's web dashboard: polls this node's /cluster, /readyz, /dashboard/stats and the stream
// subscriptions, browses
// orchestration instances through the instances API (Durable Functions' shapes) and entities
// through the entity API. No dependencies.
"use strict";
const BASE = "/runtime/webhooks/durabletask";
const $ = (id) => document.getElementById(id);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
};
const fmtMs = (s) => (s == null ? "–" : s < 0.001 ? (s * 1e6).toFixed(0) + " µs" : s < 1 ? (s * 1e3).toFixed(1) + " ms" : s.toFixed(2) + " s");
const fmtRate = (r) => (r == null ? "–" : r >= 1000 ? (r / 1000).toFixed(1) + "k" : r.toFixed(r < 10 ? 1 : 0));

// A node with [auth] tokens answers 401 without one: the token is asked for once, kept in this
// tab's sessionStorage (never in a cookie, so other sites cannot make the browser send it) and
// sent as a Bearer token.
const TOKEN_KEY = "perdure-token";
// A link may carry the token once (`/?token=...`): it is kept and taken out of the address bar.
(() => {
  const q = new URLSearchParams(location.search);
  const t = q.get("token");
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  q.delete("token");
  const rest = q.toString();
  window.history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
})();
let asking = null;
async function askToken(why) {
  if (!asking) {
    asking = Promise.resolve().then(() => {
      const t = window.prompt(why + "\nAPI token (kept for this tab only):", "");
      if (t) sessionStorage.setItem(TOKEN_KEY, t.trim());
      return Boolean(t);
    }).finally(() => setTimeout(() => { asking = null; }, 0));
  }
  return asking;
}

async function authedFetch(url, extra) {
  for (let attempt = 0; ; attempt++) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = Object.assign({}, extra || {}, token ? { Authorization: "Bearer " + token } : {});
    const r = await fetch(url, { cache: "no-store", headers });
    if ((r.status !== 401 && r.status !== 403) || attempt > 0) return r;
    if (r.status === 403 && !token) return r;
    sessionStorage.removeItem(TOKEN_KEY);
    const why = r.status === 401 ? "This node requires an API token." : "This token's role may not read this.";
    if (!(await askToken(why))) return r;
  }
}

async function getJson(url, headers) {
  const r = await authedFetch(url, headers);
  const body = await r.text();
  let v = null;
  try { v = body ? JSON.parse(body) : null; } catch (_) { v = body; }
  return { ok: r.ok, status: r.status, body: v, headers: r.headers };
}

// --- cluster ---------------------------------------------------------------------------------
async function refreshCluster() {
  const [c, ready] = await Promise.all([getJson("/cluster"), getJson("/readyz")]);
  const badge = $("ready");
  badge.textContent = ready.ok ? "ready" : "not ready";
  badge.className = "badge " + (ready.ok ? "up" : "down");
  if (!c.ok) return;
  const s = c.body;
  $("node").textContent = "node " + s.node_id;
  const leads = {};
  for (const p of s.partitions) if (p.leader != null) leads[p.leader] = (leads[p.leader] || 0) + 1;
  const members = s.members && s.members.length ? s.members : [{ node_id: s.node_id, http_addr: location.host, addr: "(single node)", up: true }];
  const mb = $("members").tBodies[0];
  mb.replaceChildren(...members.map((m) => el("tr", { "data-node": m.node_id },
    el("td", {}, m.node_id == s.node_id ? m.node_id + " (this)" : m.node_id),
    el("td", {}, el("a", { href: "http://" + m.http_addr + "/" }, m.http_addr)),
    el("td", {}, m.addr),
    el("td", { class: m.up ? "up" : "down", title: m.error || "" }, m.up ? "up" : "down"),
    el("td", {}, leads[m.node_id] || 0))));
  const pb = $("partitions").tBodies[0];
  pb.replaceChildren(...s.partitions.map((p) => el("tr", { "data-partition": p.partition },
    el("td", {}, p.partition),
    el("td", {}, (p.replicas || []).join(", ")),
    el("td", { class: p.leader == s.node_id ? "leader" : "" }, p.leader == null ? "none" : p.leader),
    el("td", {}, p.role),
    el("td", {}, p.term),
    el("td", {}, p.applied_index == null ? "–" : p.applied_index))));
}

// --- live stats ------------------------------------------------------------------------------
let prev = null;
const history = [];
function quantile(buckets, q) {
  // buckets: [[le, cumulative]] of one interval
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  const rank = q * total;
  let lastLe = 0, lastC = 0;
  for (const [le, c] of buckets) {
    if (c >= rank) return lastLe + (le - lastLe) * ((rank - lastC) / Math.max(1, c - lastC));
    lastLe = le; lastC = c;
  }
  return lastLe;
}
function drawSpark() {
  const cv = $("spark"), g = cv.getContext("2d");
  g.clearRect(0, 0, cv.width, cv.height);
  if (history.length < 2) return;
  const max = Math.max(1, ...history);
  g.strokeStyle = "#2f5fd0"; g.lineWidth = 2; g.beginPath();
  history.forEach((v, i) => {
    const x = (i / (60 - 1)) * cv.width, y = cv.height - 4 - (v / max) * (cv.height - 12);
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
  g.fillStyle = "#6b7385"; g.font = "11px sans-serif"; g.fillText("max " + fmtRate(max) + " ops/s (last 60 s)", 6, 12);
}
async function refreshStats() {
  const r = await getJson("/dashboard/stats");
  if (!r.ok) { $("metrics-note").textContent = "metrics are disabled on this node (metrics.enabled = false)"; return; }
  const s = r.body;
  $("led").textContent = s.partitions_led;
  $("actors").textContent = s.actors_active;
  if (prev) {
    const dt = Math.max(0.001, (s.at_ms - prev.at_ms) / 1000);
    const ok = s.operations.ok - prev.operations.ok;
    const errs = (s.operations.failed + s.operations.unavailable) - (prev.operations.failed + prev.operations.unavailable);
    const all = ok + errs + (s.operations.rejected - prev.operations.rejected);
    const rate = all / dt;
    $("ops-rate").textContent = fmtRate(rate);
    $("err-rate").textContent = fmtRate(errs / dt);
    const delta = s.latency.buckets.map(([le, c], i) => [le, c - prev.latency.buckets[i][1]]);
    $("p50").textContent = fmtMs(quantile(delta, 0.5));
    $("p99").textContent = fmtMs(quantile(delta, 0.99));
    history.push(rate); if (history.length > 60) history.shift();
    drawSpark();
    if (s.orchestrations && prev.orchestrations) orchRates(s.orchestrations, prev.orchestrations, dt);
  }
  if (s.orchestrations) orchGauges(s.orchestrations);
  if (s.remote_workers) workers(s.remote_workers);
  prev = s;
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// --- Durable Task workers (gRPC) --------------------------------------------------------------
function workers(w) {
  $("workers-count").textContent = w.workers.length;
  $("workers-pending-orch").textContent = w.pending.orchestrator;
  $("workers-pending-act").textContent = w.pending.activity;
  $("workers-pending-ent").textContent = w.pending.entity;
  $("workers-note").textContent = w.served
    ? (w.workers.length ? "" : "no worker is connected to this node (workers connected to other nodes take work from every partition too)")
    : "this node does not serve Durable Task workers (grpc.enabled = false)";
  $("workers-list").tBodies[0].replaceChildren(...w.workers.map((x) => el("tr", {},
    el("td", {}, x.session),
    el("td", {}, x.peer),
    el("td", {}, new Date(x.connected_at_ms).toLocaleTimeString()),
    el("td", {}, x.holding_orchestrations + " / " + x.holding_activities),
    el("td", {}, x.received),
    el("td", {}, x.filtered ? "yes" : "no"))));
}

// --- stream subscriptions ---------------------------------------------------------------------
// GET BASE/subscriptions answers {"subscriptions": [...]}; GET BASE/subscriptions/{name} adds the
// progress: applied, failed, dead_lettered, lag, error and per source partition the node
// consuming it, its position (checkpoint), end, lag, state and error.
function sourceOf(spec) {
  const s = spec.source || {};
  if (s.nats) return "nats " + s.nats.stream + (s.nats.subject ? " (" + s.nats.subject + ")" : "");
  if (s.kafka) return "kafka " + s.kafka.topic;
  return "?";
}
async function refreshSubscriptions() {
  const note = $("subs-note");
  const list = await getJson(BASE + "/subscriptions");
  if (!list.ok) {
    note.textContent = "subscriptions not available (GET " + BASE + "/subscriptions answered " + list.status + ")";
    return;
  }
  const subs = list.body.subscriptions || [];
  const statuses = await Promise.all(subs.map((x) => getJson(BASE + "/subscriptions/" + encodeURIComponent(x.name))));
  const rows = [], parts = [];
  subs.forEach((x, i) => {
    const st = statuses[i].ok ? statuses[i].body : x;
    const state = x.paused ? "paused" : st.error ? "error" : "running";
    rows.push(el("tr", { "data-subscription": x.name },
      el("td", {}, x.name),
      el("td", {}, sourceOf(x.spec)),
      el("td", {}, x.spec.mapping.entity + " / " + x.spec.mapping.operation),
      el("td", { class: state === "error" ? "down" : state === "running" ? "up" : "" }, state),
      el("td", {}, st.applied ?? "–"),
      el("td", {}, st.failed ?? "–"),
      el("td", {}, st.dead_lettered ?? "–"),
      el("td", {}, st.lag ?? "–"),
      el("td", { class: "muted" }, st.error || "")));
    for (const p of st.partitions || []) {
      parts.push(el("tr", {},
        el("td", {}, x.name),
        el("td", {}, p.source_partition),
        el("td", {}, p.home_partition),
        el("td", {}, p.node == null ? "none" : p.node),
        el("td", { class: p.state === "running" ? "up" : p.state === "retrying" || p.state === "stopped" ? "down" : "" }, p.state),
        el("td", {}, p.position),
        el("td", {}, p.end ?? "–"),
        el("td", {}, p.lag ?? "–"),
        el("td", {}, fmtTime(p.checkpoint_at)),
        el("td", { class: "muted" }, p.error || "")));
    }
  });
  $("subs-list").tBodies[0].replaceChildren(...rows);
  $("subs-partitions").tBodies[0].replaceChildren(...parts);
  note.textContent = subs.length ? "" : "no subscription: PUT " + BASE + "/subscriptions/{name} or `perdure sub put` creates one";
}

// --- orchestrations -------------------------------------------------------------------------
const STATUSES = ["pending", "running", "suspended", "completed", "failed", "terminated", "continued_as_new"];
function orchRates(o, p, dt) {
  const act = (x) => x.activities.completed + x.activities.failed;
  $("orch-turns-rate").textContent = fmtRate((o.turns - p.turns) / dt);
  $("orch-act-rate").textContent = fmtRate((act(o) - act(p)) / dt);
  $("orch-act-failed-rate").textContent = fmtRate((o.activities.failed - p.activities.failed) / dt);
  $("orch-started-rate").textContent = fmtRate((o.started - p.started) / dt);
}
function orchGauges(o) {
  $("orch-live").textContent = o.live;
  $("orch-work").textContent = o.work_items_pending;
  const t = $("orch-status");
  t.tHead.rows[0].replaceChildren(...STATUSES.map((st) => el("th", {}, st.replace(/_/g, " "))));
  t.tBodies[0].rows[0].replaceChildren(...STATUSES.map((st) => el("td", { "data-status": st }, o.instances[st] ?? 0)));
}

// The instances API: GET BASE/instances?top=N[&runtimeStatus=S] answers a JSON array of
// { name, instanceId, runtimeStatus, createdTime, lastUpdatedTime, input, output, customStatus },
// the next page's token in the `x-ms-continuation-token` response header (sent back as a request
// header); GET BASE/instances/{id}?showHistory=true&showHistoryOutput=true adds historyEvents.
const PAGE = 50;
const orch = { token: null, next: null, page: 1, missing: false, selected: null };
const fmtTime = (t) => (t ? String(t).replace("T", " ").replace(/\.\d+Z$/, "Z") : "–");
async function listInstances(fromStart) {
  if (fromStart) { orch.token = null; orch.page = 1; }
  const status = $("orch-filter").value;
  const url = BASE + "/instances?top=" + PAGE + (status ? "&runtimeStatus=" + encodeURIComponent(status) : "");
  const r = await getRetrying(url, orch.token ? { "x-ms-continuation-token": orch.token } : null);
  const tbody = $("orch-list").tBodies[0], note = $("orch-note");
  if (r.status === 404) {
    orch.missing = true;
    tbody.replaceChildren();
    note.textContent = "orchestrations API not available on this node (GET " + BASE + "/instances answered 404)";
    $("orch-next").disabled = true;
    return;
  }
  orch.missing = false;
  if (!r.ok || !Array.isArray(r.body)) {
    note.textContent = "error " + r.status + (r.body ? ": " + JSON.stringify(r.body) : "");
    return;
  }
  // newest first within the page
  const items = r.body.slice().sort((a, b) => String(b.createdTime || "").localeCompare(String(a.createdTime || "")));
  tbody.replaceChildren(...items.map((i) => {
    const tr = el("tr", { "data-instance": i.instanceId, onclick: () => showInstance(i.instanceId) },
      el("td", {}, i.instanceId), el("td", {}, i.name ?? ""),
      el("td", { class: "st-" + i.runtimeStatus }, i.runtimeStatus ?? ""),
      el("td", {}, fmtTime(i.createdTime)), el("td", {}, fmtTime(i.lastUpdatedTime)));
    tr.classList.toggle("sel", i.instanceId === orch.selected);
    return tr;
  }));
  const token = r.headers.get("x-ms-continuation-token");
  orch.next = token || null;
  $("orch-next").disabled = !orch.next;
  $("orch-page").textContent = "page " + orch.page;
  note.textContent = items.length ? "" : (orch.page > 1 ? "no more instances" : "no instances" + (status ? " " + status : ""));
}
function historyDetails(e) {
  const skip = new Set(["EventType", "Timestamp", "EventId", "Name"]);
  const rest = Object.fromEntries(Object.entries(e).filter(([k, v]) => !skip.has(k) && v != null));
  const text = Object.keys(rest).length ? JSON.stringify(rest) : "";
  return text.length > 300 ? text.slice(0, 300) + "…" : text;
}
async function showInstance(id) {
  orch.selected = id;
  location.hash = "instance=" + encodeURIComponent(id);
  for (const tr of $("orch-list").tBodies[0].rows) tr.classList.toggle("sel", tr.dataset.instance === id);
  const r = await getRetrying(BASE + "/instances/" + encodeURIComponent(id) + "?showHistory=true&showHistoryOutput=true");
  $("orch-title").textContent = id;
  $("orch-title").className = "";
  const hist = $("orch-history").tBodies[0];
  if (!r.ok) {
    hist.replaceChildren();
    $("orch-detail").textContent = r.status === 404 ? (orch.missing ? "(orchestrations API not available)" : "(no such instance)") : "error " + r.status + ": " + JSON.stringify(r.body);
    return;
  }
  const { historyEvents, ...status } = r.body || {};
  $("orch-detail").textContent = JSON.stringify(status, null, 2);
  hist.replaceChildren(...(historyEvents || []).map((e, n) => el("tr", {},
    el("td", {}, n), el("td", {}, e.EventType ?? ""), el("td", {}, fmtTime(e.Timestamp)),
    el("td", {}, e.EventId ?? ""), el("td", {}, e.Name ?? ""), el("td", { class: "details" }, historyDetails(e)))));
}
$("orch-form").addEventListener("submit", (ev) => { ev.preventDefault(); listInstances(true); });
$("orch-filter").addEventListener("change", () => listInstances(true));
$("orch-next").addEventListener("click", () => {
  if (!orch.next) return;
  orch.token = orch.next; orch.page += 1;
  listInstances(false);
});

// --- entity browser --------------------------------------------------------------------------
async function loadTypes() {
  const r = await getJson("/dashboard/types");
  const sel = $("entity-type");
  sel.replaceChildren(...(r.ok ? r.body.types : []).map((t) => el("option", { value: t.name }, t.name)));
}
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
// a 503 is expected for a moment while a partition changes leader: try again a few times
async function getRetrying(url, headers) {
  let r;
  for (let i = 0; i < 5; i++) {
    r = await getJson(url, headers);
    if (r.status !== 503) break;
    await sleep(500);
  }
  return r;
}
async function listEntities(type) {
  const r = await getRetrying(BASE + "/entities/" + encodeURIComponent(type) + "?top=100");
  const ul = $("entity-list");
  if (!r.ok) { ul.replaceChildren(el("li", { class: "muted" }, "error " + r.status)); return; }
  const current = /entity=[^/]+\/(.*)$/.exec(location.hash);
  const selected = current ? decodeURIComponent(current[1]) : null;
  const items = r.body.entities.map((e) => el("li", { "data-key": e.key, onclick: () => showEntity(type, e.key) }, e.key));
  for (const li of items) li.classList.toggle("sel", li.dataset.key === selected);
  ul.replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "no " + type + " entities")]));
  if (r.body.continuation) ul.append(el("li", { class: "muted" }, "… more"));
}
async function showEntity(type, key) {
  location.hash = "entity=" + encodeURIComponent(type) + "/" + encodeURIComponent(key);
  for (const li of $("entity-list").children) li.classList.toggle("sel", li.dataset.key === key);
  const r = await getRetrying(BASE + "/entities/" + encodeURIComponent(type) + "/" + encodeURIComponent(key));
  $("entity-title").textContent = type + "/" + key;
  $("entity-title").className = "";
  $("entity-state").textContent = r.ok ? JSON.stringify(r.body, null, 2) : (r.status === 404 ? "(no state)" : "error " + r.status + ": " + JSON.stringify(r.body));
}
$("entity-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const type = $("entity-type").value, key = $("entity-key").value.trim();
  listEntities(type);
  if (key) showEntity(type, key);
});
$("entity-type").addEventListener("change", () => listEntities($("entity-type").value));

async function start() {
  await loadTypes();
  const inst = /^#instance=(.*)$/.exec(location.hash);
  const instances = listInstances(true).then(() => (inst ? showInstance(decodeURIComponent(inst[1])) : null));
  const m = /entity=([^/]+)\/(.*)$/.exec(location.hash);
  if (m) {
    const type = decodeURIComponent(m[1]), key = decodeURIComponent(m[2]);
    $("entity-type").value = type; $("entity-key").value = key;
    await Promise.all([listEntities(type), showEntity(type, key)]);
  } else if ($("entity-type").value) {
    await listEntities($("entity-type").value);
  }
  await instances.catch((e) => console.warn(e));
  const tick = (f, ms) => { const run = () => f().catch((e) => console.warn(e)); run(); setInterval(run, ms); };
  tick(refreshCluster, 2000);
  tick(refreshStats, 1000);
  tick(refreshSubscriptions, 5000);
  // the first page of instances follows along, unless paging or the API is missing
  setInterval(() => { if (orch.page === 1 && !orch.missing) listInstances(true).catch((e) => console.warn(e)); }, 5000);
}
start();
