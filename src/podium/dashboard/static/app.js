// podium dashboard: one page, no build step. It reads the public API with the API's own token (kept in
// sessionStorage, sent as X-Client-Token, never put in a URL) and stays live on the API's event stream.
"use strict";

const KIND = document.querySelector('meta[name="podium-kind"]').content;
const TOKEN_KEY = "podium-token:" + location.host;
const main = document.getElementById("main");

// --- small helpers ------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const badge = (text) => h("span", { class: "badge " + String(text).replace(/\s+/g, "_"), "data-testid": "badge" }, text);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 3500);
}
function ago(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return Math.round(seconds) + " s ago";
  if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
  return Math.round(seconds / 3600) + " h ago";
}
function duration(start, end) {
  if (!start) return "";
  const ms = (end ? Date.parse(end) : Date.now()) - Date.parse(start);
  return ms >= 0 ? (ms / 1000).toFixed(ms < 10000 ? 2 : 0) + " s" : "";
}

// --- the API ------------------------------------------------------------------------------------

const token = () => sessionStorage.getItem(TOKEN_KEY);
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}
// A 401 signs out only the token it refused: a late answer to a request sent with an earlier token (one the
// server refused, or one signed out of) must not sign out the token entered since.
const refused = (sent) => { if (token() === sent) signIn("The server refused the token."); };
async function api(path, options = {}) {
  const sent = token() || "";
  const headers = { "X-Client-Token": sent, ...(options.headers || {}) };
  const res = await fetch(path, { ...options, headers, cache: "no-store" });
  if (res.status === 401) { refused(sent); throw new ApiError(401, "unauthorized"); }
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    let detail = typeof body === "object" ? (body.detail || body.error || JSON.stringify(body)) : body;
    if (Array.isArray(detail)) // FastAPI's validation errors: say where, and what
      detail = detail.map((d) => [(d.loc || []).filter((p) => p !== "body").join("."), d.msg].filter(Boolean).join(": ")).join("; ");
    throw new ApiError(res.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}
async function act(label, path, options = { method: "POST" }) {
  try { await api(path, options); toast(label + ": done"); refreshAll(); }
  catch (e) { if (e.status !== 401) toast(label + " failed: " + e.message); }
}

// Server-sent events over fetch (EventSource cannot send a header, and the token must not be in the URL).
async function listen(path, onEvent) {
  const live = document.getElementById("live");
  const mine = token(); // a stream lives as long as the sign-in that opened it
  while (mine && token() === mine) {
    try {
      const res = await fetch(path, { headers: { "X-Client-Token": mine, Accept: "text/event-stream" }, cache: "no-store" });
      if (res.status === 401) { refused(mine); return; }
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      live.textContent = "live"; live.className = "badge on";
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (token() !== mine) { reader.cancel(); return; }
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let type = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) onEvent(type, JSON.parse(data));
        }
      }
    } catch (e) { /* reconnect below */ }
    if (token() !== mine) return;
    live.textContent = "reconnecting"; live.className = "badge off";
    await sleep(2000);
  }
}

// Coalesced refreshes: many events in a burst cause one read per section.
const pending = new Map();
function soon(key, fn, ms = 120) {
  if (pending.has(key)) return;
  pending.set(key, setTimeout(() => { pending.delete(key); fn().catch((e) => e.status === 401 || console.error(e)); }, ms));
}
let refreshAll = () => {};

// --- sign-in ------------------------------------------------------------------------------------

function signIn(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  main.hidden = true;
  document.getElementById("logout").hidden = true;
  const form = document.getElementById("login");
  form.hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("token").focus();
}
document.getElementById("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  start();
});
document.getElementById("logout").addEventListener("click", () => signIn("Signed out."));

// --- workcell -----------------------------------------------------------------------------------

const NODE_FLAGS = ["disconnected", "errored", "locked", "paused", "busy", "initializing"];
function nodeCondition(node) {
  const s = node.status;
  if (!s) return "unknown";
  for (const f of NODE_FLAGS) if (s[f]) return f;
  return s.ready ? "ready" : "not ready";
}

