//! The tray (Linux, Windows) or menu-bar (macOS) icon, as users of Docker Desktop and OrbStack
//! know it: the engine's state, start and stop, open the window, quit. The state is followed by
//! polling (the daemon has no event feed); a click that changes it wakes the poll at once.

use std::sync::{Mutex, Once};
use std::time::Duration;

use serde_json::Value;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{Emitter, Manager};
use tokio::sync::Notify;

use crate::backend::Backend;

/// How often the engine's state is asked when nothing happens.
const POLL: Duration = Duration::from_secs(3);

/// What the tray shows for one engine state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    pub label: String,
    pub can_start: bool,
    pub can_stop: bool,
}

/// The tray's view of `state`: the daemon's VM state (`stopped`, `starting`, `running`, `paused`,
/// `stopping`), `busy:start`/`busy:stop` while a click's command runs, or for an engine Skiff does
/// not manage (`--docker-host`) `external-up`/`external-down`.
pub fn view(state: &str) -> TrayView {
    let (label, can_start, can_stop) = match state {
        "stopped" => ("Engine: stopped", true, false),
        "starting" | "busy:start" => ("Engine: starting…", false, false),
        "running" => ("Engine: running", false, true),
        "paused" => ("Engine: paused (host asleep)", false, true),
        "stopping" | "busy:stop" => ("Engine: stopping…", false, false),
        "external-up" => ("Engine: running (not managed by Skiff)", false, false),
        "external-down" => ("Engine: not reachable (not managed by Skiff)", false, false),
        other => return TrayView { label: format!("Engine: {other}"), can_start: true, can_stop: true },
    };
    TrayView { label: label.to_string(), can_start, can_stop }
}

/// The menu items whose text or state follows the engine.
struct Items {
    status: MenuItem<tauri::Wry>,
    start: MenuItem<tauri::Wry>,
    stop: MenuItem<tauri::Wry>,
}

/// The tray's shared state: its items and the click in progress.
pub struct Tray {
    items: Items,
    busy: Mutex<Option<&'static str>>,
}

/// Wakes the engine-state poll (`watch`) before its next round: a click's command ended, or the
/// tray appeared and should show the state at once.
#[derive(Default)]
pub struct Poll {
    wake: Notify,
}

impl Tray {
    fn show(&self, state: &str) {
        let v = view(state);
        let _ = self.items.status.set_text(&v.label);
        let _ = self.items.start.set_enabled(v.can_start);
        let _ = self.items.stop.set_enabled(v.can_stop);
    }

    fn busy(&self) -> Option<&'static str> {
        self.busy.lock().map(|b| *b).unwrap_or(None)
    }

    fn set_busy(&self, what: Option<&'static str>) {
        if let Ok(mut b) = self.busy.lock() {
            *b = what;
        }
    }
}

