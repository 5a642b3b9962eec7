//! The desktop window (Tauri 2): IPC commands over the backend, streams over Tauri channels, the
//! tray icon (`tray.rs`), and closing the window hides it (the tray keeps the app).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::Value;
use tauri::ipc::Channel;
use tauri::{Manager, State, WebviewUrl, WebviewWindowBuilder, WindowEvent};
use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::streams::{self, Control, Sink};
use crate::tray;

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

/// Opens the window on `view` (`containers`, `images`, `volumes`, `vm`); `hidden` starts in the
/// tray alone (at login), where there is a tray.
pub fn run(backend: Backend, view: Option<String>, hidden: bool) -> anyhow::Result<()> {
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
                .visible(!(hidden && tray_lib))
                .build()?;
            lean_webview(&window);
            // The tray needs libayatana-appindicator at run time; without it the app still works.
            if tray_lib {
                tray::build(app)?;
            } else {
                tracing::warn!("libayatana-appindicator3 is missing: no tray item");
            }
            tauri::async_runtime::spawn(tray::watch(app.handle().clone()));
            Ok(())
        })
        .on_window_event(|w, e| {
            if let WindowEvent::CloseRequested { api, .. } = e {
                if w.app_handle().try_state::<tray::Tray>().is_some() {
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
