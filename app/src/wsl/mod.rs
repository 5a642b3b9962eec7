//! The Windows back end: the engine runs in a WSL 2 distribution imported from Skiff's guest
//! image (`vm-image/build.py` writes `wsl-rootfs.tar`), as Docker Desktop, Podman and Rancher
//! Desktop do. Each connection to the user's Docker endpoint (the named pipe
//! `\\.\pipe\skiff_engine`) is carried by its own `skiff-agent dial-stdio` in the distro: the
//! same contract as `docker system dial-stdio`, half-close kept. Windows drives are `/mnt/<drive>`
//! there (the engine runs with `--host-paths windows`, so `-v C:\src:/src` works), and WSL
//! forwards the distro's published ports to the host's localhost.
//!
//! Every `wsl.exe` call goes through [`commands::WslCommands`]; the endpoint is
//! [`crate::endpoint`] with this engine as its [`crate::endpoint::Dial`].

pub mod commands;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::commands::WslCommands;

/// Where things are, inside and outside the distribution.
#[derive(Debug, Clone)]
pub struct WslConfig {
    /// The distribution's name (`skiff`).
    pub distro: String,
    /// Where WSL keeps the distribution's disk (`%LOCALAPPDATA%\Skiff\wsl`).
    pub install_dir: PathBuf,
    /// The root file system to import (`wsl-rootfs.tar` of the guest image).
    pub rootfs: PathBuf,
    /// The engine's socket inside the distribution.
    pub socket: String,
    /// The engine's state inside the distribution.
    pub root: String,
    /// The engine's pid file inside the distribution.
    pub pid_file: String,
    /// Where the engine's output goes on the host (`None`: nowhere).
    pub log: Option<PathBuf>,
}

impl WslConfig {
    /// The standard layout: distribution `skiff`, its disk under `install_dir`.
    pub fn standard(install_dir: PathBuf, rootfs: PathBuf) -> Self {
        Self {
            distro: "skiff".into(),
            install_dir,
            rootfs,
            socket: "/run/skiff/docker.sock".into(),
            root: "/var/lib/skiff".into(),
            pid_file: "/run/skiff/agent.pid".into(),
            log: None,
        }
    }
}

/// Why the WSL engine could not be brought up or reached.
#[derive(Debug, thiserror::Error)]
pub enum WslError {
    #[error("WSL: {what}: {source}")]
    Wsl { what: &'static str, source: std::io::Error },
    #[error("the engine in WSL did not answer within {0:?}: {1}")]
    NotReady(Duration, String),
    #[error("the root file system {0} is missing (build it with vm-image/build.py)")]
    NoRootfs(PathBuf),
}

fn wsl_err(what: &'static str) -> impl FnOnce(std::io::Error) -> WslError {
    move |source| WslError::Wsl { what, source }
}

/// The engine in its WSL distribution.
pub struct WslEngine<W: WslCommands> {
    wsl: W,
    cfg: WslConfig,
    server: tokio::sync::Mutex<Option<tokio::process::Child>>,
}

impl<W: WslCommands> std::fmt::Debug for WslEngine<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WslEngine").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl<W: WslCommands> WslEngine<W> {
    pub fn new(wsl: W, cfg: WslConfig) -> Self {
        Self { wsl, cfg, server: tokio::sync::Mutex::new(None) }
    }

    pub fn config(&self) -> &WslConfig {
        &self.cfg
    }

    /// Imports the distribution unless it is registered; returns whether it was imported now.
    pub fn ensure_imported(&self) -> Result<bool, WslError> {
        let known = self.wsl.distros().map_err(wsl_err("listing distributions"))?;
        if known.iter().any(|d| d.eq_ignore_ascii_case(&self.cfg.distro)) {
            return Ok(false);
        }
        if !self.cfg.rootfs.is_file() {
            return Err(WslError::NoRootfs(self.cfg.rootfs.clone()));
        }
        std::fs::create_dir_all(&self.cfg.install_dir).map_err(wsl_err("creating the distribution's directory"))?;
        self.wsl.import(&self.cfg.distro, &self.cfg.install_dir, &self.cfg.rootfs).map_err(wsl_err("importing"))?;
        Ok(true)
    }

