//! Container service: create, start, stop, kill, wait, remove, list, inspect, logs, attach.
//! State lives in `<root>/containers/<id>/` (record, bundle, log); the runtime starts processes.

pub mod archive;
pub mod exec;
pub mod health;
pub mod io;
pub mod mounts;
pub mod names;
pub mod network;
pub mod record;
pub mod spec;
pub mod stats;
pub mod view;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bollard_stubs::models::{ContainerConfig, ContainerCreateBody, EventMessageTypeEnum, HostConfig};
use tokio::sync::watch;

use super::{blocking, images, now_rfc3339, Engine, EngineError};
use crate::runtime::{self, cgroup, reaper, ErrorKind};
use crate::store::atomic;
use io::{IoHub, STDERR, STDOUT};
use record::{ContainerRecord, State, Status};

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
}

impl Container {
    /// A copy of the record.
    pub fn record(&self) -> ContainerRecord {
        self.record.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut ContainerRecord)) -> Result<(), EngineError> {
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        if r.state.status == Status::Removing {
            return Ok(()); // its directory is going away
        }
        f(&mut r);
        atomic::write_json(&self.dir.join("container.json"), &*r)
            .map_err(|e| EngineError::Internal(format!("saving container state: {e}")))
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
        Ok(image
            .record
            .layers
            .iter()
            .rev()
            .map(|l| engine.store.layer_diff_dir(&l.diff_id).display().to_string())
            .collect())
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
        matches!(self.record().state.status, Status::Running | Status::Paused)
    }
}

/// All containers.
#[derive(Debug, Default)]
pub struct Containers {
    dir: PathBuf,
    map: RwLock<HashMap<String, Arc<Container>>>,
}

impl Containers {
    /// Loads every container under `dir`. Processes do not survive an agent restart yet, so
    /// containers recorded as running are marked exited, with the reason.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::Internal(format!("creating {}: {e}", dir.display())))?;
        let mut map = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| EngineError::Internal(e.to_string()))?.flatten() {
            let cdir = entry.path();
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
            let c = new_container(cdir, rec);
            map.insert(c.id.clone(), Arc::new(c));
        }
        Ok(Self { dir: dir.to_path_buf(), map: RwLock::new(map) })
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
}

