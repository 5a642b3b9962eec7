// The Skiff desktop app's front end: plain ES module, no framework. Views render from the
// backend's lists; they refresh when the engine's /events stream says something changed.
import { call, stream, listen, decodeBytes, inApp, openExternal } from "./api.js";
import { byName, containerName, containerGroups } from "./containers.js";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function toast(text, error = false) {
  const t = h("div", { class: `toast${error ? " error" : ""}`, role: error ? "alert" : "status" }, text);
  $("#toasts").append(t);
  setTimeout(() => t.remove(), error ? 9000 : 4000);
}

// Runs an action with its button disabled and any error shown as a toast.
async function act(button, fn, done) {
  if (button) button.disabled = true;
  try {
    const r = await fn();
    if (done) toast(done);
    return r;
  } catch (e) {
    toast(e.message || String(e), true);
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

function bytes(n) {
  if (n === null || n === undefined || n < 0) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

function ago(unixSeconds) {
  const s = Math.max(0, Date.now() / 1000 - unixSeconds);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function confirmDialog(text) {
  const d = $("#confirm-dialog");
  $("#confirm-text").textContent = text;
  d.returnValue = "";
  d.showModal();
  return new Promise((res) => d.addEventListener("close", () => res(d.returnValue === "yes"), { once: true }));
}

function empty(title, hint) {
  return h("div", { class: "empty" }, h("strong", {}, title), hint);
}

// ---------------------------------------------------------------- state and navigation

const state = { view: "containers", engineUp: false, vm: null, containers: [], stats: {}, selected: null };
const views = ["containers", "images", "volumes", "vm"];

function show(view) {
  if (!views.includes(view)) view = "containers";
  state.view = view;
  location.hash = view;
  $$(".nav-item").forEach((b) => b.setAttribute("aria-current", b.dataset.view === view ? "page" : "false"));
  const firstRun = !state.engineUp && state.vm !== null && view !== "vm";
  $$(".view").forEach((s) => { s.hidden = firstRun ? s.id !== "first-run" : s.id !== view; });
  refreshers[view]?.(); // at once: the coalescing delay is for bursts of events, not for a click
}

const refreshers = {};
const pending = new Set();
// Coalesces bursts of events into one refresh per view.
function refresh(view) {
  if (pending.has(view)) return;
  pending.add(view);
  setTimeout(() => { pending.delete(view); refreshers[view]?.(); }, 120);
}

// ---------------------------------------------------------------- engine and events

let events = null;
let statsStream = null;

// The first screen's data in one call (the engine's state, the containers, where the event
// stream starts): the window's backend asked the engine for it while WebKit was starting. Each
// part is used once; later refreshes ask the engine again.
let boot = null;
const booting = call("boot").then((b) => { boot = b; }, () => {});
function fromBoot(key) {
  const v = boot?.[key] ?? undefined;
  if (boot) delete boot[key];
  return v;
}

async function checkEngine() {
  await booting;
  const e = fromBoot("engine") ?? await call("engine").catch((err) => ({ up: false, error: err.message }));
  const was = state.engineUp;
  state.engineUp = Boolean(e.up);
  state.vm = e.vm ? (state.vm ?? {}) : null;
  $("#engine-state").textContent = e.up ? `Engine ${e.version} · API ${e.api}` : "Engine not running";
  if (e.up && !was) startStreams(fromBoot("since"));
  if (!e.up && was) stopStreams();
  if (!e.up) $("#first-error").textContent = e.error ? `(${e.error})` : "";
  show(state.view);
  boot = null; // the first view took its list; any other view asks for a fresh one
}

function startStreams(since) {
  events = stream("events", since ? { since } : {}, (m) => {
    if (m.event) {
      const type = m.event.Type;
      if (type === "container") { refresh("containers"); refresh("volumes"); }
      if (type === "image") refresh("images");
      if (type === "volume") refresh("volumes");
    } else if (m.end !== undefined) {
      events = null;
      setTimeout(checkEngine, 1000);
    }
  });
  // Stats cost the engine a cgroup read per container: they start once the list is on screen
  // (or shortly, when another view opened first), so they do not delay the first paint.
  setTimeout(startStats, 1500);
}

function startStats() {
  if (statsStream || !state.engineUp) return;
  statsStream = stream("stats", {}, (m) => {
    if (m.stats) { state.stats = m.stats; updateStats(); }
  });
}

function stopStreams() {
  events?.close(); events = null;
  statsStream?.close(); statsStream = null;
}

// ---------------------------------------------------------------- containers

function openLink(url) {
  openExternal(url).catch((e) => toast(`Could not open ${url}: ${e}`, true));
}

// One listener for every row: a click on a row opens its drawer, on a button runs its action,
// on a port link hands the address to the browser.
async function onContainerClick(e) {
  const row = e.target.closest("tr.row");
  const c = row && state.containers.find((x) => x.Id === row.dataset.id);
  if (!c) return;
  const el = e.target.closest("[data-action]");
  const action = el?.dataset.action;
  if (!action || action === "open") return openDrawer(c, "logs");
  e.preventDefault();
  if (action === "link") return openLink(el.href);
  const name = containerName(c);
  if (action === "remove" && !(await confirmDialog(`Delete container ${name}? Its writable layer is lost.`))) return;
  await act(el, () => call("container_action", { id: c.Id, action }), `${el.textContent}: ${name}`);
  if (action === "remove" && state.selected === c.Id) closeDrawer();
}

function updateStats() {
  for (const row of $$("#container-list tr.row")) {
    const s = state.stats[row.dataset.id];
    $(".cpu", row).textContent = s ? `${s.cpu.toFixed(1)} %` : "–";
    $(".mem", row).textContent = s ? bytes(s.memory) : "–";
  }
}

// Fetches list `cmd` into `box` (or takes `fetched`, the list the boot call brought): null (after a
// toast) on an error; an empty box shows `emptyState`.
async function loadList(cmd, box, emptyState, fetched) {
  const list = fetched ?? await call(cmd).catch((e) => { toast(e.message, true); return null; });
  if (!list) return null;
  box.replaceChildren();
  if (!list.length) box.append(empty(...emptyState));
  return list;
}

refreshers.containers = async () => {
  if (!state.engineUp) return;
  const box = $("#container-list");
  const list = await loadList("containers", box,
    ["No containers yet", "Run one from the Images view, or with `docker run` in a terminal."], fromBoot("containers"));
  if (!list) return;
  state.containers = list;
  if (!list.length) return;
  const filter = $("#container-filter").value.trim().toLowerCase();
  const showStopped = $("#show-stopped").checked;
  const shown = list.filter((c) => (showStopped || ["running", "paused", "restarting"].includes(c.State))
    && (!filter || containerName(c).toLowerCase().includes(filter) || (c.Image || "").toLowerCase().includes(filter)));
  if (!shown.length) { box.append(empty("Nothing matches", "Clear the filter or show stopped containers.")); return; }
  box.insertAdjacentHTML("beforeend", containerGroups(shown, state.selected));
  updateStats();
  if (!state.rendered) {
    state.rendered = true;
    requestAnimationFrame(() => {
      // A list the backend drew into the page was reported by the page's own last script.
      if (!box.hasAttribute("data-prerendered")) call("ui_rendered", { containers: list.length, page_ms: performance.now(), epoch_ms: performance.timeOrigin + performance.now() }).catch(() => {});
      startStats();
    });
  }
};

// ---------------------------------------------------------------- drawer: logs, terminal, inspect

let logStream = null, termStream = null, term = null, fit = null, logText = "";

function closeDrawer() {
  logStream?.close(); logStream = null;
  termStream?.close(); termStream = null;
  term?.dispose(); term = null;
  state.selected = null;
  $("#drawer").hidden = true;
}

function renderLogs() {
  const q = $("#log-search").value;
  const pre = $("#logs");
  if (!q) {
    pre.textContent = logText;
    $("#log-count").textContent = "";
  } else {
    const lines = logText.split("\n").filter((l) => l.toLowerCase().includes(q.toLowerCase()));
    pre.replaceChildren(...lines.flatMap((l) => {
      const i = l.toLowerCase().indexOf(q.toLowerCase());
      return [l.slice(0, i), h("mark", {}, l.slice(i, i + q.length)), l.slice(i + q.length) + "\n"];
    }));
    $("#log-count").textContent = `${lines.length} matching lines`;
  }
  if ($("#log-follow").checked) pre.scrollTop = pre.scrollHeight;
}

function selectTab(tab) {
  $$("#drawer .tabs button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.tab === tab)));
  $$("#drawer .tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === tab));
  const c = state.containers.find((x) => x.Id === state.selected);
  if (tab === "terminal" && c && !termStream) openTerminal(c);
  if (tab === "terminal") setTimeout(() => { fit?.fit(); term?.focus(); }, 50);
  if (tab === "inspect" && c) {
    call("container_inspect", { id: c.Id }).then((j) => { $("#inspect").textContent = JSON.stringify(j, null, 2); })
      .catch((e) => { $("#inspect").textContent = e.message; });
  }
}

function openDrawer(c, tab) {
  closeDrawer();
  state.selected = c.Id;
  $("#drawer-title").textContent = `${containerName(c)} · ${c.Image}`;
  $("#drawer").hidden = false;
  logText = "";
  $("#logs").textContent = "";
  const dec = new TextDecoder();
  logStream = stream("logs", { id: c.Id, follow: true, tail: "1000" }, (m) => {
    if (m.bytes) { logText += dec.decode(decodeBytes(m.bytes), { stream: true }); renderLogs(); }
    if (m.end) toast(`Logs: ${m.end}`, true);
  });
  $$("#container-list tr.row").forEach((r) => r.classList.toggle("selected", r.dataset.id === c.Id));
  selectTab(tab);
}

// xterm.js (~300 KB of script) and its style sheet are loaded the first time a terminal opens,
// not at start-up (a style sheet in the page's head would hold back its first render).
let xtermLoaded = null;
function loadXterm() {
  const load = (src) => new Promise((resolve, reject) => {
    const el = src.endsWith(".css")
      ? Object.assign(document.createElement("link"), { rel: "stylesheet", href: src })
      : Object.assign(document.createElement("script"), { src });
    el.onload = resolve;
    el.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(el);
  });
  xtermLoaded ??= Promise.all([load("vendor/xterm.css"), load("vendor/xterm.js")]).then(() => load("vendor/addon-fit.js"));
  xtermLoaded.catch(() => { xtermLoaded = null; });
  return xtermLoaded;
}

async function openTerminal(c) {
  if (c.State !== "running") {
    $("#terminal").replaceChildren(empty("The container is not running", "Start it to open a terminal."));
    return;
  }
  // Claimed before the first await, so a second tab click does not open a second session.
  let stream_ = null, closed = false;
  const pending = [];
  termStream = {
    input: (d) => (stream_ ? stream_.input(d) : pending.push(d)),
    resize: (cols, rows) => stream_?.resize(cols, rows),
    close: async () => { closed = true; stream_?.close(); },
  };
  const mine = termStream;
  try {
    await loadXterm();
  } catch (e) {
    $("#terminal").replaceChildren(empty("The terminal could not start", e.message));
    if (termStream === mine) termStream = null;
    return;
  }
  if (closed || termStream !== mine) return;
  $("#terminal").replaceChildren();
  term = new window.Terminal({ cursorBlink: true, fontSize: 13, convertEol: false,
    fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--mono-font").trim() || "monospace" });
  fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open($("#terminal"));
  fit.fit();
  stream_ = stream("exec", { id: c.Id, cmd: ["/bin/sh"], cols: term.cols, rows: term.rows }, (m) => {
    if (m.bytes) term?.write(decodeBytes(m.bytes));
    if (m.end !== undefined) term?.write(`\r\n[session ended${m.end ? `: ${m.end}` : ""}]\r\n`);
  });
  pending.splice(0).forEach((d) => stream_.input(d));
  term.onData((d) => termStream?.input(d));
  term.onResize(({ cols, rows }) => termStream?.resize(cols, rows));
  term.focus();
}

new ResizeObserver(() => { if (!$("#drawer").hidden) fit?.fit(); }).observe(document.body);

// ---------------------------------------------------------------- images

let runImage = null;

refreshers.images = async () => {
  if (!state.engineUp) return;
  const box = $("#image-list");
  const list = await loadList("images", box, ["No images", "Pull or build one above, or `docker load` / `docker build` in a terminal."]);
  renderBuildHistory(list || []);
  if (!list?.length) return;
  const rows = list.sort((a, b) => b.Created - a.Created).flatMap((img) => {
    const tags = img.RepoTags?.length ? img.RepoTags : ["<none>:<none>"];
    return tags.map((tag) => h("tr", { class: "row", "data-tag": tag },
      h("td", {}, h("div", { class: "name" }, tag), h("div", { class: "muted small" }, img.Id.replace("sha256:", "").slice(0, 12))),
      h("td", {}, bytes(img.Size)),
      h("td", {}, ago(img.Created)),
      h("td", { class: "actions" },
        h("button", { class: "primary", "data-action": "run", onclick: () => openRun(tag === "<none>:<none>" ? img.Id : tag) }, "Run"),
        h("button", { class: "danger", "data-action": "delete", onclick: async (e) => {
          if (!(await confirmDialog(`Delete image ${tag}?`))) return;
          await act(e.currentTarget, () => call("image_remove", { id: tag === "<none>:<none>" ? img.Id : tag }), `Deleted ${tag}`);
        } }, "Delete"))));
  });
  box.append(h("div", { class: "group" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Image", "Size", "Created", ""].map((t) => h("th", {}, t)))), h("tbody", {}, rows))));
};

function openRun(image) {
  runImage = image;
  $("#run-image").textContent = image;
  for (const f of ["name", "ports", "env", "volumes", "command"]) $(`#run-${f}`).value = "";
  $("#run-error").textContent = "";
  $("#run-dialog").showModal();
  $("#run-name").focus();
}

const list = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);

$("#run-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const submit = $("#run-submit");
  submit.disabled = true;
  $("#run-error").textContent = "";
  try {
    await call("run", {
      image: runImage, name: $("#run-name").value.trim(), ports: list($("#run-ports").value),
      env: list($("#run-env").value), volumes: list($("#run-volumes").value), command: $("#run-command").value,
    });
    $("#run-dialog").close();
    toast(`Started ${$("#run-name").value.trim() || runImage}`);
    show("containers");
  } catch (err) {
    $("#run-error").textContent = err.message;
  } finally {
    submit.disabled = false;
  }
});
$("#run-cancel").addEventListener("click", () => $("#run-dialog").close());

$("#pull-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const ref = $("#pull-ref").value.trim();
  const button = $("#pull-button");
  button.disabled = true;
  $("#pull-progress").hidden = false;
  $("#pull-bar").style.width = "0";
  const log = $("#pull-log");
  log.textContent = `Pulling ${ref}…\n`;
  const layers = new Map();
  stream("pull", { image: ref }, (m) => {
    if (m.progress) {
      const p = m.progress;
      if (p.id && p.total) layers.set(p.id, [p.current || 0, p.total]);
      if (p.id && p.status && /complete|already exists/i.test(p.status) && layers.has(p.id)) layers.set(p.id, [layers.get(p.id)[1], layers.get(p.id)[1]]);
      const [cur, tot] = [...layers.values()].reduce((a, [c, t]) => [a[0] + c, a[1] + t], [0, 0]);
      if (tot) $("#pull-bar").style.width = `${Math.min(100, (100 * cur) / tot).toFixed(1)}%`;
      if (p.status && !/^(Downloading|Extracting)$/.test(p.status)) log.textContent += `${p.id ? p.id + ": " : ""}${p.status}\n`;
      log.scrollTop = log.scrollHeight;
    }
    if (m.end !== undefined) {
      button.disabled = false;
      if (m.end) { log.textContent += `Error: ${m.end}\n`; toast(`Pull failed: ${m.end}`, true); }
      else { $("#pull-bar").style.width = "100%"; log.textContent += "Done.\n"; toast(`Pulled ${ref}`); refresh("images"); }
    }
  });
});

// Build history: the images built or committed here (they have a parent image), newest first,
// with when each was built.
function renderBuildHistory(list) {
  const box = $("#build-history");
  box.replaceChildren();
  const built = list.filter((img) => img.ParentId).sort((a, b) => b.Created - a.Created).slice(0, 10);
  if (!built.length) return;
  const rows = built.map((img) => {
    const tag = img.RepoTags?.[0] || "<none>:<none>";
    return h("tr", { class: "row", "data-built": tag },
      h("td", {}, h("div", { class: "name" }, tag), h("div", { class: "muted small" }, img.Id.replace("sha256:", "").slice(0, 12))),
      h("td", {}, new Date(img.Created * 1000).toLocaleString()),
      h("td", {}, ago(img.Created)));
  });
  box.append(h("div", { class: "group" }, h("h2", {}, "Build history"), h("table", {},
    h("thead", {}, h("tr", {}, ["Built image", "Built at", ""].map((t) => h("th", {}, t)))), h("tbody", {}, rows))));
}

$("#build-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const path = $("#build-path").value.trim();
  const tag = $("#build-tag").value.trim();
  const button = $("#build-button");
  button.disabled = true;
  $("#build-progress").hidden = false;
  const log = $("#build-log");
  log.textContent = `Building ${path}…\n`;
  stream("build", { path, tag, dockerfile: $("#build-dockerfile").value.trim() }, (m) => {
    if (m.output) { log.textContent += m.output.replace(/\x1b\[[0-9;]*m/g, ""); log.scrollTop = log.scrollHeight; }
    if (m.built) log.textContent += `Built ${m.built}\n`;
    if (m.end !== undefined) {
      button.disabled = false;
      if (m.end) { log.textContent += `Error: ${m.end}\n`; toast(`Build failed: ${m.end}`, true); }
      else { log.textContent += "Done.\n"; toast(`Built ${tag || path}`); refresh("images"); }
    }
  });
});

$("#prune-images").addEventListener("click", (e) => act(e.currentTarget, async () => {
  const r = await call("images_prune");
  toast(`Pruned ${r.ImagesDeleted?.length || 0} images, ${bytes(r.SpaceReclaimed || 0)} reclaimed`);
}));

// ---------------------------------------------------------------- volumes

refreshers.volumes = async () => {
  if (!state.engineUp) return;
  const box = $("#volume-list");
  const vols = await loadList("volumes", box, ["No volumes", "Create one above; containers keep data in volumes across restarts."]);
  if (!vols?.length) return;
  const rows = vols.sort((a, b) => byName(a.name, b.name)).map((v) => h("tr", { class: "row", "data-name": v.name },
    h("td", {}, h("div", { class: "name" }, v.name.length > 40 ? `${v.name.slice(0, 12)}…` : v.name), h("div", { class: "muted small" }, v.driver)),
    h("td", {}, v.size === null || v.size === undefined ? "–" : bytes(v.size)),
    h("td", {}, v.usedBy.length ? v.usedBy.join(", ") : h("span", { class: "muted" }, "unused")),
    h("td", { class: "actions" }, h("button", { class: "danger", "data-action": "delete", disabled: v.usedBy.length > 0,
      title: v.usedBy.length ? "In use by a container" : `Delete ${v.name}`,
      onclick: async (e) => {
        if (!(await confirmDialog(`Delete volume ${v.name} and its data?`))) return;
        await act(e.currentTarget, () => call("volume_remove", { name: v.name }), `Deleted volume ${v.name}`);
      } }, "Delete"))));
  box.append(h("div", { class: "group" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Volume", "Size", "Used by", ""].map((t) => h("th", {}, t)))), h("tbody", {}, rows))));
};

$("#volume-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("#volume-name").value.trim();
  const ok = await act($("#volume-create"), () => call("volume_create", { name }), `Created volume ${name}`);
  if (ok !== undefined) $("#volume-name").value = "";
});

// ---------------------------------------------------------------- VM

refreshers.vm = async () => {
  const facts = $("#vm-facts");
  if (state.vm === null) {
    $("#vm-state").textContent = "native engine";
    facts.replaceChildren(h("dt", {}, "Engine"), h("dd", {}, "this window drives an engine on this machine directly"));
    for (const b of ["#vm-start", "#vm-stop", "#vm-restart", "#vm-reset"]) $(b).disabled = true;
    // Nothing to size or reset: the engine runs on this machine, not in a Skiff VM.
    $$("#vm-settings input, #vm-settings button").forEach((e) => { e.disabled = true; });
    $("#vm-console").textContent = "(no VM: the engine runs natively)";
    return;
  }
  const s = await call("vm_status").catch((e) => ({ state: "unknown", error: e.message }));
  state.vm = s;
  $("#vm-state").textContent = s.state;
  $("#vm-state").className = `badge ${s.state}`;
  $("#vm-start").disabled = s.state !== "stopped";
  $("#vm-stop").disabled = !["running", "paused"].includes(s.state);
  $("#vm-restart").disabled = s.state !== "running";
  const g = s.guest || {};
  const rows = [
    ["State", s.state + (s.paused_reason ? ` (${s.paused_reason})` : "")],
    ["Accelerator", s.accel ? `${s.accel}${s.accel_notice ? ` — ${s.accel_notice}` : ""}` : "–"],
    ["CPUs / memory", s.cpus ? `${s.cpus} · ${s.memory_mib} MiB` : "–"],
    ["Guest memory used", g.mem_total ? `${bytes(g.mem_used)} of ${bytes(g.mem_total)}` : "–"],
    ["Disk used", g.disk_total ? `${bytes(g.disk_used)} of ${bytes(g.disk_total)}` : "–"],
    // What the VM takes from this machine now (freed guest memory and deleted data are given back).
    ["On this machine", s.host_memory_bytes != null || s.disk_allocated_bytes != null
      ? `${s.host_memory_bytes != null ? bytes(s.host_memory_bytes) : "?"} memory · ${s.disk_allocated_bytes != null ? bytes(s.disk_allocated_bytes) : "?"} disk`
      : "–"],
    ["Docker socket", s.docker_socket || "–"],
    ["Shared folders", (s.shares || []).join(", ") || "–"],
  ];
  facts.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const cfg = await call("vm_settings").catch(() => null);
  if (cfg && document.activeElement?.closest("#vm-settings") === null) {
    $("#vm-cpus").value = cfg.cpus; $("#vm-memory").value = cfg.memory_mib; $("#vm-disk").value = cfg.disk_gib;
  }
  loadConsole();
};

async function loadConsole() {
  if (state.vm === null) return;
  const c = await call("vm_console").catch((e) => ({ text: e.message }));
  const pre = $("#vm-console");
  pre.textContent = c.text || "(empty)";
  pre.scrollTop = pre.scrollHeight;
}

async function vmAction(button, cmd, label) {
  $("#vm-state").textContent = `${label}…`;
  await act(button, () => call(cmd), `${label}: done`);
  await checkEngine();
  refresh("vm");
}

$("#vm-start").addEventListener("click", (e) => vmAction(e.currentTarget, "vm_start", "Starting"));
$("#vm-stop").addEventListener("click", (e) => vmAction(e.currentTarget, "vm_stop", "Stopping"));
$("#vm-restart").addEventListener("click", (e) => vmAction(e.currentTarget, "vm_restart", "Restarting"));
$("#vm-console-refresh").addEventListener("click", loadConsole);
$("#vm-reset").addEventListener("click", async (e) => {
  if (!(await confirmDialog("Reset Skiff to factory? This stops the VM and deletes every image, container and volume in it."))) return;
  await vmAction(e.currentTarget, "vm_reset", "Resetting");
});
$("#vm-settings").addEventListener("submit", (e) => {
  e.preventDefault();
  act(e.submitter, () => call("vm_save_settings", {
    cpus: Number($("#vm-cpus").value), memory_mib: Number($("#vm-memory").value), disk_gib: Number($("#vm-disk").value),
  }), "Saved: the VM uses them from its next start");
});
$("#first-start").addEventListener("click", async (e) => {
  $("#first-status").textContent = "Starting the VM… (the first start formats its disk)";
  await act(e.currentTarget, () => call("vm_start"));
  $("#first-status").textContent = "";
  await checkEngine();
});

// ---------------------------------------------------------------- chrome: nav, theme, keys

$$(".nav-item").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
$("#drawer-close").addEventListener("click", closeDrawer);
$$("#drawer .tabs button").forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
$("#log-search").addEventListener("input", renderLogs);
$("#container-list").addEventListener("click", onContainerClick);
$("#container-list").addEventListener("keydown", (e) => {
  const c = e.key === "Enter" && e.target.matches("tr.row") && state.containers.find((x) => x.Id === e.target.dataset.id);
  if (c) openDrawer(c, "logs");
});
$("#container-filter").addEventListener("input", () => refreshers.containers());
$("#show-stopped").addEventListener("change", () => refreshers.containers());

function applyTheme(t) {
  document.documentElement.dataset.theme = t;
  localStorage.setItem("skiff-theme", t);
  if (term) term.options.theme = t === "dark" ? {} : { background: "#000000" };
}
applyTheme(document.documentElement.dataset.theme); // chosen by index.html's first script
$("#theme").addEventListener("click", () => applyTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"));

document.addEventListener("keydown", (e) => {
  const inField = e.target.closest?.("input, textarea, .terminal");
  if ((e.ctrlKey || e.metaKey) && ["1", "2", "3", "4"].includes(e.key)) {
    e.preventDefault();
    show(views[Number(e.key) - 1]);
  } else if (e.key === "Escape" && e.target.matches?.("input.search") && e.target.value) {
    e.target.value = "";
    e.target.dispatchEvent(new Event("input"));
  } else if (e.key === "Escape" && !$("#drawer").hidden && !e.target.closest?.(".terminal")) {
    closeDrawer();
  } else if (e.key === "/" && !inField) {
    e.preventDefault();
    ({ containers: "#container-filter", images: "#pull-ref", volumes: "#volume-name" })[state.view] &&
      $(({ containers: "#container-filter", images: "#pull-ref", volumes: "#volume-name" })[state.view]).focus();
  }
});

listen("vm-state", () => { checkEngine(); if (state.view === "vm") refresh("vm"); });
listen("vm-error", (msg) => toast(msg, true));
window.addEventListener("hashchange", () => { const v = location.hash.slice(1); if (v !== state.view) show(v); });

document.documentElement.dataset.shell = inApp ? "app" : "browser";
state.view = location.hash.slice(1) || "containers";
checkEngine();