    /// Starts the engine in the distribution and waits until it answers `/_ping`.
    pub async fn start(&self, patience: Duration) -> Result<(), WslError> {
        self.ensure_imported()?;
        let c = &self.cfg;
        let args = [
            "serve",
            "--socket",
            c.socket.as_str(),
            "--root",
            c.root.as_str(),
            "--pid-file",
            c.pid_file.as_str(),
            "--host-paths",
            "windows",
        ];
        let mut cmd = self.wsl.command(&c.distro, "skiff-agent", &args);
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        if let Some(log) = &c.log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(wsl_err("opening the engine log"))?;
            let err = file.try_clone().map_err(wsl_err("opening the engine log"))?;
            cmd.stdout(file).stderr(err);
        }
        let child = cmd.spawn().map_err(wsl_err("starting the engine"))?;
        *self.server.lock().await = Some(child);
        let deadline = Instant::now() + patience;
        loop {
            match self.ping().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(WslError::NotReady(patience, e.to_string())),
                Err(_) => {}
            }
            if let Some(child) = self.server.lock().await.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(WslError::NotReady(patience, format!("the engine exited ({status})")));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One connection to the engine: a `skiff-agent dial-stdio` in the distribution.
    pub fn dial_process(&self) -> std::io::Result<tokio::process::Child> {
        let mut cmd = self.wsl.command(&self.cfg.distro, "skiff-agent", &["dial-stdio", "--socket", &self.cfg.socket]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd.spawn()
    }

    /// `GET /_ping` through a dialled connection.
    pub async fn ping(&self) -> std::io::Result<()> {
        let mut child = self.dial_process()?;
        let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("no stdin"))?;
        stdin.write_all(b"GET /_ping HTTP/1.1\r\nHost: skiff\r\nConnection: close\r\n\r\n").await?;
        // stdin stays open until the answer is in: the engine closes the connection after it.
        let mut answer = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            tokio::time::timeout(Duration::from_secs(5), out.read_to_end(&mut answer))
                .await
                .map_err(|_| std::io::Error::other("no answer"))??;
        }
        drop(stdin);
        let _ = child.wait().await;
        if answer.starts_with(b"HTTP/1.1 200") {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("unexpected answer: {:?}", String::from_utf8_lossy(&answer))))
        }
    }

    /// Waits until the engine's process (started by [`WslEngine::start`]) has ended.
    pub async fn wait(&self) {
        loop {
            {
                let mut server = self.server.lock().await;
                match server.as_mut() {
                    None => return,
                    Some(child) => {
                        if !matches!(child.try_wait(), Ok(None)) {
                            return;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the engine as SIGTERM does (containers first), then the distribution.
    pub async fn stop(&self, patience: Duration) -> Result<(), WslError> {
        let secs = patience.as_secs().max(1).to_string();
        let mut cmd = self.wsl.command(
            &self.cfg.distro,
            "skiff-agent",
            &["kill", "--pid-file", &self.cfg.pid_file, "--timeout", &secs],
        );
        let status = cmd.status().await.map_err(wsl_err("stopping the engine"))?;
        if let Some(mut child) = self.server.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let _ = child.kill().await;
        }
        self.wsl.terminate(&self.cfg.distro).map_err(wsl_err("terminating the distribution"))?;
        if status.success() {
            Ok(())
        } else {
            Err(WslError::Wsl { what: "stopping the engine", source: std::io::Error::other(format!("{status}")) })
        }
    }
}

impl<W: WslCommands + 'static> crate::endpoint::Dial for WslEngine<W> {
    fn dial(&self) -> std::io::Result<crate::endpoint::Upstream> {
        crate::endpoint::Upstream::of_process(self.dial_process()?)
    }
}