fn new_container(dir: PathBuf, rec: ContainerRecord) -> Container {
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

/// Merges the request with the image's defaults, as Docker does.
fn effective_config(body: &ContainerCreateBody, image: &crate::store::StoredImage) -> (ContainerConfig, Vec<String>) {
    let img = image.config.config.clone().unwrap_or_default();
    let mut env: Vec<String> = img.env.clone().unwrap_or_default();
    for e in body.env.iter().flatten() {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let entrypoint = match &body.entrypoint {
        Some(ep) => ep.clone(),
        None => img.entrypoint.clone().unwrap_or_default(),
    };
    // An explicit entrypoint resets the image's cmd (Docker's rule).
    let cmd = match (&body.cmd, &body.entrypoint) {
        (Some(c), _) if !c.is_empty() => c.clone(),
        (_, Some(_)) => Vec::new(),
        _ => img.cmd.clone().unwrap_or_default(),
    };
    let mut labels = img.labels.clone().unwrap_or_default();
    labels.extend(body.labels.clone().unwrap_or_default());
    let config = ContainerConfig {
        hostname: body.hostname.clone(),
        domainname: body.domainname.clone(),
        user: body.user.clone().filter(|u| !u.is_empty()).or(img.user.clone()),
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        exposed_ports: body.exposed_ports.clone().or(img.exposed_ports.clone()),
        tty: body.tty,
        open_stdin: body.open_stdin,
        stdin_once: body.stdin_once,
        env: Some(env),
        cmd: Some(cmd.clone()),
        healthcheck: body.healthcheck.clone().or(img.healthcheck.clone()),
        image: body.image.clone(),
        // The image's volumes and the request's, each mount point once.
        volumes: match (body.volumes.clone(), img.volumes.clone()) {
            (None, None) => None,
            (a, b) => {
                let mut all: Vec<String> = a.unwrap_or_default().into_iter().chain(b.unwrap_or_default()).collect();
                all.sort();
                all.dedup();
                Some(all)
            }
        },
        working_dir: body.working_dir.clone().filter(|w| !w.is_empty()).or(img.working_dir.clone()),
        entrypoint: Some(entrypoint.clone()),
        labels: Some(labels),
        stop_signal: body.stop_signal.clone().or(img.stop_signal.clone()),
        stop_timeout: body.stop_timeout,
        ..Default::default()
    };
    let args = entrypoint.into_iter().chain(cmd).collect();
    (config, args)
}

/// `POST /containers/create`.
pub async fn create(
    engine: &Arc<Engine>,
    name: Option<&str>,
    body: ContainerCreateBody,
) -> Result<(String, Vec<String>), EngineError> {
    let image_name = body
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| EngineError::InvalidArgument("config.Image is required".into()))?;
    let image = images::resolve(engine, &image_name)?;
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) => {
            let n = n.strip_prefix('/').unwrap_or(n);
            if !names::valid(n) {
                return Err(EngineError::InvalidArgument(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
            n.to_string()
        }
        None => loop {
            let n = names::random();
            if engine.containers.get(&n).is_err() {
                break n;
            }
        },
    };
    let host = body.host_config.clone().unwrap_or_default();
    validate_host_config(&host)?;
    health::validate(body.healthcheck.as_ref())?;
    mounts::validate(&host)?;
    let (config, args) = effective_config(&body, &image);
    if args.is_empty() {
        return Err(EngineError::InvalidArgument("no command specified".into()));
    }
    if let Some(other) = engine.containers.all().into_iter().find(|c| c.record().name == name) {
        return Err(name_conflict(&name, &other.id));
    }
    network::check_hostname(&config)?;
    let networks = network::endpoints_at_create(engine, &name, &host, body.networking_config.as_ref())?;
    let mounts = mounts::resolve(engine, &config, &host)?;
    let warnings = unenforceable(&engine.cgroups, &limits_of(&host));
    let id = hex::encode(rand::random::<[u8; 32]>());
    let record = ContainerRecord {
        id: id.clone(),
        name: name.clone(),
        created: now_rfc3339(),
        image: image_name,
        image_id: image.record.id.clone(),
        args,
        config,
        host_config: host,
        state: State::default(),
        restart_count: 0,
        stopped_by_user: false,
        was_running: false,
        mounts,
        networks,
        ports: Vec::new(),
    };
    let dir = engine.containers.dir.join(&id);
    {
        let mut map = engine.containers.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(other) = map.values().find(|c| c.record().name == name) {
            let err = name_conflict(&name, &other.id);
            drop(map);
            remove_anonymous_volumes(engine, &record, None);
            return Err(err);
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::Internal(format!("creating container directory: {e}")))?;
        atomic::write_json(&dir.join("container.json"), &record)
            .map_err(|e| EngineError::Internal(format!("saving container: {e}")))?;
        map.insert(id.clone(), Arc::new(new_container(dir, record.clone())));
    }
    event(engine, "create", &record, &[]);
    Ok((id, warnings))
}

fn name_conflict(name: &str, other: &str) -> EngineError {
    EngineError::Conflict(format!(
        "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

/// Removes the anonymous volumes of a container being removed (`itself`, ignored as a user) that
/// no other container uses.
fn remove_anonymous_volumes(engine: &Engine, rec: &ContainerRecord, itself: Option<&str>) {
    for name in rec.mounts.iter().filter(|m| m.anonymous).filter_map(|m| m.name.as_deref()) {
        if volume_users(engine, name).iter().all(|user| Some(user.as_str()) == itself) {
            match engine.volumes.remove(name) {
                Ok(_) => super::events::volume_event(engine, "destroy", name),
                Err(e) => tracing::warn!(volume = name, error = %e, "could not remove an anonymous volume"),
            }
        }
    }
}

/// The containers (ids) whose mounts use volume `name`.
pub fn volume_users(engine: &Engine, name: &str) -> Vec<String> {
    engine
        .containers
        .all()
        .into_iter()
        .filter(|c| c.record().mounts.iter().any(|m| m.name.as_deref() == Some(name)))
        .map(|c| c.id.clone())
        .collect()
}

/// Mounts option volumes (tmpfs, …) and copies image content into new empty volumes.
fn prepare_volumes(engine: &Engine, c: &Container, lower_dirs: &[String]) -> Result<(), EngineError> {
    let rec = c.record();
    let mut copied = false;
    for m in rec.mounts.iter().filter(|m| m.kind == mounts::Kind::Volume) {
        let Some(name) = m.name.as_deref() else { continue };
        let volume = engine.volumes.get(name)?;
        if let Err(e) = engine.volumes.acquire(&volume) {
            release_volumes(engine, &rec);
            return Err(e);
        }
        if m.copy_up && volume.options.is_empty() && engine.volumes.is_empty(name) {
            archive::copy_up(&c.dir, lower_dirs, &m.destination, &engine.volumes.data_dir(name))?;
            copied = true;
        }
    }
    if copied || rec.mounts.iter().any(|m| m.copy_up) {
        c.update(|r| r.mounts.iter_mut().for_each(|m| m.copy_up = false))?;
    }
    Ok(())
}

/// The container stopped: unmounts option volumes nobody else uses.
fn release_volumes(engine: &Engine, rec: &ContainerRecord) {
    for name in rec.mounts.iter().filter(|m| m.kind == mounts::Kind::Volume).filter_map(|m| m.name.as_deref()) {
        engine.volumes.release(name);
    }
}

/// The cgroup limits a host config asks for.
pub fn limits_of(h: &HostConfig) -> cgroup::Limits {
    cgroup::Limits {
        memory: h.memory.unwrap_or(0),
        memory_swap: h.memory_swap.unwrap_or(0),
        nano_cpus: h.nano_cpus.unwrap_or(0),
        cpu_shares: h.cpu_shares.unwrap_or(0),
        cpuset_cpus: h.cpuset_cpus.clone().unwrap_or_default(),
        pids_limit: h.pids_limit.unwrap_or(0),
        all_devices: h.privileged.unwrap_or(false),
    }
}

/// Limits this host cannot enforce, in words (Docker prints them as warnings at create).
fn unenforceable(layout: &cgroup::Layout, l: &cgroup::Limits) -> Vec<String> {
    let cgroup::Layout::V1(m) = layout else { return Vec::new() };
    let mut w = Vec::new();
    let missing = |c: &str| !m.contains_key(c);
    if l.memory > 0 && missing("memory") {
        w.push("Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.".to_string());
    }
    if (l.nano_cpus > 0 || l.cpu_shares > 0) && missing("cpu") {
        w.push(
            "Your kernel does not support CPU limits or the cgroup is not mounted. Limitation discarded.".to_string(),
        );
    }
    if l.pids_limit > 0 && missing("pids") {
        w.push(
            "Your kernel does not support pids limit capabilities or the cgroup is not mounted. PIDs limit discarded."
                .to_string(),
        );
    }
    w
}

/// Whether the container's output is kept (`--log-driver none` keeps nothing).
pub fn keeps_logs(h: &HostConfig) -> bool {
    h.log_config.as_ref().and_then(|l| l.typ.as_deref()) != Some("none")
}

fn log_target<'a>(path: &'a Path, h: &HostConfig) -> Option<(&'a Path, io::LogLimits)> {
    keeps_logs(h).then(|| (path, log_limits(h)))
}

/// The json-file rotation the container asked for (validated at create).
fn log_limits(h: &HostConfig) -> io::LogLimits {
    h.log_config
        .as_ref()
        .and_then(|l| l.config.as_ref())
        .and_then(|o| io::LogLimits::from_options(o).ok())
        .unwrap_or_default()
}

fn validate_host_config(h: &HostConfig) -> Result<(), EngineError> {
    // Skiff's runtime answers to dockerd's default runtime name.
    if let Some(r) = h.runtime.as_deref().filter(|r| !["", "runc", "io.containerd.runc.v2"].contains(r)) {
        return Err(EngineError::InvalidArgument(format!("unknown or invalid runtime name: {r}")));
    }
    if let Some(lc) = &h.log_config {
        if let Some(t) = lc.typ.as_deref().filter(|t| !["", "json-file", "local", "none"].contains(t)) {
            // dockerd's exact wording: clients match it (Skiff has json-file, local and none).
            return Err(EngineError::InvalidArgument(format!("logger: no log driver named '{t}' is registered")));
        }
        if let Some(opts) = &lc.config {
            io::LogLimits::from_options(opts).map_err(EngineError::InvalidArgument)?;
        }
    }
    if h.memory.unwrap_or(0) < 0 || h.nano_cpus.unwrap_or(0) < 0 || h.cpu_shares.unwrap_or(0) < 0 {
        return Err(EngineError::InvalidArgument("invalid resource limit: values must not be negative".into()));
    }
    if let (Some(m), Some(s)) = (h.memory, h.memory_swap) {
        if m > 0 && s > 0 && s < m {
            return Err(EngineError::InvalidArgument(
                "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
            ));
        }
    }
    if h.memory.is_some_and(|m| m > 0 && m < 6 * 1024 * 1024) {
        return Err(EngineError::InvalidArgument("Minimum memory limit allowed is 6MB".into()));
    }
    Ok(())
}

/// Pipes for a container without a terminal: the ends it gets, and the ends the hub keeps.
pub(crate) struct Pipes {
    pub(crate) stdin: OwnedFd,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
    pub(crate) stdin_writer: Option<OwnedFd>,
    pub(crate) readers: Vec<(OwnedFd, u8)>,
}

fn internal(what: &'static str) -> impl Fn(nix::errno::Errno) -> EngineError {
    move |e| EngineError::Internal(format!("{what}: {e}"))
}

pub(crate) fn dev_null() -> Result<OwnedFd, EngineError> {
    std::fs::File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| EngineError::Internal(format!("opening /dev/null: {e}")))
}

pub(crate) fn make_pipes(open_stdin: bool) -> Result<Pipes, EngineError> {
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(internal("pipe"))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(internal("pipe"))?;
    let (stdin, stdin_writer) = if open_stdin {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(internal("pipe"))?;
        (r, Some(w))
    } else {
        (dev_null()?, None)
    };
    Ok(Pipes { stdin, stdout: out_w, stderr: err_w, stdin_writer, readers: vec![(out_r, STDOUT), (err_r, STDERR)] })
}

/// Starts pumping a hub and publishes it to attach clients.
fn publish_hub(c: &Container, hub: &Arc<IoHub>, readers: Vec<(OwnedFd, u8)>) {
    for (fd, stream) in readers {
        tokio::spawn(hub.clone().pump(fd, stream));
    }
    c.io.send_replace(Some(hub.clone()));
}

/// `POST /containers/{id}/start`. Returns `false` if it was already running. A container with
/// `--rm` that fails to start is removed.
pub async fn start(engine: &Arc<Engine>, c: &Arc<Container>) -> Result<bool, EngineError> {
    let result = start_locked(engine, c).await;
    if result.is_err() {
        // Whatever part of the network was set up goes (a no-op if none was).
        network::release(engine, c).await;
    }
    if result.is_err() && c.record().host_config.auto_remove.unwrap_or(false) {
        if let Err(e) = remove(engine, c, true, true).await {
            tracing::warn!(container.id = %c.id, error = %e, "auto-remove after failed start");
        }
    }
    result
}

async fn start_locked(engine: &Arc<Engine>, c: &Arc<Container>) -> Result<bool, EngineError> {
    let _op = c.op.lock().await;
    let rec = c.record();
    match rec.state.status {
        Status::Running | Status::Paused => return Ok(false),
        Status::Removing | Status::Dead => {
            return Err(EngineError::Conflict(format!("container {} is being removed", c.id)))
        }
        _ => {}
    }
    let image = engine
        .store
        .by_id(&rec.image_id)
        .ok_or_else(|| EngineError::NotFound(format!("No such image: {}", rec.image)))?;
    let dir = c.dir.clone();
    let lower_dirs = c.prepare_layers(engine, &image)?;
    let hostname = rec.config.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| c.id[..12].to_string());
    let net = network::prepare(engine, c).await?;
    let rec = c.record();
    network::write_etc_files(&dir, &rec, &hostname, &net)
        .map_err(|e| EngineError::Internal(format!("writing /etc files: {e}")))?;
    let cg = c.cgroup(engine);
    let (cg_warnings, cgroup_procs) = cg
        .create(&limits_of(&rec.host_config))
        .map_err(|e| EngineError::Internal(format!("setting up cgroups: {e}")))?;
    for w in cg_warnings {
        tracing::warn!(container.id = %c.id, warning = %w, "cgroup limit not enforced");
    }
    prepare_volumes(engine, c, &lower_dirs)?;
    let rec = c.record();
    let inputs = spec::SpecInputs {
        bundle: &dir,
        lower_dirs,
        hostname,
        args: rec.args.clone(),
        cgroup_procs,
        mounts: &rec.mounts,
        netns: net.netns_path.clone(),
    };
    let oci = match spec::build(&rec.config, &rec.host_config, &inputs) {
        Ok(o) => o,
        Err(e) => {
            release_volumes(engine, &rec);
            return Err(e);
        }
    };
    let spec_bytes = serde_json::to_vec_pretty(&oci).map_err(|e| EngineError::Internal(e.to_string()))?;
    atomic::write_file(&dir.join("config.json"), &spec_bytes)
        .map_err(|e| EngineError::Internal(format!("writing bundle: {e}")))?;

    let tty = rec.config.tty.unwrap_or(false);
    let open_stdin = rec.config.open_stdin.unwrap_or(false);
    let log_err = |e: std::io::Error| EngineError::Internal(format!("opening log: {e}"));
    // Without a terminal the hub exists before the process, so no output is missed. With one, the
    // container allocates the pty and the hub starts when its controlling side arrives (output
    // waits in the pty meanwhile).
    let (stdio, mut hub) = if tty {
        ((dev_null()?, dev_null()?, dev_null()?), None)
    } else {
        let p = make_pipes(open_stdin)?;
        let hub = IoHub::new(
            Some((&c.log_path(), log_limits(&rec.host_config))),
            p.stdin_writer,
            None,
            p.readers.len() as u64,
        )
        .map_err(log_err)?;
        publish_hub(c, &hub, p.readers);
        ((p.stdin, p.stdout, p.stderr), Some(hub))
    };
    let bundle = dir.clone();
    let started = tokio::task::spawn_blocking(move || runtime::start(&bundle, stdio.0, stdio.1, stdio.2, tty)).await?;
    if started.is_err() {
        release_volumes(engine, &rec);
    }
    let started = match started {
        Ok(mut s) if tty => {
            let master =
                s.pty.take().ok_or_else(|| EngineError::Internal("the container's terminal is missing".into()))?;
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| EngineError::Internal(e.to_string()));
            let reader = dup(&master)?;
            let writer = if open_stdin { Some(dup(&master)?) } else { None };
            let h =
                IoHub::new(log_target(&c.log_path(), &rec.host_config), writer, Some(master), 1).map_err(log_err)?;
            publish_hub(c, &h, vec![(reader, STDOUT)]);
            hub = Some(h);
            Ok(s)
        }
        other => other,
    };
    match started {
        Err(e) => {
            let code = match e.kind {
                ErrorKind::NotFound => 127,
                ErrorKind::Permission => 126,
                ErrorKind::Other => 128,
            };
            c.update(|r| {
                r.state.exit_code = code;
                r.state.error = e.message.clone();
            })?;
            if let Some(h) = &hub {
                h.close_stdin().await;
            }
            c.io.send_replace(None);
            let cg = c.cgroup(engine);
            tokio::task::spawn_blocking(move || cg.remove()).await.ok();
            event(engine, "die", &c.record(), &[("exitCode", code.to_string())]);
            c.exits.send_modify(|(n, last)| {
                *n += 1;
                *last = code;
            });
            let msg = format!("failed to create task for container: OCI runtime create failed: unable to start container process: {}: unknown", e.message);
            return Err(if e.kind == ErrorKind::Other {
                EngineError::Internal(msg)
            } else {
                EngineError::InvalidArgument(msg)
            });
        }
        Ok(s) => {
            for w in &s.warnings {
                tracing::warn!(container.id = %c.id, warning = %w, "container setting adjusted");
            }
            c.update(|r| {
                r.stopped_by_user = false;
                r.state.status = Status::Running;
                r.state.pid = s.pid;
                r.state.started_at = now_rfc3339();
                r.state.error.clear();
                r.state.exit_code = 0;
                r.state.oom_killed = false;
            })?;
            event(engine, "start", &c.record(), &[]);
            health::watch(engine, c);
            let exit = reaper::wait_for(s.pid);
            let hub = hub.ok_or_else(|| EngineError::Internal("no output hub".into()))?;
            tokio::spawn(monitor(engine.clone(), c.clone(), exit, hub));
        }
    }
    Ok(true)
}

async fn monitor(engine: Arc<Engine>, c: Arc<Container>, exit: tokio::sync::oneshot::Receiver<i32>, hub: Arc<IoHub>) {
    let code = exit.await.unwrap_or(255);
    // Give the output pumps a moment to drain what the process wrote before it exited.
    let mut done = hub.finished();
    let _ = tokio::time::timeout(Duration::from_secs(2), done.wait_for(|d| *d)).await;
    hub.close_stdin().await;
    let cg = c.cgroup(&engine);
    let oom = cg.oom_kills() > 0;
    for pid in cg.pids() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    tokio::task::spawn_blocking(move || cg.remove()).await.ok();
    release_volumes(&engine, &c.record());
    network::release(&engine, &c).await;
    let _ = c.update(|r| {
        r.state.status = Status::Exited;
        r.state.oom_killed = oom;
        r.state.exit_code = code;
        r.state.pid = 0;
        r.state.finished_at = now_rfc3339();
        // As dockerd: a stopped container is not healthy.
        if let Some(h) = r.state.health.as_mut() {
            h.status = health::HealthStatus::Unhealthy;
        }
    });
    c.io.send_replace(None);
    drop(hub);
    runtime::trim_memory();
    let rec = c.record();
    event(&engine, "die", &rec, &[("exitCode", code.to_string())]);
    c.exits.send_modify(|(n, last)| {
        *n += 1;
        *last = code;
    });
    if rec.host_config.auto_remove.unwrap_or(false) {
        if let Err(e) = remove(&engine, &c, true, true).await {
            tracing::warn!(container.id = %c.id, error = %e, "auto-remove failed");
        }
    } else if should_restart(&rec, code) && !engine.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        schedule_restart(engine, c, &rec);
    }
}

