//! What a one-node swarm keeps (`<root>/swarm/state.json`): the cluster, its node, services,
//! tasks, secrets and configs. Specs are kept as the client's JSON (normalised on the way in),
//! so every field a client sets comes back as it was set, including ones Skiff only stores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Identity and version of a swarm object, as every swarm object shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// 25 lower-case base-36 characters, as swarmkit's ids.
    pub id: String,
    /// The cluster-wide index at the object's last change (`Version.Index`).
    pub version: u64,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339.
    pub updated: String,
}

/// The one node (this engine).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeState {
    /// Identity.
    pub meta: Meta,
    /// `NodeSpec` (`Role`, `Availability`, `Labels`, `Name`).
    pub spec: Value,
    /// The address it advertises.
    pub addr: String,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceState {
    /// Identity.
    pub meta: Meta,
    /// `ServiceSpec`, normalised.
    pub spec: Value,
    /// The spec before the last update (what `rollback` returns to).
    #[serde(default)]
    pub previous_spec: Option<Value>,
    /// Published ports with their host ports chosen (`Endpoint.Ports`).
    #[serde(default)]
    pub ports: Vec<Value>,
    /// Bumped when the task template (or `ForceUpdate`) changes: tasks of an older generation
    /// are replaced.
    pub generation: u64,
}

/// One task: a slot's attempt at running the service's template, in a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskState {
    /// Identity.
    pub meta: Meta,
    /// Its service.
    pub service_id: String,
    /// Its slot (1-based for replicated services, 0 for global ones).
    pub slot: u64,
    /// The service generation it runs.
    pub generation: u64,
    /// Restarts of its slot before it (within the generation): `MaxAttempts` counts these, so
    /// pruning old tasks from the history never resets it.
    #[serde(default)]
    pub attempt: u64,
    /// The task template it runs.
    pub spec: Value,
    /// Its container, once created.
    #[serde(default)]
    pub container_id: Option<String>,
    /// `new`, `pending`, `starting`, `running`, `complete`, `failed`, `rejected`, `shutdown`, `orphaned`.
    pub state: String,
    /// `running` or `shutdown`.
    pub desired_state: String,
    /// A human-readable word on the state.
    pub message: String,
    /// Why it failed.
    #[serde(default)]
    pub err: Option<String>,
    /// The container's exit code, once it exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// The container's process id while it runs.
    #[serde(default)]
    pub pid: i64,
    /// When `state` was last set (RFC 3339).
    pub timestamp: String,
}

impl TaskState {
    /// Whether the task reached an end (its container does not run and will not again).
    pub fn finished(&self) -> bool {
        matches!(self.state.as_str(), "complete" | "failed" | "rejected" | "shutdown" | "orphaned")
    }
}

/// A secret or a config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectState {
    /// Identity.
    pub meta: Meta,
    /// `SecretSpec` / `ConfigSpec` with `Data` (base64) as given.
    pub spec: Value,
}

/// The cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Identity of the swarm object.
    pub meta: Meta,
    /// The cluster-wide change counter (every object's `Version.Index` comes from it).
    pub index: u64,
    /// `SwarmSpec`, with defaults filled.
    pub spec: Value,
    /// `DefaultAddrPool`.
    pub default_addr_pool: Vec<String>,
    /// `SubnetSize`.
    pub subnet_size: u64,
    /// `DataPathPort`.
    pub data_path_port: u64,
    /// `JoinTokens.Worker`.
    pub worker_token: String,
    /// `JoinTokens.Manager`.
    pub manager_token: String,
    /// The key that unlocks the managers after a restart, with auto-lock on.
    #[serde(default)]
    pub unlock_key: Option<String>,
    /// This node.
    pub node: NodeState,
    /// Services by id.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceState>,
    /// Tasks by id.
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskState>,
    /// Secrets by id.
    #[serde(default)]
    pub secrets: BTreeMap<String, ObjectState>,
    /// Configs by id.
    #[serde(default)]
    pub configs: BTreeMap<String, ObjectState>,
}

impl Cluster {
    /// The next cluster-wide index (every change takes one).
    pub fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// A new object identity at the next index.
    pub fn new_meta(&mut self) -> Meta {
        let now = crate::engine::now_rfc3339();
        Meta { id: new_id(), version: self.bump(), created: now.clone(), updated: now }
    }

    /// Marks `meta` changed at the next index.
    pub fn touch(&mut self, meta: &mut Meta) {
        meta.version = self.bump();
        meta.updated = crate::engine::now_rfc3339();
    }
}

/// A swarmkit-style id: 25 lower-case base-36 characters.
pub fn new_id() -> String {
    base36(rand::random::<u128>(), 25)
}

/// `n` base-36 digits of `value` (most significant first, zero-padded).
pub fn base36(mut value: u128, n: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; n];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 36) as usize];
        value /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The JSON of an object's identity fields (`ID`, `Version`, `CreatedAt`, `UpdatedAt`).
pub fn meta_json(meta: &Meta) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("ID".into(), Value::String(meta.id.clone()));
    m.insert("Version".into(), serde_json::json!({"Index": meta.version}));
    m.insert("CreatedAt".into(), Value::String(meta.created.clone()));
    m.insert("UpdatedAt".into(), Value::String(meta.updated.clone()));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_swarmkits() {
        let id = new_id();
        assert_eq!(id.len(), 25);
        assert!(id.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert_eq!(base36(35, 3), "00z");
        assert_eq!(base36(36, 3), "010");
    }
}
