// The one place that knows how the front end reaches the backend: Tauri's IPC inside the app
// window, HTTP + WebSocket in browser mode (`skiff-desktop --serve`, used by the e2e tests).
//
// In the app, only Tauri's IPC core is there (`withGlobalTauri` is off: its 41 KB API bundle ran at
// every page load, without a JIT, for three functions); the three are below.
const ipc = window.__TAURI_INTERNALS__;

export const inApp = Boolean(ipc);

// A Tauri channel as `@tauri-apps/api` makes one: a callback the backend's messages arrive at, each
// with its index (delivered in order), the last an `{end}`; it goes to the backend as
// `__CHANNEL__:<callback id>`.
class Channel {
  constructor(onmessage) {
    let next = 0, end = null;
    const early = new Map();
    this.id = ipc.transformCallback((m) => {
      if ("end" in m) {
        if (m.index === next) ipc.unregisterCallback(this.id); else end = m.index;
        return;
      }
      early.set(m.index, m.message);
      while (early.has(next)) {
        const message = early.get(next);
        early.delete(next++);
        try { onmessage(message); } catch (e) { queueMicrotask(() => { throw e; }); }
      }
      if (next === end) ipc.unregisterCallback(this.id);
    });
  }
  toJSON() {
    return `__CHANNEL__:${this.id}`;
  }
}

function b64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function decodeBytes(data) {
  const s = atob(data);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export async function call(cmd, args = {}) {
  if (ipc) {
    try {
      return await ipc.invoke("call", { cmd, args });
    } catch (e) {
      throw new Error(String(e));
    }
  }
  const r = await fetch(`/api/call/${cmd}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(args),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || `HTTP ${r.status}`);
  return j.ok;
}

// Opens stream `kind`; `onMessage` gets each JSON message ({bytes}, {event}, {progress},
// {stats}, and last {end}). Returns controls for terminals and closing.
export function stream(kind, args, onMessage) {
  const enc = new TextEncoder();
  if (ipc) {
    const channel = new Channel(onMessage);
    const id = ipc.invoke("stream_open", { kind, args, channel });
    return {
      input: async (text) => ipc.invoke("stream_input", { id: await id, data: b64(enc.encode(text)) }),
      resize: async (cols, rows) => ipc.invoke("stream_resize", { id: await id, cols, rows }),
      close: async () => ipc.invoke("stream_close", { id: await id }),
    };
  }
  const url = `ws://${location.host}/api/stream/${kind}?args=${encodeURIComponent(JSON.stringify(args))}`;
  const ws = new WebSocket(url);
  const ready = new Promise((res) => ws.addEventListener("open", res, { once: true }));
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onerror = () => onMessage({ end: "the connection to the backend failed" });
  const send = async (obj) => {
    await ready;
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  };
  return {
    input: (text) => send({ input: b64(enc.encode(text)) }),
    resize: (cols, rows) => send({ resize: [cols, rows] }),
    close: async () => ws.close(),
  };
}

// Opens `url` (a published port on localhost) in the user's browser: through Tauri's opener
// plugin in the app window (a webview does not open new windows itself), as a new tab otherwise.
export async function openExternal(url) {
  if (ipc) return ipc.invoke("plugin:opener|open_url", { url });
  window.open(url, "_blank", "noopener");
}

// App-wide events from the window's backend (VM state); nothing in browser mode.
export function listen(name, cb) {
  if (ipc) {
    const handler = ipc.transformCallback((e) => cb(e.payload));
    ipc.invoke("plugin:event|listen", { event: name, target: { kind: "Any" }, handler })
      .catch((e) => console.warn(`listening for ${name}:`, e));
  }
}