/// Whether the restart policy wants the container running again after it exited with `code`.
fn should_restart(rec: &ContainerRecord, code: i32) -> bool {
    let policy = rec.host_config.restart_policy.clone().unwrap_or_default();
    let name = policy
        .name
        .map(|n| serde_json::to_value(n).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        .unwrap_or_default();
    match name.as_str() {
        "always" | "unless-stopped" => !rec.stopped_by_user,
        "on-failure" => {
            let max = policy.maximum_retry_count.unwrap_or(0);
            !rec.stopped_by_user && code != 0 && (max == 0 || rec.restart_count < max)
        }
        _ => false,
    }
}

/// Restarts after Docker's back-off: 100 ms doubling per quick failure, up to a minute; a run
/// longer than ten seconds resets it.
fn schedule_restart(engine: Arc<Engine>, c: Arc<Container>, rec: &ContainerRecord) {
    let ran = chrono::DateTime::parse_from_rfc3339(&rec.state.finished_at)
        .ok()
        .zip(chrono::DateTime::parse_from_rfc3339(&rec.state.started_at).ok())
        .map(|(f, s)| (f - s).num_seconds())
        .unwrap_or(0);
    let exp = if ran > 10 { 0 } else { u32::try_from(rec.restart_count.clamp(0, 10)).unwrap_or(10) };
    let delay = Duration::from_millis(100u64.saturating_mul(1u64 << exp)).min(Duration::from_secs(60));
    let _ = c.update(|r| r.state.status = Status::Restarting);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if c.record().state.status != Status::Restarting || c.record().stopped_by_user {
            return;
        }
        // It stays "restarting" until `start` makes it "running": briefly reporting "exited" here
        // let a watcher see the final state of a restart that had not happened yet.
        let _ = c.update(|r| r.restart_count += 1);
        event(&engine, "restart", &c.record(), &[]);
        if let Err(e) = start(&engine, &c).await {
            tracing::warn!(container.id = %c.id, error = %e, "restart policy could not start the container");
        }
    });
}

