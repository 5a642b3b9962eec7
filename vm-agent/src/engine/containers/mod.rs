//! Container service: one file per verb (create, start, stop, kill, wait, pause, rename, update,
//! remove, prune), the exit monitor and recovery; views, exec, archive, health, networking beside.
//! State lives in `<root>/containers/<id>/` (record, bundle, log); the runtime starts processes.

pub mod archive;
pub mod commit;
pub mod create;
mod early_cgroup;
pub mod endpoint;
pub mod exec;
pub mod exit;
pub mod health;
pub mod health_state;
pub mod host_config;
pub mod host_paths;
pub mod io;
pub mod kill;
pub mod links;
pub mod mounts;
pub mod names;
pub mod network;
pub mod pause;
pub mod prune;
pub mod record;
pub mod recover;
pub mod remove;
pub mod rename;
pub mod restart_policy;
pub mod spec;
pub mod start;
mod start_transaction;
pub mod stats;
pub mod stdio;
pub mod stop;
pub mod update;
pub mod view;
pub mod volume_use;
pub mod wait;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bollard_stubs::models::EventMessageTypeEnum;
use tokio::sync::watch;

use super::{now_rfc3339, Engine, EngineError};
use crate::runtime::cgroup;
use crate::store::atomic;
use crate::store::lazy_sync::LazySync;
use io::IoHub;
use record::{ContainerRecord, Status};

pub use create::create;
pub use host_config::{keeps_logs, limits_of};
pub use kill::{kill, parse_signal};
pub use pause::set_paused;
pub use prune::prune;
pub use recover::recover;
pub use remove::remove;
pub use rename::rename;
pub use start::start;
pub use stop::{stop, stop_all_for_shutdown};
pub use update::update;
pub use volume_use::volume_users;
pub use wait::{wait, WaitCondition};

/// One container.
#[derive(Debug)]
pub struct Container {
    /// 64 hex digits.
    pub id: String,
    dir: PathBuf,
    record: Mutex<ContainerRecord>,
    io: watch::Sender<Option<Arc<IoHub>>>,
    /// (number of exits so far, last exit code).
    exits: watch::Sender<(u64, i32)>,
    removed: watch::Sender<bool>,
    /// Serialises start/stop/remove on this container.
    op: Arc<tokio::sync::Mutex<()>>,
    /// Its network while it runs.
    sandbox: Mutex<Option<crate::net::Sandbox>>,
    /// Makes its record durable a moment after each change.
    sync: Arc<LazySync>,
    /// Its cgroups, made ahead of its first start.
    early_cgroup: Mutex<Option<early_cgroup::EarlyCgroup>>,
}

impl Container {
    /// A copy of the record.
    pub fn record(&self) -> ContainerRecord {
        self.with_record(ContainerRecord::clone)
    }

    /// Reads the record in place (no copy). `f` must not lock this container again.
    pub fn with_record<T>(&self, f: impl FnOnce(&ContainerRecord) -> T) -> T {
        f(&self.record.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn update(&self, f: impl FnOnce(&mut ContainerRecord)) -> Result<(), EngineError> {
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        if r.state.status == Status::Removing {
            return Ok(()); // its directory is going away
        }
        f(&mut r);
        atomic::replace_json(&self.dir.join("container.json"), &*r)
            .map_err(|e| EngineError::Internal(format!("saving container state: {e}")))?;
        self.sync.request();
        Ok(())
    }

    /// The running output hub, if any.
    pub fn io(&self) -> Option<Arc<IoHub>> {
        self.io.borrow().clone()
    }

    /// Watches the output hub (set at each start, cleared at exit).
    pub fn io_watch(&self) -> watch::Receiver<Option<Arc<IoHub>>> {
        self.io.subscribe()
    }

    /// Watches removal.
    pub fn removed_watch(&self) -> watch::Receiver<bool> {
        self.removed.subscribe()
    }

    /// The json-file log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-json.log", self.id))
    }

    /// Creates the bundle's root, upper and work directories and returns the image's layer
    /// directories, top first (the overlay's lower dirs).
    pub fn prepare_layers(
        &self,
        engine: &Engine,
        image: &crate::store::StoredImage,
    ) -> Result<Vec<String>, EngineError> {
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(self.dir.join(d))
                .map_err(|e| EngineError::Internal(format!("preparing bundle: {e}")))?;
        }
        Ok(lower_dirs(engine, image))
    }

    /// The container's cgroup(s).
    pub fn cgroup(&self, engine: &Engine) -> cgroup::Cgroup {
        cgroup::Cgroup::new(engine.cgroups.clone(), &self.id)
    }

