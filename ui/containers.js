// The container list as markup: one string for all rows, with one listener for them in app.js.
// 50 rows are ~2,000 elements, and building them with DOM calls, a listener per row and button,
// kept 0.3–0.5 MiB more in the web process (bench/desktop.sh). Everything from the engine goes
// through `esc`.
//
// The window's backend draws the first list into index.html with the same markup before this
// script has loaded (app/desktop/src/first_screen.rs); its tests run this module under Node and
// require the two to be identical.

// Docker's names are ASCII ([a-zA-Z0-9][a-zA-Z0-9_.-]*): compared case-insensitively without
// localeCompare, whose ICU collator would cost the web process ~1.3 MiB (bench/desktop.sh).
export function byName(a, b) {
  const x = a.toLowerCase(), y = b.toLowerCase();
  return x < y ? -1 : x > y ? 1 : a < b ? -1 : a > b ? 1 : 0;
}

export function containerName(c) { return (c.Names?.[0] || c.Id.slice(0, 12)).replace(/^\//, ""); }

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function portLinks(c) {
  const seen = new Set();
  return (c.Ports || []).filter((p) => p.PublicPort).filter((p) => {
    const k = `${p.PublicPort}/${p.Type}`;
    if (seen.has(k)) return false;
    seen.add(k); return true;
  }).map((p) => p.Type === "tcp"
    ? `<a href="http://localhost:${esc(p.PublicPort)}" data-action="link" title="Open in your browser (→ ${esc(p.PrivatePort)}/tcp)">localhost:${esc(p.PublicPort)}</a>`
    : `<span class="muted">${esc(p.PublicPort)}/${esc(p.Type)}</span>`).join("");
}

function containerActions(c) {
  const name = esc(containerName(c));
  const running = c.State === "running";
  const paused = c.State === "paused";
  const btn = (label, action, { disabled = false, danger = false, title = `${label} ${name}` } = {}) =>
    `<button data-action="${action}" title="${title}"${danger ? ' class="danger"' : ""}${disabled ? " disabled" : ""}>${label}</button>`;
  return `<td class="actions">${[
    running || paused ? btn("Stop", "stop") : btn("Start", "start"),
    btn("Restart", "restart", { disabled: !running }),
    paused ? btn("Resume", "unpause") : btn("Pause", "pause", { disabled: !running }),
    btn("Open", "open", { title: "Logs, terminal and inspect" }),
    btn("Delete", "remove", { danger: true }),
  ].join("")}</td>`;
}

function containerRow(c, selected) {
  const name = esc(containerName(c));
  return `<tr class="row${selected === c.Id ? " selected" : ""}" data-id="${esc(c.Id)}" data-name="${name}" tabindex="0">`
    + `<td><div class="name">${name}</div><div class="muted small">${esc(c.Id.slice(0, 12))}</div></td>`
    + `<td><span class="badge ${esc(c.State)}">${esc(c.State)}</span><div class="muted small">${esc(c.Status)}</div></td>`
    + `<td>${esc(c.Image)}</td><td class="ports">${portLinks(c)}</td><td class="cpu">–</td><td class="mem">–</td>`
    + `${containerActions(c)}</tr>`;
}

// The containers shown, one table per compose project (by name; loose containers last), each
// sorted by name; `selected` is the id of the row whose drawer is open.
export function containerGroups(shown, selected) {
  const groups = new Map();
  for (const c of shown) {
    const project = c.Labels?.["com.docker.compose.project"] || "";
    if (!groups.has(project)) groups.set(project, []);
    groups.get(project).push(c);
  }
  const keys = [...groups.keys()].sort((a, b) => (a === "") - (b === "") || byName(a, b));
  const head = `<thead><tr>${["Name", "State", "Image", "Ports", "CPU", "Memory", ""].map((t) => `<th>${t}</th>`).join("")}</tr></thead>`;
  return keys.map((project) => {
    const rows = groups.get(project).sort((a, b) => byName(containerName(a), containerName(b))).map((c) => containerRow(c, selected));
    return `<div class="group" data-project="${esc(project || "-")}">`
      + `<h2>${project ? `Compose project: ${esc(project)}` : "Containers"}</h2><table>${head}<tbody>${rows.join("")}</tbody></table></div>`;
  }).join("");
}