/// After the engine starts: ends what is left of containers that ran under the previous engine
/// (their processes and cgroups) and starts those whose restart policy asks for it.
pub async fn recover(engine: &Arc<Engine>) {
    for c in engine.containers.all() {
        let rec = c.record();
        let cg = c.cgroup(engine);
        // Thawed first: a frozen process cannot die.
        let _ = cg.freeze(false);
        let leftovers = cg.pids();
        for pid in &leftovers {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
        if !leftovers.is_empty() {
            tracing::info!(container.id = %c.id, processes = leftovers.len(), "ended processes left by the previous engine");
            // They are not our children (the previous engine was their reaper): wait for the
            // kernel to empty the cgroup before removing it.
            for _ in 0..100 {
                if cg.pids().is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::task::spawn_blocking(move || cg.remove()).await.ok();
        if rec.was_running {
            let _ = c.update(|r| r.was_running = false);
            let policy = rec
                .host_config
                .restart_policy
                .as_ref()
                .and_then(|p| p.name)
                .map(|n| serde_json::to_value(n).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
                .unwrap_or_default();
            if matches!(policy.as_str(), "always" | "unless-stopped" | "on-failure") && !rec.stopped_by_user {
                if let Err(e) = start(engine, &c).await {
                    tracing::warn!(container.id = %c.id, error = %e, "could not restart container after engine restart");
                }
            }
        }
    }
}

/// Parses a signal given as `KILL`, `SIGKILL` or `9`.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, EngineError> {
    use std::str::FromStr;
    let bad = || EngineError::InvalidArgument(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    nix::sys::signal::Signal::from_str(&full).map_err(|_| bad())
}

/// `POST /containers/{id}/kill`.
pub async fn kill(engine: &Arc<Engine>, c: &Arc<Container>, signal: Option<&str>) -> Result<(), EngineError> {
    let sig = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("KILL"))?;
    let rec = c.record();
    if rec.state.status != Status::Running && rec.state.status != Status::Paused {
        return Err(EngineError::Conflict(format!(
            "Cannot kill container: {}: container {} is not running",
            c.id, c.id
        )));
    }
    c.update(|r| r.stopped_by_user = true)?;
    let before = c.exits.borrow().0;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(rec.state.pid), sig)
        .map_err(|e| EngineError::Internal(format!("kill: {e}")))?;
    event(engine, "kill", &rec, &[("signal", (sig as i32).to_string())]);
    if sig == nix::sys::signal::Signal::SIGKILL {
        // A frozen process cannot die: thaw it. Then, as dockerd, return once it has exited.
        if rec.state.status == Status::Paused {
            let _ = c.cgroup(engine).freeze(false);
        }
        if tokio::time::timeout(Duration::from_secs(30), wait_exit_count(c, before)).await.is_err() {
            return Err(EngineError::Internal(format!("container {} did not exit after SIGKILL", c.id)));
        }
    }
    Ok(())
}

/// Waits until the container has exited at least `after + 1` times.
async fn wait_exit_count(c: &Container, after: u64) -> i32 {
    let mut rx = c.exits.subscribe();
    let code = rx.wait_for(|(n, _)| *n > after).await.map(|v| v.1);
    code.unwrap_or_else(|_| c.record().state.exit_code)
}

/// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after `timeout` seconds.
pub async fn stop(
    engine: &Arc<Engine>,
    c: &Arc<Container>,
    signal: Option<&str>,
    timeout: Option<i64>,
) -> Result<bool, EngineError> {
    let rec = c.record();
    if rec.state.status == Status::Restarting {
        // Waiting for its restart: stopping cancels it.
        c.update(|r| {
            r.stopped_by_user = true;
            r.state.status = Status::Exited;
        })?;
        return Ok(true);
    }
    if !c.is_running() {
        return Ok(false);
    }
    let before = c.exits.borrow().0;
    let sig = parse_signal(signal.or(rec.config.stop_signal.as_deref()).unwrap_or("SIGTERM"))?;
    let t = timeout.or(rec.config.stop_timeout).unwrap_or(10).max(0);
    let pid = nix::unistd::Pid::from_raw(rec.state.pid);
    c.update(|r| r.stopped_by_user = true)?;
    let _ = nix::sys::signal::kill(pid, sig);
    // A paused container is thawed to receive it (and, later, SIGKILL).
    if rec.state.status == Status::Paused {
        let _ = c.cgroup(engine).freeze(false);
    }
    if tokio::time::timeout(Duration::from_secs(u64::try_from(t).unwrap_or(0)), wait_exit_count(c, before))
        .await
        .is_err()
    {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        wait_exit_count(c, before).await;
    }
    event(engine, "stop", &c.record(), &[]);
    Ok(true)
}

/// Engine shutdown (the VM powering off): stops every running container like `docker stop`
/// (its stop signal, SIGKILL after its stop timeout, at most `grace`), all at once, without
/// marking them stopped by the user: their restart policies apply at the next engine start.
pub async fn stop_all_for_shutdown(engine: &Arc<Engine>, grace: Duration) {
    engine.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
    let running: Vec<_> = engine.containers.all().into_iter().filter(|c| c.is_running()).collect();
    let stops = running.iter().map(|c| async move {
        let rec = c.record();
        let before = c.exits.borrow().0;
        let _ = c.cgroup(engine).freeze(false);
        let sig = rec.config.stop_signal.as_deref().and_then(|s| parse_signal(s).ok());
        let pid = nix::unistd::Pid::from_raw(rec.state.pid);
        let _ = nix::sys::signal::kill(pid, sig.unwrap_or(nix::sys::signal::Signal::SIGTERM));
        let own = rec.config.stop_timeout.map(|t| Duration::from_secs(u64::try_from(t).unwrap_or(0)));
        let wait = own.unwrap_or(grace).min(grace);
        if tokio::time::timeout(wait, wait_exit_count(c, before)).await.is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            wait_exit_count(c, before).await;
        }
        let _ = c.update(|r| r.was_running = true);
    });
    futures::future::join_all(stops).await;
}

/// The `condition` of `POST /containers/{id}/wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Return at once if not running, else at exit.
    NotRunning,
    /// The next exit, even if not running now.
    NextExit,
    /// When the container is removed.
    Removed,
}

