//! Swarm mode on one node, as Docker Desktop users run it (`docker swarm init`, services,
//! `docker stack deploy`): this engine is the cluster's only manager and worker. Cluster state
//! lives in one file (`<root>/swarm/state.json`, written atomically on every change); the
//! orchestrator (`tasks.rs`) runs each service's tasks as containers of this engine.
//! Joining other nodes is refused with a clear error: there is no Raft, no overlay data plane
//! and no routing mesh across machines.

pub mod networks;
pub mod nodes;
pub mod objects;
pub mod services;
pub mod spec;
pub mod state;
pub mod tasks;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use self::state::{base36, meta_json, Cluster, NodeState};
use super::EngineError;
use crate::store::atomic;

/// dockerd's answer to a swarm call on a node outside a swarm.
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

/// What `POST /swarm/init` asks for.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InitRequest {
    /// `ListenAddr`.
    pub listen_addr: String,
    /// `AdvertiseAddr`.
    pub advertise_addr: String,
    /// `DataPathAddr`.
    pub data_path_addr: String,
    /// `DataPathPort` (0: 4789).
    pub data_path_port: u64,
    /// `DefaultAddrPool` (empty: 10.0.0.0/8).
    pub default_addr_pool: Option<Vec<String>>,
    /// `SubnetSize` (0: 24).
    pub subnet_size: u64,
    /// `ForceNewCluster`.
    pub force_new_cluster: bool,
    /// `Spec`.
    pub spec: Option<Value>,
}

/// What `POST /swarm/update` asks to rotate.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rotate {
    /// A new worker join token.
    pub worker_token: bool,
    /// A new manager join token.
    pub manager_token: bool,
    /// A new unlock key.
    pub unlock_key: bool,
}

/// The swarm service.
#[derive(Debug)]
pub struct Swarm {
    path: PathBuf,
    files: PathBuf,
    state: Mutex<Option<Cluster>>,
    /// With auto-lock: the cluster came back from a restart and waits for its unlock key.
    locked: std::sync::atomic::AtomicBool,
    /// Wakes the orchestrator after a change.
    pub wake: tokio::sync::Notify,
}

fn token(prefix: &str) -> String {
    format!("{prefix}-1-{}-{}", base36(rand::random(), 25) + &base36(rand::random(), 25), base36(rand::random(), 25))
}

