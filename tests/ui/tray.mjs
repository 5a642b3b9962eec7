// The tray icon, as a desktop shell sees it: this test is the session's StatusNotifierWatcher (the
// freedesktop tray protocol GNOME's and KDE's panels speak), so the real skiff-desktop registers its
// icon here; the test then reads the menu over com.canonical.dbusmenu and clicks its items as a user
// would: open the window, start the engine (a real VM), stop it, quit.
// Runs under Xvfb inside its own D-Bus session (tests/ui/run.sh). Needs: SKIFF_DESKTOP, SKIFF_HOME
// (a fresh home whose config says accel tcg).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../ui/package.json", import.meta.url));
const dbus = require("dbus-next");

const { Message, MessageType, Variant } = dbus;
const WATCHER = "org.kde.StatusNotifierWatcher";
const ITEM = "org.kde.StatusNotifierItem";
const MENU = "com.canonical.dbusmenu";

const bus = dbus.sessionBus();
const registered = [];
let hostRegistered = false;
let app;
let appExit;

after(() => {
  if (app && app.exitCode === null) app.kill("SIGKILL");
  bus.disconnect();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, ms = 30000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

function reply(msg, signature = "", body = []) {
  bus.send(Message.newMethodReturn(msg, signature, body));
}

// The watcher: items register by object path (their bus name is the sender) or by bus name.
bus.addMethodHandler((msg) => {
  if (msg.path !== "/StatusNotifierWatcher") return false;
  if (msg.interface === WATCHER && msg.member === "RegisterStatusNotifierItem") {
    const arg = msg.body[0];
    const item = arg.startsWith("/") ? { name: msg.sender, path: arg } : { name: arg, path: "/StatusNotifierItem" };
    registered.push(item);
    reply(msg);
    bus.send(
      Message.newSignal("/StatusNotifierWatcher", WATCHER, "StatusNotifierItemRegistered", "s", [item.name + item.path]),
    );
    return true;
  }
  if (msg.interface === WATCHER && msg.member === "RegisterStatusNotifierHost") {
    hostRegistered = true;
    reply(msg);
    return true;
  }
  if (msg.interface === "org.freedesktop.DBus.Properties") {
    const props = {
      RegisteredStatusNotifierItems: new Variant("as", registered.map((i) => i.name + i.path)),
      IsStatusNotifierHostRegistered: new Variant("b", true),
      ProtocolVersion: new Variant("i", 0),
    };
    if (msg.member === "GetAll") reply(msg, "a{sv}", [props]);
    else if (msg.member === "Get" && props[msg.body[1]]) reply(msg, "v", [props[msg.body[1]]]);
    else bus.send(Message.newError(msg, "org.freedesktop.DBus.Error.UnknownProperty", String(msg.body[1])));
    return true;
  }
  return false;
});

async function call(destination, path, iface, member, signature = "", body = []) {
  const r = await bus.call(new Message({ destination, path, interface: iface, member, signature, body }));
  if (r.type === MessageType.ERROR) throw new Error(`${member}: ${r.errorName} ${r.body}`);
  return r.body;
}

async function itemProps(item) {
  const [props] = await call(item.name, item.path, "org.freedesktop.DBus.Properties", "GetAll", "s", [ITEM]);
  return Object.fromEntries(Object.entries(props).map(([k, v]) => [k, v.value]));
}

// The menu as a list of {id, label, enabled, type}, top level in order.
async function menu(item) {
  const [, [, , children]] = await call(item.name, item.menuPath, MENU, "GetLayout", "iias", [0, -1, []]);
  return children.map((c) => {
    const [id, props] = c.value;
    const p = Object.fromEntries(Object.entries(props).map(([k, v]) => [k, v.value]));
    return { id, label: p.label ?? "", enabled: p.enabled !== false, type: p.type ?? "standard" };
  });
}

async function entry(item, label) {
  const found = (await menu(item)).find((e) => e.label.replace(/_/g, "") === label);
  assert.ok(found, `no menu entry ${label}: ${JSON.stringify(await menu(item))}`);
  return found;
}

async function click(item, label) {
  const e = await entry(item, label);
  assert.ok(e.enabled, `${label} is disabled`);
  await call(item.name, item.menuPath, MENU, "Event", "isvu", [e.id, "clicked", new Variant("i", 0), 0]);
}

// Quit from the menu: the app may end before it answers the click (the bus says so).
async function quit(item) {
  await click(item, "Quit Skiff").catch((e) => {
    if (!/disconnected from message bus without replying/.test(e.message)) throw e;
  });
  const { code } = await Promise.race([appExit, sleep(15000).then(() => ({ code: "still running" }))]);
  assert.equal(code, 0);
}

async function status(item) {
  return (await menu(item))[0].label;
}

// Whether the window titled Skiff is mapped on the X display (no window manager under Xvfb).
function windowMapped() {
  try {
    const out = execFileSync("xwininfo", ["-name", "Skiff"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    return /Map State:\s+IsViewable/.test(out);
  } catch {
    return false;
  }
}

function docker(...args) {
  return execFileSync("docker", ["-H", `unix://${process.env.SKIFF_HOME}/docker.sock`, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 60000,
  });
}

let item;

test("the app registers a tray icon with the shell and starts with its window hidden", async () => {
  await bus.requestName(WATCHER, 0);
  app = spawn(process.env.SKIFF_DESKTOP, ["--hidden"], { stdio: ["ignore", "inherit", "inherit"] });
  appExit = new Promise((resolve) => app.on("exit", (code, signal) => resolve({ code, signal })));
  item = await until("the tray icon's registration", () => registered[0]);
  const props = await itemProps(item);
  assert.equal(props.Status, "Active");
  assert.equal(props.Category, "ApplicationStatus");
  // The icon: a PNG file the shell reads (libayatana-appindicator's way) or pixels on the bus.
  if (props.IconName?.startsWith("/")) {
    assert.equal(readFileSync(props.IconName).subarray(1, 4).toString(), "PNG", props.IconName);
  } else {
    assert.ok(props.IconPixmap?.length, `the icon has an image: ${JSON.stringify(props.IconName)}`);
  }
  item.menuPath = props.Menu;
  assert.ok(item.menuPath && item.menuPath !== "/", `the icon has a menu (${props.Menu})`);
  assert.equal(windowMapped(), false, "--hidden: no window on screen");
});

test("the menu shows the engine's state and offers only what it allows", async () => {
  await until("the engine state", async () => (await status(item)) === "Engine: stopped");
  const labels = (await menu(item)).filter((e) => e.type !== "separator").map((e) => e.label.replace(/_/g, ""));
  assert.deepEqual(labels, ["Engine: stopped", "Open Skiff", "Start engine", "Stop engine", "Quit Skiff"]);
  assert.equal((await entry(item, "Engine: stopped")).enabled, false, "the state is not clickable");
  assert.equal((await entry(item, "Start engine")).enabled, true);
  assert.equal((await entry(item, "Stop engine")).enabled, false);
});

test("Open Skiff shows the window", async () => {
  await click(item, "Open Skiff");
  await until("the window on screen", () => windowMapped(), 10000);
});

test("Start engine boots the VM; the menu follows and docker reaches the engine", async () => {
  await click(item, "Start engine");
  await until("the starting state", async () => (await status(item)) === "Engine: starting…", 5000);
  assert.equal((await entry(item, "Start engine")).enabled, false, "no second start while one runs");
  await until("the running state", async () => (await status(item)) === "Engine: running", 240000);
  assert.equal((await entry(item, "Stop engine")).enabled, true);
  assert.equal((await entry(item, "Start engine")).enabled, false);
  assert.match(docker("version", "--format", "{{.Server.Os}}"), /linux/);
});

test("Stop engine stops the VM", async () => {
  await click(item, "Stop engine");
  await until("the stopped state", async () => (await status(item)) === "Engine: stopped", 120000);
  assert.throws(() => docker("version"), "the engine is gone");
  assert.equal((await entry(item, "Start engine")).enabled, true);
});

test("Quit Skiff ends the app", async () => {
  await quit(item);
});

test("opened with its window, the app registers its tray icon after the window, showing the state at once", async () => {
  const before = registered.length;
  app = spawn(process.env.SKIFF_DESKTOP, [], { stdio: ["ignore", "inherit", "inherit"] });
  appExit = new Promise((resolve) => app.on("exit", (code, signal) => resolve({ code, signal })));
  await until("the window on screen", () => windowMapped(), 10000);
  // The icon comes once the page has drawn (here: no engine, so a second after start at most).
  const late = await until("the tray icon's registration", () => registered[before], 10000);
  late.menuPath = (await itemProps(late)).Menu;
  // The engine's state is on the menu at once, not at the next poll (every 3 s).
  await until("the engine state", async () => (await status(late)) === "Engine: stopped", 2000);
  await quit(late);
});