function workcellPage() {
  const nodes = h("div", { class: "grid", id: "nodes" });
  const queue = h("div", { class: "grid", id: "workflows" });
  const archived = h("div", { class: "grid", id: "archived" });
  const locations = h("div", { class: "grid", id: "locations" });
  main.replaceChildren(
    h("section", {}, h("h2", {}, "Nodes"), nodes),
    h("section", {}, h("h2", {}, "Queue and active workflows"), queue),
    h("section", {}, h("h2", {}, "Locations and resources"), locations),
    h("section", {}, h("h2", {}, "Submit a workflow"), submitForm()),
    h("section", {}, h("h2", {}, "Recently ended"), archived),
  );

  async function loadNodes() {
    const found = await api("/nodes");
    nodes.replaceChildren(...Object.entries(found).sort().map(([name, node]) => nodeCard(name, node)));
  }
  async function loadWorkflows() {
    const [q, done] = await Promise.all([api("/workflows/queue"), api("/workflows/archived?number=10")]);
    queue.replaceChildren(...(q.length ? q.map(workflowCard) : [h("p", { class: "muted" }, "Nothing queued.")]));
    const ended = Object.values(done).sort((a, b) => (a.workflow_id < b.workflow_id ? 1 : -1));
    archived.replaceChildren(...(ended.length ? ended.map(workflowCard) : [h("p", { class: "muted" }, "None yet.")]));
  }
  async function loadLocations() {
    const [locs, resources] = await Promise.all([api("/locations"), api("/resources")]);
    locations.replaceChildren(...locs.map((loc) => locationCard(loc, resources)));
  }
  refreshAll = () => { soon("nodes", loadNodes); soon("workflows", loadWorkflows); soon("locations", loadLocations); };
  refreshAll();
  listen("/events", (type) => {
    if (type === "workflow") soon("workflows", loadWorkflows, 60);
    else if (type === "nodes") soon("nodes", loadNodes, 60);
    else if (type === "changed") { soon("workflows", loadWorkflows); soon("locations", loadLocations); soon("nodes", loadNodes, 400); }
    else if (type === "resync" || type === "hello") refreshAll();
  });
}

function nodeCard(name, node) {
  const cond = nodeCondition(node);
  const running = (node.status && node.status.running_actions) || [];
  const send = (cmd) => () => act(`${cmd} ${name}`, `/admin/${cmd}/${encodeURIComponent(name)}`);
  const offers = new Set(((node.info && node.info.capabilities && node.info.capabilities.admin_commands) || []));
  const button = (cmd, cls) => h("button", { type: "button", class: cls, onclick: send(cmd), "data-testid": `node-${cmd}`,
    title: offers.size && !offers.has(cmd) ? "the node does not list this command" : null }, cmd);
  return h("div", { class: "card", "data-testid": "node", "data-node": name, "data-condition": cond },
    h("h3", {}, name, badge(cond)),
    h("div", { class: "muted" }, (node.status && node.status.description) || ""),
    running.length ? h("div", {}, "running: ", running.join(", ")) : null,
    node.status && node.status.errors && node.status.errors.length
      ? h("div", { class: "error" }, node.status.errors.map((e) => e.message || JSON.stringify(e)).join("; ")) : null,
    h("div", { class: "actions" }, button("pause"), button("resume"), button("reset", "danger"), button("lock"), button("unlock")));
}

function workflowCard(wf) {
  const s = wf.status || {};
  const state = s.completed ? "completed" : s.failed ? "failed" : s.cancelled ? "cancelled" : s.paused ? "paused" : s.running ? "running" : "queued";
  const total = wf.steps.length;
  const done = wf.steps.filter((st) => st.status === "succeeded").length;
  const id = encodeURIComponent(wf.workflow_id);
  const reasons = (wf.scheduler_metadata && wf.scheduler_metadata.reasons) || [];
  const terminal = s.completed || s.failed || s.cancelled;
  const retryFrom = h("select", { "aria-label": "retry from step", "data-testid": "retry-from" },
    wf.steps.map((st, i) => h("option", { value: i, selected: i === s.current_step_index }, `from ${i + 1}. ${st.name || st.key}`)));
  return h("div", { class: "card", "data-testid": "workflow", "data-workflow": wf.workflow_id, "data-state": state },
    h("h3", {}, wf.name, badge(state)),
    h("div", { class: "muted" }, wf.workflow_id),
    h("div", { class: "progress", title: `${done} of ${total} steps` }, h("div", { style: `width:${total ? (100 * done) / total : 0}%` })),
    h("ol", { class: "steps" }, wf.steps.map((st, i) => stepRow(wf, st, i))),
    !terminal && reasons.length ? h("div", { class: "muted", "data-testid": "reasons" }, "waiting: " + reasons.join("; ")) : null,
    h("div", { class: "actions" },
      terminal ? null : h("button", { type: "button", "data-testid": "pause", onclick: () => act("pause", `/workflow/${id}/pause`) }, "Pause"),
      s.paused ? h("button", { type: "button", "data-testid": "resume", onclick: () => act("resume", `/workflow/${id}/resume`) }, "Resume") : null,
      terminal ? null : h("button", { type: "button", class: "danger", "data-testid": "cancel", onclick: () => act("cancel", `/workflow/${id}/cancel`) }, "Cancel"),
      terminal ? retryFrom : null,
      terminal ? h("button", { type: "button", "data-testid": "retry", onclick: () => act("retry", `/workflow/${id}/retry?index=${retryFrom.value}`) }, "Retry") : null));
}

