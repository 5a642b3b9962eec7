// The desktop app's front end in Debian's Chromium (Playwright), against `skiff-desktop --serve`
// and a real skiff-agent: every step is what a user does, and every check reads the page.
// Started by tests/ui/run.sh, which provides SKIFF_UI_URL, REGISTRY and SCREENSHOTS.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";

const require = createRequire(new URL("../../ui/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const URL_ = process.env.SKIFF_UI_URL;
const REGISTRY = process.env.REGISTRY;
const SHOTS = process.env.SCREENSHOTS || "target/ui-screenshots";
let browser, page;

before(async () => {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium", headless: true });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (e) => { throw e; });
  await page.goto(`${URL_}/#containers`);
  await page.waitForSelector("#engine-state:has-text('Engine')");
});

after(async () => { await browser?.close(); });

const T = { timeout: 20000 };

test("run a container from the run dialog, read its logs, use its terminal, stop and delete it", async () => {
  await page.click("button.nav-item[data-view=images]");
  const row = page.locator("#image-list tr[data-tag='busybox:latest']");
  await row.waitFor(T);
  await row.locator("button[data-action=run]").click();
  await page.fill("#run-name", "e2e-web");
  await page.fill("#run-env", "GREETING=hello-from-e2e");
  await page.fill("#run-command", "sh -c 'echo $GREETING; exec sleep 600'");
  await page.click("#run-submit");
  await page.waitForSelector("#run-dialog", { state: "hidden", ...T });

  // The list updates from the engine's events.
  const c = page.locator("#container-list tr[data-name='e2e-web']");
  await c.locator(".badge.running").waitFor(T);

  await c.click();
  await page.waitForFunction(() => document.querySelector("#logs").textContent.includes("hello-from-e2e"), null, T);
  await page.fill("#log-search", "hello");
  await page.locator("#logs mark").first().waitFor(T);
  assert.match(await page.textContent("#log-count"), /1 matching line/);

  await page.click("#drawer .tabs button[data-tab=terminal]");
  await page.locator("#terminal .xterm-rows").waitFor(T);
  // The shell greets us (busybox's banner), then takes keystrokes.
  await page.waitForFunction(() => document.querySelector("#terminal .xterm-rows").innerText.includes("BusyBox"), null, T);
  await page.locator("#terminal .xterm-helper-textarea").focus();
  await page.keyboard.type("echo hi\n");
  await page.waitForFunction(() => document.querySelector("#terminal .xterm-rows").innerText.split("\n").some((l) => l.trim() === "hi"), null, T)
    .catch(async (e) => { await page.screenshot({ path: `${SHOTS}/failed-terminal.png` }); throw new Error(`${e.message}; terminal shows: ${JSON.stringify(await page.innerText("#terminal .xterm-rows"))}`); });
  await page.screenshot({ path: `${SHOTS}/browser-terminal.png` });
  await page.click("#drawer-close");

  await c.locator("button[data-action=stop]").click();
  await c.locator(".badge.exited").waitFor(T);
  await c.locator("button[data-action=remove]").click();
  await page.click("#confirm-yes");
  await c.waitFor({ state: "detached", ...T });
});

test("an engine error is shown, not swallowed", async () => {
  await page.click("button.nav-item[data-view=images]");
  await page.locator("#image-list tr[data-tag='busybox:latest'] button[data-action=run]").click();
  await page.fill("#run-name", "bad name!");
  await page.click("#run-submit");
  await page.waitForFunction(() => /Invalid container name/.test(document.querySelector("#run-error").textContent), null, T);
  await page.click("#run-cancel");
});

test("pull an image from a local registry with progress", async () => {
  await page.click("button.nav-item[data-view=images]");
  const ref = `${REGISTRY}/e2e/busybox:1.0`;
  await page.fill("#pull-ref", ref);
  await page.click("#pull-button");
  await page.waitForFunction(() => document.querySelector("#pull-log").textContent.includes("Done."), null, T);
  const log = await page.textContent("#pull-log");
  assert.match(log, /Pulling/);
  assert.match(log, /(Pull complete|Download complete|Downloaded newer image|Status)/);
  assert.equal(await page.getAttribute("#pull-bar", "style"), "width: 100%;");
  await page.locator(`#image-list tr[data-tag='${ref}']`).waitFor(T);
  await page.screenshot({ path: `${SHOTS}/browser-images.png` });
});

test("create and delete a volume", async () => {
  await page.click("button.nav-item[data-view=volumes]");
  await page.fill("#volume-name", "e2e-vol");
  await page.click("#volume-create");
  const row = page.locator("#volume-list tr[data-name='e2e-vol']");
  await row.waitFor(T);
  assert.match(await row.textContent(), /unused/);
  await row.locator("button[data-action=delete]").click();
  await page.click("#confirm-yes");
  await row.waitFor({ state: "detached", ...T });
});

test("the first screen comes in one call, and the event stream replays what happened after it", async () => {
  const seen = await page.evaluate(async () => {
    const call = async (cmd, args = {}) => {
      const r = await fetch(`/api/call/${cmd}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(args) });
      return (await r.json()).ok;
    };
    const boot = await call("boot");
    // A change between the first screen and the event stream's start: only the replay shows it.
    await call("volume_create", { name: "e2e-replay" });
    const ws = new WebSocket(`ws://${location.host}/api/stream/events?args=${encodeURIComponent(JSON.stringify({ since: boot.since }))}`);
    const replayed = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), 10000);
      ws.onmessage = (e) => {
        const ev = JSON.parse(e.data).event;
        if (ev?.Type === "volume" && ev.Actor?.ID === "e2e-replay") { clearTimeout(timer); resolve(ev.Action); }
      };
    });
    ws.close();
    await call("volume_remove", { name: "e2e-replay" });
    return { up: boot.engine.up, containers: Array.isArray(boot.containers), since: boot.since, replayed };
  });
  assert.equal(seen.up, true);
  assert.ok(seen.containers, "the containers come with the engine's state");
  assert.match(seen.since, /^\d+\.\d{3}$/);
  assert.equal(seen.replayed, "create");
});