/// Resolves to the exit code when `cond` is met.
pub async fn wait(c: Arc<Container>, cond: WaitCondition) -> i32 {
    let before = c.exits.borrow().0;
    match cond {
        WaitCondition::NotRunning if !c.is_running() => c.record().state.exit_code,
        WaitCondition::NotRunning | WaitCondition::NextExit => wait_exit_count(&c, before).await,
        WaitCondition::Removed => {
            let mut rx = c.removed.subscribe();
            let _ = rx.wait_for(|r| *r).await;
            c.exits.borrow().1
        }
    }
}

/// `DELETE /containers/{id}`.
/// `DELETE /containers/{id}` (`volumes`: also its anonymous volumes, as `docker rm -v` and
/// `--rm` do).
pub async fn remove(engine: &Arc<Engine>, c: &Arc<Container>, force: bool, volumes: bool) -> Result<(), EngineError> {
    if !force && c.record().state.status == Status::Restarting {
        return Err(EngineError::Conflict(format!(
            "cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove",
            c.record().name
        )));
    }
    if c.is_running() {
        if !force {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                c.record().name
            )));
        }
        let before = c.exits.borrow().0;
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.record().state.pid), nix::sys::signal::Signal::SIGKILL);
        // A frozen process cannot die: thaw a paused one.
        if c.record().state.status == Status::Paused {
            let _ = c.cgroup(engine).freeze(false);
        }
        wait_exit_count(c, before).await;
    }
    // Its anonymous volumes go first, so nobody sees the container gone and its volumes still there.
    if volumes {
        remove_anonymous_volumes(engine, &c.record(), Some(&c.id));
    }
    // Whoever takes it out of the table removes it; a concurrent remove (auto-remove racing
    // `docker rm -f`) finds it gone and does nothing, so it never writes into a dying directory.
    if engine.containers.map.write().unwrap_or_else(|p| p.into_inner()).remove(&c.id).is_none() {
        return Ok(());
    }
    c.record.lock().unwrap_or_else(|p| p.into_inner()).state.status = Status::Removing;
    c.cgroup(engine).remove();
    let dir = c.dir.clone();
    blocking(move || {
        std::fs::remove_dir_all(&dir).map_err(|e| EngineError::Internal(format!("removing container files: {e}")))
    })
    .await?;
    event(engine, "destroy", &c.record(), &[]);
    c.removed.send_replace(true);
    Ok(())
}

