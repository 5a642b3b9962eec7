//! The VM, as the app controls it: state and statistics from the Skiff daemon's socket; start,
//! stop and reset through the `skiff` command (the same code paths as the CLI, so the app never
//! half-starts a VM differently); settings in `$SKIFF_HOME/config.json` (applied at the next boot).

use std::path::PathBuf;
#[cfg(unix)]
use std::time::Duration;

use serde_json::{json, Value};
use skiff::config::{Overrides, VmConfig};
#[cfg(unix)]
use skiff::daemon::rpc::{DaemonRequest, DaemonResponse};
use skiff::home::Home;

/// Console bytes shown in the VM view.
const CONSOLE_TAIL: u64 = 64 * 1024;

/// One Skiff home.
#[derive(Debug, Clone)]
pub struct Vm {
    /// `$SKIFF_HOME`.
    pub home: Home,
    /// The `skiff` command.
    pub skiff: PathBuf,
}

/// The `skiff` binary next to this one, else on PATH.
pub fn find_skiff() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(if cfg!(windows) { "skiff.exe" } else { "skiff" })))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("skiff"))
}

impl Vm {
    /// Runs `skiff ARGS` to completion; its stderr is the error.
    async fn skiff(&self, args: &[&str]) -> Result<Value, String> {
        let out = tokio::process::Command::new(&self.skiff)
            .args(args)
            .env("SKIFF_HOME", self.home.root())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("running {}: {e}", self.skiff.display()))?;
        if out.status.success() {
            Ok(json!({"output": String::from_utf8_lossy(&out.stdout)}))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The engine's status as `skiff status --json` gives it (Windows: the WSL engine has no
    /// daemon socket of its own to ask).
    #[cfg(windows)]
    pub async fn status(&self) -> Result<Value, String> {
        let out = self.skiff(&["status", "--json"]).await?;
        let text = out.get("output").and_then(Value::as_str).unwrap_or_default();
        serde_json::from_str(text.trim()).map_err(|e| format!("skiff status: {e}"))
    }

    /// The daemon's status, or `stopped`.
    #[cfg(unix)]
    pub async fn status(&self) -> Result<Value, String> {
        let socket = self.home.daemon_socket();
        let answer = tokio::task::spawn_blocking(move || {
            skiff::client::call(&socket, &DaemonRequest::Status, Duration::from_secs(3))
        })
        .await
        .map_err(|e| e.to_string())?;
        match answer {
            None => Ok(json!({"state": "stopped"})),
            Some(Ok(DaemonResponse::Status(s))) => serde_json::to_value(s).map_err(|e| e.to_string()),
            Some(Ok(other)) => Err(format!("unexpected answer from the daemon: {other:?}")),
            Some(Err(e)) => Err(e),
        }
    }

    /// `skiff start` (returns once the engine answers).
    pub async fn start(&self) -> Result<Value, String> {
        self.skiff(&["start"]).await
    }

    /// `skiff stop`.
    pub async fn stop(&self) -> Result<Value, String> {
        self.skiff(&["stop"]).await
    }

    /// Stops the VM and deletes its disk (images, containers, volumes); settings stay.
    pub async fn reset(&self) -> Result<Value, String> {
        self.skiff(&["stop"]).await?;
        self.skiff(&["delete", "--force"]).await
    }

    /// CPUs, memory and disk as saved.
    pub fn settings(&self) -> Result<Value, String> {
        let cfg = VmConfig::load(&self.home.config_file()).map_err(|e| e.to_string())?;
        Ok(json!({"cpus": cfg.cpus, "memory_mib": cfg.memory_mib, "disk_gib": cfg.disk_gib}))
    }

    /// Saves new settings (validated as the CLI's flags are); they apply at the next start.
    pub fn save_settings(&self, args: &Value) -> Result<Value, String> {
        let num = |k: &str| args.get(k).and_then(Value::as_u64).map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        let o = Overrides {
            cpus: num("cpus"),
            memory_mib: num("memory_mib"),
            disk_gib: num("disk_gib"),
            ..Default::default()
        };
        let path = self.home.config_file();
        let cfg = VmConfig::load(&path).and_then(|c| c.apply(&o)).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(self.home.root()).map_err(|e| e.to_string())?;
        cfg.save(&path).map_err(|e| e.to_string())?;
        self.settings()
    }

    /// The end of the console log (kernel and engine).
    pub fn console_tail(&self) -> Result<Value, String> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.home.console_log();
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(json!({"text": ""})),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        f.seek(SeekFrom::Start(len.saturating_sub(CONSOLE_TAIL))).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        Ok(json!({"text": String::from_utf8_lossy(&bytes)}))
    }
}
