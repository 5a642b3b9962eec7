//! The engine: the services behind the Docker API (images today; containers, volumes and networks
//! later). Functions here take typed arguments and return typed results or an `EngineError`; they
//! know nothing of HTTP.

pub mod build;
pub mod config_changes;
pub mod containers;
pub mod events;
pub mod filters;
pub mod go_json;
pub mod images;
pub mod import;
pub mod load;
pub mod networks;
pub mod new_image;
pub mod platform;
pub mod platform_group;
pub mod progress;
pub mod reference;
pub mod reference_grammar;
pub mod registry;
pub mod save;
pub mod swarm;
pub mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::store::{Store, StoreError};

/// Why an engine operation failed. The API maps each variant to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The named object does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed or names something invalid (400).
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is understood but not allowed (403), e.g. removing a network in use.
    #[error("{0}")]
    Forbidden(String),
    /// A registry refused our credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// A registry or archive could not be used (500, as Docker answers).
    #[error("{0}")]
    Upstream(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine cannot do this in its current mode (503), e.g. a swarm call outside a swarm.
    #[error("{0}")]
    Unavailable(String),
    /// Something that should not happen (500).
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// Whether this error is the client's fault (bad input), used to map store errors.
    pub fn is_bad_input(e: &StoreError) -> bool {
        matches!(e, StoreError::Unpack(_) | StoreError::DigestMismatch { .. } | StoreError::BadJson { .. })
    }
}

impl From<crate::net::NetError> for EngineError {
    fn from(e: crate::net::NetError) -> Self {
        use crate::net::NetError;
        match e {
            NetError::Invalid(m) => Self::InvalidArgument(m),
            NetError::Conflict(m) => Self::Forbidden(m),
            NetError::Exhausted(m) | NetError::PortInUse(m) | NetError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<tokio::task::JoinError> for EngineError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Internal(format!("engine task failed: {e}"))
    }
}

/// Engine-wide settings.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Where all state lives.
    pub root: PathBuf,
    /// Registries reached over plain HTTP besides `localhost` and `127.0.0.0/8`.
    pub insecure_registries: Vec<String>,
    /// Networking settings.
    pub net: crate::net::NetConfig,
    /// How clients write bind sources (Windows paths for an engine in WSL 2).
    pub host_paths: containers::host_paths::HostPaths,
}

/// The engine: shared by every request.
#[derive(Debug)]
pub struct Engine {
    /// Settings.
    pub config: EngineConfig,
    /// The image store.
    pub store: Arc<Store>,
    /// The event bus.
    pub events: events::EventBus,
    /// The containers.
    pub containers: containers::Containers,
    /// The volumes.
    pub volumes: volumes::Volumes,
    /// The networks.
    pub networks: networks::Networks,
    /// Exec sessions.
    pub execs: containers::exec::Execs,
    /// The host's cgroup layout.
    pub cgroups: crate::runtime::cgroup::Layout,
    /// Set when the engine shuts down (the VM powers off): restart policies wait for the next
    /// start instead of acting on the exits that the shutdown causes.
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// When the engine started.
    pub started: Instant,
    /// Which image each build step produced (`<root>/build/cache.json`).
    pub build_cache: build::cache::BuildCache,
    /// Swarm mode (`<root>/swarm`).
    pub swarm: swarm::Swarm,
    /// The swarm orchestrator's loop runs.
    pub swarm_orchestrator: std::sync::atomic::AtomicBool,
    /// Clean-up left to run after a request was answered (a removed container's files and
    /// cgroups, an exited one's root); the shutdown waits for it.
    pub background: tokio_util::task::TaskTracker,
}

impl Engine {
    /// Opens the engine's state under `config.root`.
    pub fn open(config: EngineConfig) -> Result<Self, EngineError> {
        // The registry client's TLS (rustls with ring): installed here, not in one `main`, so the
        // guest's PID 1 and `skiff-agent serve` alike can reach a registry. Already installed: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        std::fs::create_dir_all(&config.root)
            .map_err(|e| EngineError::Internal(format!("creating {}: {e}", config.root.display())))?;
        let store = Arc::new(Store::open(&config.root.join("image-store"))?);
        let containers = containers::Containers::open(&config.root.join("containers"))?;
        let volumes = volumes::Volumes::open(&config.root.join("volumes"))?;
        let networks = networks::Networks::open(&config.root.join("networks"), config.net.clone())?;
        let build_dir = config.root.join("build");
        build::clean_leftovers(&build_dir);
        if let Err(e) = std::fs::create_dir_all(&build_dir) {
            return Err(EngineError::Internal(format!("creating {}: {e}", build_dir.display())));
        }
        for d in ["containers", "volumes", "build"] {
            crate::store::topdir::mark(&config.root.join(d));
        }
        let build_cache = build::cache::BuildCache::open(build_dir.join("cache.json"));
        let swarm = swarm::Swarm::open(&config.root.join("swarm"))?;
        Ok(Self {
            config,
            store,
            events: events::EventBus::default(),
            containers,
            volumes,
            networks,
            execs: Default::default(),
            cgroups: crate::runtime::cgroup::detect(),
            shutting_down: Default::default(),
            started: Instant::now(),
            build_cache,
            swarm,
            swarm_orchestrator: Default::default(),
            background: tokio_util::task::TaskTracker::new(),
        })
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.config.root
    }
}

/// Runs blocking store work off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f).await?
}

/// The current time as RFC 3339 with nanoseconds, as Docker prints it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