test("what the engine says is shown as text, never as markup", async () => {
  const project = "<img src=x onerror=window.pwned=1>";
  execFileSync("docker", ["run", "-d", "--name", "e2e-markup", "-l", `com.docker.compose.project=${project}`, "busybox", "sleep", "600"]);
  await page.click("button.nav-item[data-view=containers]");
  const group = page.locator("#container-list .group", { has: page.locator("tr[data-name='e2e-markup']") });
  await group.waitFor(T);
  assert.equal(await group.locator("h2").textContent(), `Compose project: ${project}`);
  assert.equal(await group.getAttribute("data-project"), project);
  assert.equal(await page.locator("#container-list img").count(), 0);
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  execFileSync("docker", ["rm", "-f", "e2e-markup"]);
  await group.waitFor({ state: "detached", ...T });
});

test("keyboard navigation and themes", async () => {
  await page.keyboard.press("Control+3");
  await page.waitForFunction(() => location.hash === "#volumes");
  await page.keyboard.press("Control+1");
  await page.waitForFunction(() => location.hash === "#containers");
  // `/` focuses the filter; Escape clears it, and the list shows everything again.
  execFileSync("docker", ["run", "-d", "--name", "e2e-filter", "busybox", "sleep", "600"]);
  const row = page.locator("#container-list tr[data-name='e2e-filter']");
  await row.waitFor(T);
  await page.keyboard.press("/");
  await page.keyboard.type("no-such-container");
  await row.waitFor({ state: "detached", ...T });
  await page.keyboard.press("Escape");
  assert.equal(await page.inputValue("#container-filter"), "");
  await row.waitFor(T);
  execFileSync("docker", ["rm", "-f", "e2e-filter"]);
  const before = await page.getAttribute("html", "data-theme");
  await page.click("#theme");
  assert.notEqual(await page.getAttribute("html", "data-theme"), before);
  await page.click("#theme");
});

test("build a folder with live output; it shows in the build history", async () => {
  await page.click("button.nav-item[data-view=images]");
  await page.fill("#build-path", process.env.BUILD_DIR);
  await page.fill("#build-tag", "e2e-built:1");
  await page.click("#build-button");
  await page.waitForFunction(() => document.querySelector("#build-log").textContent.includes("Done."), null, { timeout: 60000 })
    .catch(async (e) => { throw new Error(`${e.message}; build log: ${await page.textContent("#build-log")}`); });
  const log = await page.textContent("#build-log");
  assert.match(log, /Step 1\/3 : FROM busybox/);
  assert.match(log, /built-by-the-gui/);
  assert.match(log, /Successfully tagged e2e-built:1/);
  await page.locator("#build-history tr[data-built='e2e-built:1']").waitFor(T);
  await page.locator("#image-list tr[data-tag='e2e-built:1']").waitFor(T);
  await page.screenshot({ path: `${SHOTS}/browser-build.png` });
});
