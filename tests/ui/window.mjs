// The real desktop window (Tauri + WebKitGTK under Xvfb), driven over W3C WebDriver through
// WebKitWebDriver: the same front end as e2e.mjs, but every call and stream goes through Tauri's
// IPC (commands and channels) and the window's own backend, and a port link goes through the
// opener plugin to the user's browser.
// Started by tests/ui/run.sh, which provides WEBDRIVER (the driver's URL), SKIFF_DESKTOP (the app
// binary), OPENED (the file the stand-in browser appends URLs to), WEB_PORT and SCREENSHOTS.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, existsSync } from "node:fs";

const DRIVER = process.env.WEBDRIVER;
const SHOTS = process.env.SCREENSHOTS || "target/ui-screenshots";
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";
let session;

async function wd(method, path, body) {
  const r = await fetch(`${DRIVER}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${j.value?.error}: ${j.value?.message}`);
  return j.value;
}

const s = (path) => `/session/${session}${path}`;
const run = (script, ...args) => wd("POST", s("/execute/sync"), { script, args });
const find = async (css) => (await wd("POST", s("/element"), { using: "css selector", value: css }))[ELEMENT];
const click = async (css) => wd("POST", s(`/element/${await find(css)}/click`), {});
const type = async (css, text) => wd("POST", s(`/element/${await find(css)}/value`), { text });
const text = (css) => run("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css);

// Polls `script` (a function body returning truthy when done) until it holds.
async function until(what, script, ...args) {
  const deadline = Date.now() + 20000;
  for (;;) {
    try {
      if (await run(script, ...args)) return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    if (Date.now() > deadline) {
      await shot("failed-window");
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function shot(name) {
  const png = await wd("GET", s("/screenshot"));
  writeFileSync(`${SHOTS}/${name}.png`, Buffer.from(png, "base64"));
}

before(async () => {
  const caps = {
    capabilities: {
      alwaysMatch: {
        "webkitgtk:browserOptions": { binary: process.env.SKIFF_DESKTOP, args: ["--view", "containers"] },
      },
    },
  };
  session = (await wd("POST", "/session", caps)).sessionId;
  await until("the engine to answer", "return /Engine/.test(document.querySelector('#engine-state')?.textContent || '')");
});

after(async () => {
  if (session) await wd("DELETE", `/session/${session}`).catch(() => {});
});

test("in the window: the first list comes drawn into the page, and the page takes it over", async () => {
  // app/desktop/src/first_screen.rs drew the list into index.html (the page's CSP let its own
  // inline scripts run: the first one chose the theme before the first frame).
  assert.ok(await run("return Boolean(document.querySelector('#container-list[data-prerendered] tr[data-name=\"win-first\"]'))"));
  assert.match(await run("return document.documentElement.dataset.theme"), /^(light|dark)$/);
  assert.equal(await run("return document.querySelector('#containers').hidden"), false);
  // app.js has taken the list over: its rows answer clicks, and a change shows up in it.
  await until("the list taken over", "return document.readyState === 'complete'");
  await click("#container-list tr[data-name='win-first'] button[data-action=pause]");
  await until("win-first paused", "return document.querySelector(\"#container-list tr[data-name='win-first'] .badge.paused\")");
});

test("in the window: run from the dialog, logs, terminal, a port link to the browser, stop and delete", async () => {
  await click("button.nav-item[data-view=images]");
  await until("busybox in the image list", "return document.querySelector(\"#image-list tr[data-tag='busybox:latest']\")");
  await click("#image-list tr[data-tag='busybox:latest'] button[data-action=run]");
  await type("#run-name", "win-web");
  await type("#run-ports", `${process.env.WEB_PORT}:80`);
  await type("#run-command", "sh -c 'echo from-the-window; exec httpd -f -p 80 -h /etc'");
  await click("#run-submit");

  const row = "#container-list tr[data-name='win-web']";
  await until("the container running in the list", "return document.querySelector(arguments[0] + ' .badge.running')", row);

  // The published port is a link; clicking it hands the URL to the user's browser.
  await click(`${row} a[href^='http://localhost:']`);
  const opened = process.env.OPENED;
  const deadline = Date.now() + 15000;
  while (!(existsSync(opened) && readFileSync(opened, "utf8").includes(`localhost:${process.env.WEB_PORT}`))) {
    if (Date.now() > deadline) throw new Error("the port link did not reach the browser");
    await new Promise((r) => setTimeout(r, 150));
  }
  const page = await fetch(`http://127.0.0.1:${process.env.WEB_PORT}/hostname`);
  assert.equal(page.status, 200);
  // The opener is scoped to http://localhost: the page cannot hand anything else to the system.
  const refused = await run(`return window.__TAURI_INTERNALS__.invoke("plugin:opener|open_url", { url: "file:///etc/passwd" })
    .then(() => "opened", (e) => "refused: " + e)`);
  assert.match(refused, /^refused: .*not allowed/i);
  assert.ok(!readFileSync(opened, "utf8").includes("passwd"));

  // Logs stream over a Tauri channel.
  await run("document.querySelector(arguments[0]).click()", row);
  await until("the container's output in the logs", "return /from-the-window/.test(document.querySelector('#logs').textContent)");

  // The terminal: exec with a TTY over a channel, keystrokes over `stream_input`.
  await click("#drawer .tabs button[data-tab=terminal]");
  await until("the shell's banner", "return /BusyBox/.test(document.querySelector('#terminal .xterm-rows')?.innerText || '')");
  await type("#terminal .xterm-helper-textarea", "echo hi\n");
  await until("hi in the terminal",
    "return document.querySelector('#terminal .xterm-rows').innerText.split('\\n').some((l) => l.trim() === 'hi')");
  await shot("window-terminal");
  await click("#drawer-close");

  await click(`${row} button[data-action=stop]`);
  await until("the container stopped", "return document.querySelector(arguments[0] + ' .badge.exited')", row);
  await click(`${row} button[data-action=remove]`);
  await click("#confirm-yes");
  await until("the row gone", "return !document.querySelector(arguments[0])", row);
  assert.equal(await text(row), null);
});

test("in the window: app events from the backend reach the page (Tauri's event plugin, no global API bundle)", async () => {
  // The backend emits `vm-error` when a tray action fails; the page shows it as an alert. Emitted
  // here through the same event system, it must arrive through the page's own listener.
  const emitted = await run(`return Promise.race([
    window.__TAURI_INTERNALS__.invoke("plugin:event|emit", { event: "vm-error", payload: "event-from-the-backend" }).then(() => "emitted", (e) => "refused: " + e),
    new Promise((r) => setTimeout(() => r("no answer in 5 s"), 5000))])`);
  assert.equal(emitted, "emitted");
  await until("the event's alert", "return [...document.querySelectorAll('#toasts .toast.error')].some((t) => t.textContent === 'event-from-the-backend')");
});