fn unlock_key() -> String {
    use base64::Engine as _;
    format!("SWMKEY-1-{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(rand::random::<[u8; 32]>()))
}

impl Swarm {
    /// Loads the cluster under `dir`, if this engine is in a swarm.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::Internal(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("state.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<Cluster>(&bytes).map_err(|e| {
                EngineError::Internal(format!("reading {}: {e} (move it away to leave the swarm)", path.display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(EngineError::Internal(format!("reading {}: {e}", path.display()))),
        };
        let locked = state.as_ref().is_some_and(|c| c.unlock_key.is_some());
        Ok(Self {
            path,
            files: dir.join("files"),
            state: Mutex::new(state),
            locked: std::sync::atomic::AtomicBool::new(locked),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Where the secret and config files of task `id` are written.
    pub fn task_files(&self, id: &str) -> PathBuf {
        self.files.join(id)
    }

    /// Whether this engine is in a swarm (locked or not).
    pub fn active(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Reads the cluster (a 503 outside a swarm or while locked).
    pub fn read<T>(&self, f: impl FnOnce(&Cluster) -> T) -> Result<T, EngineError> {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let cluster = guard.as_ref().ok_or_else(|| EngineError::Unavailable(NOT_A_MANAGER.into()))?;
        self.check_unlocked()?;
        Ok(f(cluster))
    }

    /// Changes the cluster and saves it before anyone sees the change (a 503 outside a swarm).
    pub fn change<T>(&self, f: impl FnOnce(&mut Cluster) -> Result<T, EngineError>) -> Result<T, EngineError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let current = guard.as_ref().ok_or_else(|| EngineError::Unavailable(NOT_A_MANAGER.into()))?;
        self.check_unlocked()?;
        let mut next = current.clone();
        let out = f(&mut next)?;
        if next == *current {
            // Nothing changed: nothing to save, nobody to wake (the orchestrator would spin).
            return Ok(out);
        }
        atomic::write_json(&self.path, &next)
            .map_err(|e| EngineError::Internal(format!("saving the swarm state: {e}")))?;
        *guard = Some(next);
        drop(guard);
        self.wake.notify_one();
        Ok(out)
    }

    fn check_unlocked(&self) -> Result<(), EngineError> {
        if self.locked.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(EngineError::Unavailable(
                "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.".into(),
            ));
        }
        Ok(())
    }

    /// `POST /swarm/init`: makes this engine a one-node swarm; returns the node id.
    pub fn init(&self, req: InitRequest) -> Result<String, EngineError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_some() {
            return Err(EngineError::Unavailable(
                "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."
                    .into(),
            ));
        }
        let pools = req.default_addr_pool.filter(|p| !p.is_empty()).unwrap_or_else(|| vec!["10.0.0.0/8".into()]);
        for p in &pools {
            p.parse::<ipnet::Ipv4Net>()
                .map_err(|_| EngineError::InvalidArgument(format!("invalid default address pool {p}")))?;
        }
        let subnet_size = if req.subnet_size == 0 { 24 } else { req.subnet_size };
        if !(1..=29).contains(&subnet_size) {
            return Err(EngineError::InvalidArgument(format!("invalid subnet size {subnet_size}")));
        }
        let data_path_port = if req.data_path_port == 0 { 4789 } else { req.data_path_port };
        if !(1024..=49151).contains(&data_path_port) {
            return Err(EngineError::InvalidArgument(format!(
                "data path port {data_path_port} is out of the range 1024-49151"
            )));
        }
        let given = req.spec.unwrap_or(Value::Null);
        if !(given.is_object() || given.is_null()) {
            return Err(EngineError::InvalidArgument("Spec must be a JSON object".into()));
        }
        let spec = spec::merged(&spec::swarm_defaults(), &given);
        let auto_lock = spec["EncryptionConfig"]["AutoLockManagers"].as_bool().unwrap_or(false);
        let addr = [req.advertise_addr, req.listen_addr]
            .into_iter()
            .find(|a| !a.is_empty())
            .map(|a| a.split(':').next().unwrap_or("").to_string())
            .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
            .unwrap_or_else(|| "127.0.0.1".into());
        let now = super::now_rfc3339();
        let meta = |id: String, version: u64| state::Meta { id, version, created: now.clone(), updated: now.clone() };
        let node = NodeState {
            meta: meta(state::new_id(), 9),
            spec: json!({"Labels": {}, "Role": "manager", "Availability": "active"}),
            addr,
        };
        let cluster = Cluster {
            meta: meta(state::new_id(), 10),
            index: 10,
            spec,
            default_addr_pool: pools,
            subnet_size,
            data_path_port,
            worker_token: token("SWMTKN"),
            manager_token: token("SWMTKN"),
            unlock_key: auto_lock.then(unlock_key),
            node,
            services: Default::default(),
            tasks: Default::default(),
            secrets: Default::default(),
            configs: Default::default(),
        };
        atomic::write_json(&self.path, &cluster)
            .map_err(|e| EngineError::Internal(format!("saving the swarm state: {e}")))?;
        let id = cluster.node.meta.id.clone();
        *guard = Some(cluster);
        self.locked.store(false, std::sync::atomic::Ordering::SeqCst);
        drop(guard);
        self.wake.notify_one();
        Ok(id)
    }

    /// `POST /swarm/leave`: only with `force`, as for any last manager; the caller removes
    /// the services' containers and the swarm's networks first.
    pub fn leave(&self, force: bool) -> Result<Cluster, EngineError> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(cluster) = guard.as_ref() else {
            return Err(EngineError::Unavailable("This node is not part of a swarm".into()));
        };
        if !force {
            return Err(EngineError::Unavailable(
                "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.".into(),
            ));
        }
        let cluster = cluster.clone();
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::Internal(format!("removing the swarm state: {e}"))),
        }
        let _ = std::fs::remove_dir_all(&self.files);
        *guard = None;
        self.locked.store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(cluster)
    }

    /// `POST /swarm/update?version=`; no spec (an empty body) keeps the current one.
    pub fn update(&self, version: u64, new_spec: Option<&Value>, rotate: Rotate) -> Result<(), EngineError> {
        self.change(|c| {
            if version != c.meta.version {
                return Err(EngineError::InvalidArgument(
                    "rpc error: code = Unknown desc = update out of sequence".into(),
                ));
            }
            if let Some(new_spec) = new_spec {
                c.spec = spec::merged(&spec::swarm_defaults(), new_spec);
            }
            if rotate.worker_token {
                c.worker_token = token("SWMTKN");
            }
            if rotate.manager_token {
                c.manager_token = token("SWMTKN");
            }
            let auto_lock = c.spec["EncryptionConfig"]["AutoLockManagers"].as_bool().unwrap_or(false);
            c.unlock_key = match (auto_lock, &c.unlock_key) {
                (false, _) => None,
                (true, Some(k)) if !rotate.unlock_key => Some(k.clone()),
                (true, _) => Some(unlock_key()),
            };
            let mut meta = c.meta.clone();
            c.touch(&mut meta);
            c.meta = meta;
            Ok(())
        })
    }

    /// `GET /swarm/unlockkey`.
    pub fn unlock_key(&self) -> Result<String, EngineError> {
        self.read(|c| c.unlock_key.clone())?.ok_or_else(|| EngineError::NotFound("no unlock key is set".into()))
    }

    /// `POST /swarm/unlock`.
    pub fn unlock(&self, key: &str) -> Result<(), EngineError> {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let cluster =
            guard.as_ref().ok_or_else(|| EngineError::Unavailable("This node is not part of a swarm".into()))?;
        if !self.locked.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(EngineError::Conflict("swarm is not locked".into()));
        }
        if cluster.unlock_key.as_deref() != Some(key.trim()) {
            return Err(EngineError::InvalidArgument("invalid key: the swarm could not be unlocked with it".into()));
        }
        self.locked.store(false, std::sync::atomic::Ordering::SeqCst);
        drop(guard);
        self.wake.notify_one();
        Ok(())
    }

    /// `GET /swarm`.
    pub fn inspect(&self) -> Result<Value, EngineError> {
        self.read(|c| {
            let mut out = meta_json(&c.meta);
            out.insert("Spec".into(), c.spec.clone());
            out.insert("TLSInfo".into(), json!({"TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": ""}));
            out.insert("RootRotationInProgress".into(), json!(false));
            out.insert("DefaultAddrPool".into(), json!(c.default_addr_pool));
            out.insert("SubnetSize".into(), json!(c.subnet_size));
            out.insert("DataPathPort".into(), json!(c.data_path_port));
            out.insert("JoinTokens".into(), json!({"Worker": c.worker_token, "Manager": c.manager_token}));
            Value::Object(out)
        })
    }

    /// The `Swarm` section of `GET /info`.
    pub fn info(&self) -> Value {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = guard.as_ref() else {
            return json!({"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false,
                          "Error": "", "RemoteManagers": null});
        };
        let locked = self.locked.load(std::sync::atomic::Ordering::SeqCst);
        let mut cluster = meta_json(&c.meta);
        cluster.insert("Spec".into(), c.spec.clone());
        cluster.insert("DefaultAddrPool".into(), json!(c.default_addr_pool));
        cluster.insert("SubnetSize".into(), json!(c.subnet_size));
        cluster.insert("DataPathPort".into(), json!(c.data_path_port));
        json!({
            "NodeID": c.node.meta.id,
            "NodeAddr": c.node.addr,
            "LocalNodeState": if locked { "locked" } else { "active" },
            "ControlAvailable": !locked,
            "Error": "",
            "RemoteManagers": [{"NodeID": c.node.meta.id, "Addr": format!("{}:2377", c.node.addr)}],
            "Nodes": 1,
            "Managers": 1,
            "Cluster": cluster,
        })
    }
}