/// `POST /containers/prune`: removes stopped containers (filters `label`, `label!`, `until`);
/// returns their ids and the bytes their writable layers held.
pub async fn prune(
    engine: &Arc<Engine>,
    filters: &crate::engine::filters::Filters,
) -> Result<(Vec<String>, u64), EngineError> {
    let until = match filters.get("until").first() {
        Some(u) => Some(
            view::parse_time(u).ok_or_else(|| EngineError::InvalidArgument(format!("invalid until filter: {u}")))?,
        ),
        None => None,
    };
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for c in engine.containers.all() {
        let rec = c.record();
        if c.is_running() || matches!(rec.state.status, Status::Restarting | Status::Paused) {
            continue;
        }
        let old_enough = crate::engine::filters::created_before(&rec.created, until);
        if !old_enough
            || !filters.labels_match("label", rec.config.labels.as_ref())
            || (!filters.get("label!").is_empty() && filters.labels_match("label!", rec.config.labels.as_ref()))
        {
            continue;
        }
        let dir = engine.containers.dir_of(&c.id);
        let size = blocking(move || Ok(archive::upper_size(&dir))).await?;
        match remove(engine, &c, false, false).await {
            Ok(()) => {
                deleted.push(c.id.clone());
                reclaimed += u64::try_from(size).unwrap_or(0);
            }
            // Started or removed meanwhile: not ours to prune.
            Err(EngineError::Conflict(_) | EngineError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((deleted, reclaimed))
}

/// `POST /containers/{id}/pause` and `/unpause`.
pub async fn set_paused(engine: &Arc<Engine>, c: &Arc<Container>, paused: bool) -> Result<(), EngineError> {
    let rec = c.record();
    match (rec.state.status, paused) {
        (Status::Running, true) | (Status::Paused, false) => {}
        (Status::Paused, true) => return Err(EngineError::Conflict(format!("container {} is already paused", c.id))),
        (Status::Running, false) => return Err(EngineError::Conflict(format!("container {} is not paused", c.id))),
        _ => return Err(EngineError::Conflict(format!("container {} is not running", c.id))),
    }
    c.cgroup(engine).freeze(paused).map_err(|e| EngineError::Internal(e.to_string()))?;
    c.update(|r| r.state.status = if paused { Status::Paused } else { Status::Running })?;
    event(engine, if paused { "pause" } else { "unpause" }, &c.record(), &[]);
    Ok(())
}

/// `POST /containers/{id}/rename`.
pub fn rename(engine: &Engine, c: &Arc<Container>, new_name: &str) -> Result<(), EngineError> {
    let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
    if !names::valid(new_name) {
        return Err(EngineError::InvalidArgument(format!(
            "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let map = engine.containers.map.write().unwrap_or_else(|p| p.into_inner());
    if let Some(other) = map.values().find(|o| o.record().name == new_name && o.id != c.id) {
        return Err(EngineError::Conflict(format!("Conflict. The container name \"/{new_name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", other.id)));
    }
    let old = c.record().name;
    c.update(|r| r.name = new_name.to_string())?;
    drop(map);
    event(engine, "rename", &c.record(), &[("oldName", format!("/{old}"))]);
    Ok(())
}

/// `POST /containers/{id}/update`: new limits (applied at once if it runs) and restart policy.
pub fn update(
    engine: &Engine,
    c: &Arc<Container>,
    req: &bollard_stubs::models::ContainerUpdateBody,
) -> Result<Vec<String>, EngineError> {
    let mut host = c.record().host_config;
    if let Some(v) = req.memory {
        host.memory = Some(v);
    }
    if let Some(v) = req.memory_swap {
        host.memory_swap = Some(v);
    }
    if let Some(v) = req.nano_cpus {
        host.nano_cpus = Some(v);
    }
    if let Some(v) = req.cpu_shares {
        host.cpu_shares = Some(v);
    }
    if let Some(v) = &req.cpuset_cpus {
        host.cpuset_cpus = Some(v.clone());
    }
    if let Some(v) = req.pids_limit {
        host.pids_limit = Some(v);
    }
    if let Some(v) = &req.restart_policy {
        host.restart_policy = Some(v.clone());
    }
    validate_host_config(&host)?;
    let mut warnings = unenforceable(&engine.cgroups, &limits_of(&host));
    if c.is_running() {
        warnings.extend(
            c.cgroup(engine)
                .update(&limits_of(&host))
                .map_err(|e| EngineError::InvalidArgument(format!("Cannot update container {}: {e}", c.id)))?,
        );
    }
    c.update(|r| r.host_config = host)?;
    event(engine, "update", &c.record(), &[]);
    Ok(warnings)
}