function stepRow(wf, st, i) {
  const result = st.result || {};
  const errors = (result.errors || []).map((e) => e.message).filter(Boolean);
  const dps = Object.entries(result.datapoints || {});
  const current = i === wf.status.current_step_index && !wf.status.completed;
  return h("li", { class: current ? "current" : "", "data-testid": "step", "data-status": st.status },
    h("span", { class: "n" }, i + 1 + "."),
    h("span", {},
      h("strong", {}, st.name || st.key || st.action), " ",
      h("span", { class: "muted" }, [st.node, st.action].filter(Boolean).join(" · ")),
      errors.length ? h("div", { class: "error" }, errors.join("; ")) : null,
      dps.length ? h("div", { class: "actions" }, dps.map(([label, dpId]) => h("button", {
        type: "button", "data-testid": "datapoint", onclick: () => download(dpId, label) }, "⤓ " + label))) : null),
    h("span", {}, badge(st.status), " ", h("span", { class: "muted" }, duration(st.start_time, st.end_time))));
}

async function download(datapointId, label) {
  try {
    const meta = await api(`/datapoint/${encodeURIComponent(datapointId)}`);
    const res = await fetch(`/datapoint/${encodeURIComponent(datapointId)}/value`, { headers: { "X-Client-Token": token() } });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const blob = await res.blob();
    const name = meta.data_type === "json" ? `${label}.json` : ((meta.path || label).split("/").pop());
    const a = h("a", { href: URL.createObjectURL(blob), download: name });
    document.body.append(a); a.click(); a.remove();
  } catch (e) { toast("download failed: " + e.message); }
}

function locationCard(loc, resources) {
  const byId = new Map(resources.map((r) => [r.resource_id, r]));
  const children = (id) => resources.filter((r) => r.parent_id === id && !r.removed);
  const container = loc.resource_id ? byId.get(loc.resource_id) : null;
  return h("div", { class: "card", "data-testid": "location", "data-location": loc.location_name },
    h("h3", {}, loc.location_name),
    container ? resourceView(container, children) : h("div", { class: "muted" }, "no container"));
}

function resourceView(r, children, depth = 0) {
  const kids = children(r.resource_id);
  const parts = [h("div", {}, r.resource_name, " ", h("span", { class: "muted" }, r.base_type))];
  if (r.quantity !== null && r.quantity !== undefined) {
    const cap = r.capacity || Math.max(r.quantity, 1);
    parts.push(h("div", { class: "muted" }, `${r.quantity} ${r.unit || ""}${r.capacity ? " of " + r.capacity : ""}`),
      h("div", { class: "progress" }, h("div", { style: `width:${Math.min(100, (100 * r.quantity) / cap)}%` })));
  }
  if (r.rows && r.columns) {
    const filled = new Set(kids.map((k) => k.key));
    const wells = [];
    for (let row = 0; row < r.rows; row++)
      for (let col = 1; col <= r.columns; col++) {
        const key = String.fromCharCode(65 + row) + col;
        wells.push(h("span", { class: filled.has(key) ? "full" : "", title: key }));
      }
    parts.push(h("div", { class: "wells", style: `grid-template-columns:repeat(${r.columns},1fr)`, "data-testid": "wells" }, wells));
  } else if (depth < 3) {
    for (const k of kids) parts.push(h("div", { style: "margin-left:.75rem" }, resourceView(k, children, depth + 1)));
  }
  return h("div", {}, parts);
}

