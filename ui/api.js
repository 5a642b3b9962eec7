// The one place that knows how the front end reaches the backend: Tauri's IPC inside the app
// window, HTTP + WebSocket in browser mode (`skiff-desktop --serve`, used by the e2e tests).
const tauri = window.__TAURI__;

export const inApp = Boolean(tauri);

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
  if (tauri) {
    try {
      return await tauri.core.invoke("call", { cmd, args });
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
  if (tauri) {
    const channel = new tauri.core.Channel();
    channel.onmessage = onMessage;
    const id = tauri.core.invoke("stream_open", { kind, args, channel });
    return {
      input: async (text) => tauri.core.invoke("stream_input", { id: await id, data: b64(enc.encode(text)) }),
      resize: async (cols, rows) => tauri.core.invoke("stream_resize", { id: await id, cols, rows }),
      close: async () => tauri.core.invoke("stream_close", { id: await id }),
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
  if (tauri) return tauri.core.invoke("plugin:opener|open_url", { url });
  window.open(url, "_blank", "noopener");
}

// App-wide events from the window's backend (VM state); nothing in browser mode.
export function listen(name, cb) {
  if (tauri) tauri.event.listen(name, (e) => cb(e.payload));
}
