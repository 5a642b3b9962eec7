//! The desktop window (Tauri 2): IPC commands over the backend, streams over Tauri channels, a
//! tray item with the VM's state, and closing the window hides it (the tray keeps the app).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tauri::ipc::Channel;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{Emitter, Manager, State, WebviewUrl, WebviewWindowBuilder, WindowEvent};
use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::streams::{self, Control, Sink};

/// An open stream: where its input goes, and its task.
type OpenStream = (mpsc::Sender<Control>, tauri::async_runtime::JoinHandle<()>);

struct Streams {
    next: AtomicU32,
    open: Mutex<HashMap<u32, OpenStream>>,
}

struct ChannelSink(Channel<Value>);

impl Sink for ChannelSink {
    fn send(&self, msg: Value) -> bool {
        self.0.send(msg).is_ok()
    }
}

#[tauri::command]
async fn call(cmd: String, args: Option<Value>, backend: State<'_, Backend>) -> Result<Value, String> {
    backend.call(&cmd, &args.unwrap_or(Value::Null)).await
}

#[tauri::command]
fn stream_open(
    kind: String,
    args: Option<Value>,
    channel: Channel<Value>,
    backend: State<'_, Backend>,
    streams: State<'_, Streams>,
) -> Result<u32, String> {
    let id = streams.next.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(64);
    let backend = backend.inner().clone();
    let task = tauri::async_runtime::spawn(async move {
        let sink = ChannelSink(channel);
        streams::run(backend, &kind, args.unwrap_or(Value::Null), &sink, rx).await;
    });
    streams.open.lock().map_err(|e| e.to_string())?.insert(id, (tx, task));
    Ok(id)
}

fn control(streams: &Streams, id: u32) -> Result<mpsc::Sender<Control>, String> {
    let open = streams.open.lock().map_err(|e| e.to_string())?;
    open.get(&id).map(|(tx, _)| tx.clone()).ok_or_else(|| format!("no stream {id}"))
}

#[tauri::command]
async fn stream_input(id: u32, data: String, streams: State<'_, Streams>) -> Result<(), String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| e.to_string())?;
    let tx = control(&streams, id)?;
    tx.send(Control::Input(bytes)).await.map_err(|e| e.to_string())
}

#[tauri::command]
async fn stream_resize(id: u32, cols: u16, rows: u16, streams: State<'_, Streams>) -> Result<(), String> {
    let tx = control(&streams, id)?;
    tx.send(Control::Resize(cols, rows)).await.map_err(|e| e.to_string())
}

#[tauri::command]
fn stream_close(id: u32, streams: State<'_, Streams>) -> Result<(), String> {
    if let Some((_, task)) = streams.open.lock().map_err(|e| e.to_string())?.remove(&id) {
        task.abort();
    }
    Ok(())
}

struct TrayItems {
    status: MenuItem<tauri::Wry>,
    start: MenuItem<tauri::Wry>,
    stop: MenuItem<tauri::Wry>,
}

fn show_window(app: &tauri::AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

fn build_tray(app: &tauri::App) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "VM: …", false, None::<&str>)?;
    let show = MenuItem::with_id(app, "show", "Show Skiff", true, None::<&str>)?;
    let start = MenuItem::with_id(app, "vm-start", "Start VM", false, None::<&str>)?;
    let stop = MenuItem::with_id(app, "vm-stop", "Stop VM", false, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Skiff", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&status, &sep, &show, &start, &stop, &sep, &quit])?;
    let mut tray =
        TrayIconBuilder::with_id("main").menu(&menu).tooltip("Skiff").on_menu_event(|app, ev| match ev.id.as_ref() {
            "show" => show_window(app),
            "vm-start" | "vm-stop" => {
                let cmd = if ev.id.as_ref() == "vm-start" { "vm_start" } else { "vm_stop" };
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    let backend = app.state::<Backend>().inner().clone();
                    let _ = app.emit("vm-busy", cmd);
                    if let Err(e) = backend.call(cmd, &Value::Null).await {
                        let _ = app.emit("vm-error", e);
                    }
                });
            }
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    app.manage(TrayItems { status, start, stop });
    Ok(())
}

/// Follows the VM's state for the tray and the window (the daemon has no event feed: its socket
/// is asked every few seconds, which costs a Unix-socket round trip).
async fn watch_vm(app: tauri::AppHandle) {
    let backend = app.state::<Backend>().inner().clone();
    let mut last = String::new();
    loop {
        let state = match backend.call("vm_status", &Value::Null).await {
            Ok(s) => s.get("state").and_then(Value::as_str).unwrap_or("unknown").to_string(),
            Err(_) => "native".to_string(),
        };
        if state != last {
            if let Some(t) = app.try_state::<TrayItems>() {
                let _ = t.status.set_text(format!("VM: {state}"));
                let _ = t.start.set_enabled(state == "stopped");
                let _ = t.stop.set_enabled(state == "running" || state == "paused");
            }
            let _ = app.emit("vm-state", &state);
            last = state;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Opens the window on `view` (`containers`, `images`, `volumes`, `vm`).
pub fn run(backend: Backend, view: Option<String>) -> anyhow::Result<()> {
    // Windows and macOS always have a tray (menu bar); Linux needs libayatana-appindicator.
    let tray_lib = !cfg!(target_os = "linux")
        || [
            "/usr/lib/x86_64-linux-gnu/libayatana-appindicator3.so.1",
            "/usr/lib/aarch64-linux-gnu/libayatana-appindicator3.so.1",
        ]
        .iter()
        .any(|p| std::path::Path::new(p).exists());
    tauri::Builder::default()
        .plugin(tauri_plugin_opener::init())
        .manage(backend)
        .manage(Streams { next: AtomicU32::new(1), open: Mutex::new(HashMap::new()) })
        .invoke_handler(tauri::generate_handler![call, stream_open, stream_input, stream_resize, stream_close])
        .setup(move |app| {
            let url = format!("index.html#{}", view.as_deref().unwrap_or("containers"));
            let window = WebviewWindowBuilder::new(app, "main", WebviewUrl::App(url.into()))
                .title("Skiff")
                .inner_size(1200.0, 780.0)
                .min_inner_size(820.0, 520.0)
                .build()?;
            lean_webview(&window);
            // The tray needs libayatana-appindicator at run time; without it the app still works.
            if tray_lib {
                build_tray(app)?;
            } else {
                tracing::warn!("libayatana-appindicator3 is missing: no tray item");
            }
            tauri::async_runtime::spawn(watch_vm(app.handle().clone()));
            Ok(())
        })
        .on_window_event(|w, e| {
            if let WindowEvent::CloseRequested { api, .. } = e {
                if w.app_handle().try_state::<TrayItems>().is_some() {
                    let _ = w.hide();
                    api.prevent_close();
                }
            }
        })
        .run(tauri::generate_context!())?;
    Ok(())
}

/// An app's web view needs no browser caches: the document-viewer cache model turns off the
/// memory cache of decoded resources and the back/forward page cache (bench/desktop.sh).
fn lean_webview(window: &tauri::WebviewWindow) {
    #[cfg(target_os = "linux")]
    {
        let tuned = window.with_webview(|webview| {
            use webkit2gtk::{CacheModel, WebContextExt, WebViewExt};
            if let Some(context) = webview.inner().context() {
                context.set_cache_model(CacheModel::DocumentViewer);
            }
        });
        if let Err(e) = tuned {
            tracing::warn!(error = %e, "could not tune the web view");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = window;
}