function submitForm() {
  const yaml = h("textarea", { name: "yaml", "data-testid": "submit-yaml", placeholder: "name: my_workflow\nsteps:\n  - name: home\n    node: robotarm_1\n    action: home" });
  const inputs = h("input", { name: "inputs", placeholder: '{"volume_ul": 50}', "data-testid": "submit-inputs", style: "flex:1" });
  const files = h("input", { type: "file", multiple: true, title: "file inputs: each file's name (without extension) is its parameter" });
  const result = h("div", { class: "muted", role: "status", "data-testid": "submit-result" });
  const form = h("form", { class: "card" }, yaml, h("div", { class: "actions" }, inputs, files, h("button", { type: "submit" }, "Submit")), result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const definitionId = await api("/dashboard/definition", { method: "POST", headers: { "Content-Type": "application/yaml" }, body: yaml.value });
      const data = new FormData();
      data.append("workflow_definition_id", typeof definitionId === "string" ? definitionId : JSON.stringify(definitionId));
      data.append("json_inputs", inputs.value.trim() || "{}");
      const paths = {};
      for (const f of files.files) { const key = f.name.replace(/\.[^.]*$/, ""); paths[key] = f.name; data.append("files", f, key); }
      data.append("file_input_paths", JSON.stringify(paths));
      const wf = await api("/workflow", { method: "POST", body: data });
      result.textContent = `submitted ${wf.workflow_id}`;
      refreshAll();
    } catch (e) { result.textContent = "refused: " + e.message; }
  });
  return form;
}

// --- jobs ---------------------------------------------------------------------------------------