/// Shows the main window (and brings it forward).
pub fn show_window(app: &tauri::AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

/// Whether this system can show a tray icon: Windows and macOS always have a tray (menu bar);
/// Linux needs libayatana-appindicator at run time.
pub fn available() -> bool {
    !cfg!(target_os = "linux")
        || [
            "/usr/lib/x86_64-linux-gnu/libayatana-appindicator3.so.1",
            "/usr/lib/aarch64-linux-gnu/libayatana-appindicator3.so.1",
        ]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

/// Builds the tray on the main thread, the first time it is called (where there is a tray).
pub fn build_once(app: &tauri::AppHandle) {
    static BUILT: Once = Once::new();
    if !available() {
        return;
    }
    let handle = app.clone();
    let queued = app.run_on_main_thread(move || {
        BUILT.call_once(|| match build(&handle) {
            Ok(()) => handle.state::<Poll>().wake.notify_one(),
            Err(e) => tracing::warn!(error = %e, "no tray item"),
        });
    });
    if let Err(e) = queued {
        tracing::warn!(error = %e, "no tray item");
    }
}

/// Builds the tray icon and its menu; `Tray` is then managed by the app.
fn build(app: &tauri::AppHandle) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "Engine: …", false, None::<&str>)?;
    let show = MenuItem::with_id(app, "show", "Open Skiff", true, None::<&str>)?;
    let start = MenuItem::with_id(app, "engine-start", "Start engine", false, None::<&str>)?;
    let stop = MenuItem::with_id(app, "engine-stop", "Stop engine", false, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Skiff", true, None::<&str>)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&status, &sep, &show, &start, &stop, &sep, &quit])?;
    let mut tray =
        TrayIconBuilder::with_id("main").menu(&menu).tooltip("Skiff").on_menu_event(|app, ev| match ev.id.as_ref() {
            "show" => show_window(app),
            "engine-start" => run_engine_command(app, "vm_start", "busy:start"),
            "engine-stop" => run_engine_command(app, "vm_stop", "busy:stop"),
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    app.manage(Tray { items: Items { status, start, stop }, busy: Mutex::new(None) });
    Ok(())
}

/// `vm_start` / `vm_stop` from a click: the tray says so at once, the window is told, and the
/// poll looks again as soon as the command ends (its error goes to the window and the log).
fn run_engine_command(app: &tauri::AppHandle, cmd: &'static str, busy: &'static str) {
    let Some(tray) = app.try_state::<Tray>() else { return };
    if tray.busy().is_some() {
        return;
    }
    tray.set_busy(Some(busy));
    tray.show(busy);
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let backend = app.state::<Backend>().inner().clone();
        let _ = app.emit("vm-busy", cmd);
        if let Err(e) = backend.call(cmd, &Value::Null).await {
            tracing::warn!(cmd, error = %e, "tray command failed");
            let _ = app.emit("vm-error", e);
        }
        if let Some(tray) = app.try_state::<Tray>() {
            tray.set_busy(None);
        }
        app.state::<Poll>().wake.notify_one();
    });
}

/// The engine's state as `view` names it.
async fn engine_state(backend: &Backend) -> String {
    if backend.vm.is_none() {
        let up = backend.call("engine", &Value::Null).await.ok().and_then(|v| v.get("up").and_then(Value::as_bool));
        return if up == Some(true) { "external-up" } else { "external-down" }.to_string();
    }
    match backend.call("vm_status", &Value::Null).await {
        Ok(s) => s.get("state").and_then(Value::as_str).unwrap_or("unknown").to_string(),
        Err(e) => {
            tracing::debug!(error = %e, "vm status");
            "unknown".to_string()
        }
    }
}

/// Follows the engine's state for the tray and the window (`vm-state` events).
pub async fn watch(app: tauri::AppHandle) {
    let backend = app.state::<Backend>().inner().clone();
    let poll = app.state::<Poll>();
    let mut last = String::new();
    loop {
        let state = engine_state(&backend).await;
        let tray = app.try_state::<Tray>();
        let busy = tray.as_ref().and_then(|t| t.busy());
        if state != last {
            if let (Some(t), None) = (&tray, busy) {
                t.show(&state);
            }
            let _ = app.emit("vm-state", &state);
            last = state;
        }
        let _ = tokio::time::timeout(POLL, poll.wake.notified()).await;
        // A finished click may leave the state as it was (a failed start), and a tray that has
        // just appeared shows nothing yet: show it again.
        if let Some(t) = app.try_state::<Tray>().filter(|t| t.busy().is_none()) {
            t.show(&last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_offers_only_what_makes_sense() {
        let cases = [
            ("stopped", "Engine: stopped", true, false),
            ("starting", "Engine: starting…", false, false),
            ("busy:start", "Engine: starting…", false, false),
            ("running", "Engine: running", false, true),
            ("paused", "Engine: paused (host asleep)", false, true),
            ("stopping", "Engine: stopping…", false, false),
            ("busy:stop", "Engine: stopping…", false, false),
            ("external-up", "Engine: running (not managed by Skiff)", false, false),
            ("external-down", "Engine: not reachable (not managed by Skiff)", false, false),
            ("unknown", "Engine: unknown", true, true),
        ];
        for (state, label, can_start, can_stop) in cases {
            assert_eq!(view(state), TrayView { label: label.to_string(), can_start, can_stop }, "{state}");
        }
    }
}
