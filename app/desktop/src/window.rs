//! The desktop window (Tauri 2): IPC commands over the backend, streams over Tauri channels, the
//! tray icon (`tray.rs`), and closing the window hides it (the tray keeps the app).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::Value;
use tauri::ipc::Channel;
use tauri::{Manager, State, WebviewUrl, WebviewWindowBuilder, WindowEvent};
use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::first_screen::{self, FirstScreen};
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

/// The `boot` answer, asked for when the app starts, while WebKit starts (bench/desktop.sh): the
/// page's first call takes it; any later `boot` asks the engine again.
struct EarlyBoot(Mutex<Option<tauri::async_runtime::JoinHandle<Result<Value, String>>>>);

#[tauri::command]
async fn call(
    cmd: String,
    args: Option<Value>,
    backend: State<'_, Backend>,
    early: State<'_, EarlyBoot>,
    app: tauri::AppHandle,
) -> Result<Value, String> {
    match cmd.as_str() {
        "boot" => {
            let task = early.0.lock().map_err(|e| e.to_string())?.take();
            if let Some(task) = task {
                return task.await.map_err(|e| e.to_string())?;
            }
        }
        // The first list is on screen: the page no longer needs the main thread to itself.
        "ui_rendered" => tray::build_once(&app),
        _ => {}
    }
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
    let tray_lib = tray::available();
    let view = view.unwrap_or_else(|| "containers".into());
    // The first screen's data, asked for at once: the page's first request (index.html, drawn
    // with the list in it: first_screen.rs) and its first `boot` call take it.
    let first = Arc::new(FirstScreen::new(&view));
    let early = tauri::async_runtime::spawn({
        let (backend, first) = (backend.clone(), first.clone());
        async move {
            let boot = backend.call("boot", &Value::Null).await;
            first.offer(boot.as_ref().ok().cloned());
            boot
        }
    });
    let mut context = tauri::generate_context!();
    first_screen::serve(&mut context, first);
    tauri::Builder::default()
        .plugin(tauri_plugin_opener::init())
        .manage(backend)
        .manage(EarlyBoot(Mutex::new(Some(early))))
        .manage(tray::Poll::default())
        .manage(Streams { next: AtomicU32::new(1), open: Mutex::new(HashMap::new()) })
        .invoke_handler(tauri::generate_handler![call, stream_open, stream_input, stream_resize, stream_close])
        .setup(move |app| {
            let url = format!("index.html#{view}");
            let window = WebviewWindowBuilder::new(app, "main", WebviewUrl::App(url.into()))
                .title("Skiff")
                .inner_size(1200.0, 780.0)
                .min_inner_size(820.0, 520.0)
                .visible(!(hidden && tray_lib))
                .build()?;
            lean_webview(&window);
            // The tray needs libayatana-appindicator at run time; without it the app still works.
            // Building it (its D-Bus registration on Linux) holds the main thread, which the page
            // needs while it loads: it comes after the first list is on screen, or a second
            // after start at the latest; at once when the app starts in the tray alone.
            if !tray_lib {
                tracing::warn!("libayatana-appindicator3 is missing: no tray item");
            } else if hidden {
                tray::build_once(app.handle());
            } else {
                let handle = app.handle().clone();
                tauri::async_runtime::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    tray::build_once(&handle);
                });
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
        .run(context)?;
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
