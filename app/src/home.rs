//! `$SKIFF_HOME` (default `~/.skiff`; on Windows `%LOCALAPPDATA%\Skiff`): every file of the host
//! side, named in one place.

use std::path::{Path, PathBuf};

/// The user's home directory (`HOME`; on Windows `USERPROFILE`).
pub fn user_home() -> PathBuf {
    let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_default()
}

/// Where Skiff keeps its files unless `SKIFF_HOME` says: `%LOCALAPPDATA%\Skiff` on Windows (per
/// machine user, not roamed), `~/.skiff` elsewhere.
fn default_root() -> PathBuf {
    if cfg!(windows) {
        if let Some(local) = std::env::var_os("LOCALAPPDATA").filter(|v| !v.is_empty()) {
            return PathBuf::from(local).join("Skiff");
        }
    }
    user_home().join(".skiff")
}

/// The layout of `$SKIFF_HOME`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$SKIFF_HOME`, else the OS's default.
    pub fn from_env() -> Self {
        let root =
            std::env::var_os("SKIFF_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).unwrap_or_else(default_root);
        Self::at(root)
    }

    /// A home at `root` (made absolute, so sockets and QEMU arguments never depend on the cwd).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root =
            if root.is_absolute() { root } else { std::env::current_dir().map(|d| d.join(&root)).unwrap_or(root) };
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The user's Docker socket (mode 0600).
    pub fn docker_socket(&self) -> PathBuf {
        self.root.join("docker.sock")
    }
    /// Persistent settings (`skiff start --cpus/--memory/--disk/--accel`).
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.json")
    }
    /// The VM's data disk (a sparse raw image).
    pub fn disk(&self) -> PathBuf {
        self.root.join("disk.raw")
    }
    /// Logs: the daemon's, the VM console's.
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.log_dir().join("daemon.log")
    }
    pub fn console_log(&self) -> PathBuf {
        self.log_dir().join("console.log")
    }
    /// Runtime files of one daemon's life: sockets, lock, pid files.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    /// Held (flock) by the running daemon for its whole life.
    pub fn lock_file(&self) -> PathBuf {
        self.run_dir().join("daemon.lock")
    }
    /// The daemon's own control socket (`skiff status/stop`, the GUI).
    pub fn daemon_socket(&self) -> PathBuf {
        self.run_dir().join("daemon.sock")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.run_dir().join("qmp.sock")
    }
    /// vhost-user socket between QEMU and vhost-device-vsock.
    pub fn vhost_vsock_socket(&self) -> PathBuf {
        self.run_dir().join("vhost-vsock.sock")
    }
    /// vhost-device-vsock's host side: `CONNECT <port>` here reaches the guest.
    pub fn vsock_socket(&self) -> PathBuf {
        self.run_dir().join("vsock.sock")
    }
    /// The WSL 2 distribution's disk (Windows).
    pub fn wsl_dir(&self) -> PathBuf {
        self.root.join("wsl")
    }
    /// The accelerator probe's cached verdict (per host boot).
    pub fn accel_cache(&self) -> PathBuf {
        self.run_dir().join("accel.json")
    }
}