const API = "/api/v1";
function jobsPage() {
  const status = h("select", { "aria-label": "status", "data-testid": "filter-status" },
    ["", "pending", "running", "waiting_for_worker", "waiting", "paused", "finished", "failed", "cancelled", "quarantined"].map((s) => h("option", { value: s }, s || "any status")));
  const blueprint = h("input", { placeholder: "blueprint", "aria-label": "blueprint", "data-testid": "filter-blueprint" });
  const list = h("tbody", { id: "jobs" });
  const detail = h("div", { id: "job", class: "card", hidden: true, "data-testid": "job-detail" });
  const workers = h("tbody", { id: "workers" });
  const traceId = h("input", { placeholder: "trace id", "aria-label": "flow trace id", "data-testid": "trace-id" });
  const trace = h("tbody", { id: "trace" });
  const traceNote = h("div", { class: "muted", "data-testid": "trace-note" });
  const traceForm = h("form", { class: "filters" }, traceId, h("button", { type: "submit" }, "Show trace"));
  traceForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    trace.replaceChildren();
    try {
      const events = await api(`${API}/flows/traces/${encodeURIComponent(traceId.value.trim())}`);
      traceNote.textContent = `${events.length} events`;
      const t0 = events.length ? events[0].ts : 0;
      trace.replaceChildren(...events.map((e) => h("tr", { "data-testid": "trace-event" }, h("td", {}, `+${((e.ts - t0) * 1000).toFixed(1)} ms`),
        h("td", {}, e.kind), h("td", {}, e.node_name || ""), h("td", { class: "muted" }, JSON.stringify(e.payload).slice(0, 160)))));
    } catch (e) { traceNote.textContent = e.message; }
  });
  main.replaceChildren(
    h("section", {}, h("h2", {}, "Jobs"), h("div", { class: "filters" }, status, blueprint),
      h("table", {}, h("thead", {}, h("tr", {}, ["job", "blueprint", "status", "state", "created"].map((c) => h("th", { class: c === "created" ? "hide-narrow" : "" }, c)))), list)),
    h("section", {}, h("h2", {}, "Job"), detail),
    h("section", {}, h("h2", {}, "Workers"), h("table", {}, h("thead", {}, h("tr", {}, ["worker", "status", "skills", "load", "reputation", "heartbeat"].map((c) => h("th", {}, c)))), workers)),
    h("section", {}, h("h2", {}, "Flow traces"), traceForm, traceNote,
      h("table", {}, h("thead", {}, h("tr", {}, ["at", "event", "node", "payload"].map((c) => h("th", {}, c)))), trace)));
  let openJob = null;

  async function loadJobs() {
    const q = new URLSearchParams({ limit: "50" });
    if (status.value) q.set("status", status.value);
    if (blueprint.value.trim()) q.set("blueprint", blueprint.value.trim());
    const page = await api(`${API}/jobs?${q}`);
    list.replaceChildren(...page.items.map((j) => h("tr", { class: "pick", "data-testid": "job-row", "data-job": j.id, onclick: () => { openJob = j.id; soon("job", loadJob, 0); } },
      h("td", {}, j.id), h("td", {}, j.blueprint_name), h("td", {}, badge(j.status)), h("td", {}, j.step || ""),
      h("td", { class: "hide-narrow" }, j.created_at ? new Date(j.created_at * 1000).toLocaleString() : ""))));
  }
  async function loadJob() {
    if (!openJob) return;
    const id = encodeURIComponent(openJob);
    const [job, history] = await Promise.all([api(`${API}/jobs/${id}`), api(`${API}/jobs/${id}/history`)]);
    let graph = "";
    try { graph = await api(`${API}/blueprints/${encodeURIComponent(job.blueprint_name)}/graph`); } catch (e) { graph = ""; }
    const drawing = h("div", { class: "graph", "data-testid": "job-graph" });
    detail.hidden = false;
    detail.replaceChildren(...[
      h("h3", {}, job.id, badge(job.status)),
      h("div", { class: "muted" }, `${job.blueprint_name} · state ${job.step || "-"}`),
      job.error ? h("div", { class: "error" }, JSON.stringify(job.error)) : null,
      drawing,
      h("table", {}, h("thead", {}, h("tr", {}, ["#", "event", "status", "data"].map((c) => h("th", {}, c)))),
        h("tbody", {}, history.map((e) => h("tr", { "data-testid": "history" }, h("td", {}, e.seq), h("td", {}, e.event), h("td", {}, e.status || ""),
          h("td", { class: "muted" }, JSON.stringify(e.data).slice(0, 160))))))].filter(Boolean));
    if (graph) await drawGraph(drawing, graph, job.step);
  }
  async function loadWorkers() {
    const found = await api(`${API}/workers`);
    const now = Date.now() / 1000;
    workers.replaceChildren(...found.map((w) => h("tr", { "data-testid": "worker" }, h("td", {}, w.worker_id), h("td", {}, badge(w.status)),
      h("td", {}, (w.skills || []).join(", ")), h("td", {}, `${(w.current_tasks || []).length}${w.capacity ? "/" + w.capacity : ""}`),
      h("td", {}, w.reputation == null ? "" : Number(w.reputation).toFixed(3)), h("td", {}, w.last_seen ? ago(now - w.last_seen) : ""))));
  }
  status.addEventListener("change", () => soon("jobs", loadJobs, 0));
  blueprint.addEventListener("input", () => soon("jobs", loadJobs, 250));
  refreshAll = () => { soon("jobs", loadJobs); soon("workers", loadWorkers); soon("job", loadJob); };
  refreshAll();
  listen(`${API}/events`, (type, data) => {
    if (type === "job") {
      soon("jobs", loadJobs, 150);
      if (data.job_id === openJob) soon("job", loadJob, 100);
      if (data.type === "worker_registered") soon("workers", loadWorkers);
    } else if (type === "resync" || type === "hello") refreshAll();
  });
}

let mermaidReady = null;
function loadMermaid() {
  mermaidReady = mermaidReady || new Promise((resolve, reject) => {
    const s = h("script", { src: "/dashboard/mermaid.min.js" });
    s.onload = () => { window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict" }); resolve(window.mermaid); };
    s.onerror = reject;
    document.head.append(s);
  });
  return mermaidReady;
}
let graphCount = 0;
async function drawGraph(target, text, current) {
  let source = text;
  if (current && /^[A-Za-z_][\w]*$/.test(current)) {
    source += `\n    classDef current fill:#fde68a,stroke:#b45309,stroke-width:3px\n    class ${current} current`;
  }
  try {
    const mermaid = await loadMermaid();
    const { svg } = await mermaid.render("graph" + ++graphCount, source);
    target.innerHTML = svg; // mermaid's own output, from our server's graph, with securityLevel strict
    target.dataset.rendered = "true";
  } catch (e) { target.textContent = text; }
}

// --- start --------------------------------------------------------------------------------------

function start() {
  if (!token()) { signIn(""); return; }
  for (const timer of pending.values()) clearTimeout(timer); // refreshes due for an earlier sign-in's page
  pending.clear();
  document.getElementById("login").hidden = true;
  document.getElementById("logout").hidden = false;
  main.hidden = false;
  if (KIND === "workcell") workcellPage(); else jobsPage();
}
start();
