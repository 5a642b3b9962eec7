//! What the engine persists per container (`containers/<id>/container.json`), written atomically
//! on every state change so an agent restart finds every container as it was.

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

use crate::store::digest::Digest;

/// Lifecycle state, as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started (or failed to start).
    Created,
    /// Its process runs.
    Running,
    /// Frozen.
    Paused,
    /// Being restarted by its policy.
    Restarting,
    /// Its process ended.
    Exited,
    /// Being removed.
    Removing,
    /// Unusable.
    Dead,
}

impl Status {
    /// Docker's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Exited => "exited",
            Self::Removing => "removing",
            Self::Dead => "dead",
        }
    }
}

/// Runtime state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Lifecycle state.
    pub status: Status,
    /// Host pid of the container's PID 1 while running.
    pub pid: i32,
    /// Last exit code.
    pub exit_code: i32,
    /// Last start failure.
    pub error: String,
    /// RFC 3339 start time (Docker's zero time before the first start).
    pub started_at: String,
    /// RFC 3339 end time.
    pub finished_at: String,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
    /// Health-check state, for containers with a health check once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health_state::Health>,
}

/// Docker's zero time.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Default for State {
    fn default() -> Self {
        Self {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            oom_killed: false,
            health: None,
        }
    }
}

/// Everything about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The image as the user named it.
    pub image: String,
    /// The image's id.
    pub image_id: Digest,
    /// The command line: entrypoint + cmd.
    pub args: Vec<String>,
    /// Effective config (request merged with the image's defaults).
    pub config: ContainerConfig,
    /// Host settings.
    pub host_config: HostConfig,
    /// Runtime state.
    pub state: State,
    /// How often the restart policy restarted it.
    #[serde(default)]
    pub restart_count: i64,
    /// Whether the user stopped it (`stop`, `kill`): restart policies then leave it alone.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Whether it was running when the engine last went away (restart policies apply on start-up).
    #[serde(default)]
    pub was_running: bool,
    /// Binds, volumes and tmpfs mounts, resolved at create.
    #[serde(default)]
    pub mounts: Vec<super::mounts::MountRecord>,
    /// The networks it joins, by name (addresses filled in while it runs).
    #[serde(default)]
    pub networks: std::collections::BTreeMap<String, super::endpoint::EndpointRecord>,
    /// Its published ports while it runs.
    #[serde(default)]
    pub ports: Vec<crate::net::ports::PublishedPort>,
}