    /// Serialises whole-container operations (start, stop, remove, filesystem access).
    pub async fn op_lock(self: &Arc<Self>) -> tokio::sync::OwnedMutexGuard<()> {
        self.op.clone().lock_owned().await
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether its process runs.
    pub fn is_running(&self) -> bool {
        self.with_record(|r| matches!(r.state.status, Status::Running | Status::Paused))
    }
}

/// All containers.
#[derive(Debug)]
pub struct Containers {
    dir: PathBuf,
    map: RwLock<HashMap<String, Arc<Container>>>,
    sync: Arc<LazySync>,
}

impl Containers {
    /// Loads every container under `dir`. Processes do not survive an agent restart yet, so
    /// containers recorded as running are marked exited, with the reason.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::Internal(format!("creating {}: {e}", dir.display())))?;
        let mut map = HashMap::new();
        let sync = LazySync::new(dir.to_path_buf());
        for entry in std::fs::read_dir(dir).map_err(|e| EngineError::Internal(e.to_string()))?.flatten() {
            let cdir = entry.path();
            // A removed container whose files the previous engine was still deleting.
            if entry.file_name().to_string_lossy().starts_with(remove::DISCARDED) {
                let _ = std::fs::remove_dir_all(&cdir);
                continue;
            }
            let Ok(bytes) = std::fs::read(cdir.join("container.json")) else {
                let _ = std::fs::remove_dir_all(&cdir);
                continue;
            };
            let Ok(mut rec) = serde_json::from_slice::<ContainerRecord>(&bytes) else {
                tracing::warn!(dir = %cdir.display(), "unreadable container record; leaving it alone");
                continue;
            };
            if matches!(rec.state.status, Status::Running | Status::Paused | Status::Restarting) {
                // Its stdio pipes died with the previous engine, so it cannot be re-adopted
                // faithfully: `recover` ends what is left of it and applies the restart policy.
                rec.state.status = Status::Exited;
                rec.state.exit_code = 255;
                rec.state.error = "the engine restarted while the container ran".into();
                rec.state.finished_at = now_rfc3339();
                rec.state.pid = 0;
                if let Some(h) = rec.state.health.as_mut() {
                    h.status = health::HealthStatus::Unhealthy;
                }
                rec.was_running = true;
                let _ = atomic::write_json(&cdir.join("container.json"), &rec);
            }
            let c = new_container(cdir, rec, sync.clone());
            map.insert(c.id.clone(), Arc::new(c));
        }
        Ok(Self { dir: dir.to_path_buf(), map: RwLock::new(map), sync })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Container>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every container.
    pub fn all(&self) -> Vec<Arc<Container>> {
        self.read().values().cloned().collect()
    }

    /// Finds by full id, name, or unique id prefix.
    pub fn get(&self, name: &str) -> Result<Arc<Container>, EngineError> {
        let name = name.strip_prefix('/').unwrap_or(name);
        let map = self.read();
        if let Some(c) = map.get(name) {
            return Ok(c.clone());
        }
        if let Some(c) = map.values().find(|c| c.record().name == name) {
            return Ok(c.clone());
        }
        let matches: Vec<_> = map.values().filter(|c| !name.is_empty() && c.id.starts_with(name)).cloned().collect();
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 => Err(EngineError::NotFound(format!("No such container: {name}"))),
            _ => Err(EngineError::InvalidArgument(format!("multiple containers found with provided prefix: {name}"))),
        }
    }

    /// The directory of container `id`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Whether any container uses image `id`.
    pub fn image_in_use(&self, id: &crate::store::digest::Digest) -> Option<String> {
        self.read().values().find(|c| &c.record().image_id == id).map(|c| c.id.clone())
    }

    /// The ids of every container made from image `id`.
    pub fn using_image(&self, id: &crate::store::digest::Digest) -> Vec<String> {
        self.read().values().filter(|c| &c.record().image_id == id).map(|c| c.id.clone()).collect()
    }
}

/// An image's layer directories as overlay lower dirs, top first. A layer that occurs twice
/// (two build steps that changed nothing have the same empty layer) is kept once, at its top-most
/// place: overlayfs refuses a lower directory given twice, and the lower copy adds nothing the
/// upper one does not.
pub fn lower_dirs(engine: &Engine, image: &crate::store::StoredImage) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    image
        .record
        .layers
        .iter()
        .rev()
        .filter(|l| seen.insert(l.diff_id.clone()))
        .map(|l| engine.store.layer_diff_dir(&l.diff_id).display().to_string())
        .collect()
}

fn new_container(dir: PathBuf, rec: ContainerRecord, sync: Arc<LazySync>) -> Container {
    let code = rec.state.exit_code;
    Container {
        id: rec.id.clone(),
        dir,
        record: Mutex::new(rec),
        io: watch::channel(None).0,
        exits: watch::channel((0, code)).0,
        removed: watch::channel(false).0,
        op: Arc::new(tokio::sync::Mutex::new(())),
        sandbox: Mutex::new(None),
        sync,
        early_cgroup: Mutex::new(None),
    }
}

fn event(engine: &Engine, action: &str, c: &ContainerRecord, extra: &[(&str, String)]) {
    let mut attrs = HashMap::from([("name".to_string(), c.name.clone()), ("image".to_string(), c.image.clone())]);
    for (k, v) in c.config.labels.iter().flatten() {
        attrs.insert(k.clone(), v.clone());
    }
    for (k, v) in extra {
        attrs.insert((*k).to_string(), v.clone());
    }
    engine.events.publish(EventMessageTypeEnum::CONTAINER, action, &c.id, attrs);
}
