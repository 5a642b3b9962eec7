//! The daemon's own socket (`$SKIFF_HOME/run/daemon.sock`, mode 0600): JSON lines used by
//! `skiff status/stop` and the desktop app.

use serde::{Deserialize, Serialize};
use skiff_proto::control::{BootTimings, GuestStats};

use crate::accel::Accel;

/// What a client asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum DaemonRequest {
    Status,
    /// Shut the VM down cleanly (containers get `timeout_secs`), hard after a deadline. Answered
    /// with [`DaemonResponse::Stopped`] once the VM is gone.
    Stop {
        timeout_secs: u32,
    },
}

/// How the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DaemonResponse {
    Status(Box<Status>),
    Stopped { clean: bool },
    Error { message: String },
}

/// The VM's life stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    /// Paused by the hypervisor (see `paused_reason`).
    Paused,
    Stopping,
}

/// `skiff status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub daemon_pid: u32,
    pub hypervisor: String,
    /// The guest's architecture (`amd64`, `arm64`).
    #[serde(default)]
    pub arch: String,
    pub accel: Option<Accel>,
    pub accel_notice: Option<String>,
    pub cpus: u32,
    pub memory_mib: u32,
    pub disk_gib: u32,
    /// Host folders shared with the VM (at the same paths).
    pub shares: Vec<String>,
    pub docker_socket: String,
    /// Host processes of the VM (QEMU, vsock helper).
    pub vm_pids: Vec<u32>,
    /// Unix time the daemon started.
    pub started_at: u64,
    /// Milliseconds from the daemon's start to the engine answering.
    pub ready_ms: Option<u64>,
    pub boot: Option<BootTimings>,
    pub guest: Option<GuestStats>,
    pub paused_reason: Option<String>,
    /// What the VM's processes take of the host's memory now (their PSS; Linux hosts).
    #[serde(default)]
    pub host_memory_bytes: Option<u64>,
    /// What the data disk's sparse file takes on the host's disk now.
    #[serde(default)]
    pub disk_allocated_bytes: Option<u64>,
}
