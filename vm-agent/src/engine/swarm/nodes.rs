//! The swarm's one node: list, inspect, update (labels, name, availability), and the removal
//! dockerd refuses for a manager.

use serde_json::{json, Value};

use super::state::{meta_json, Cluster};
use super::Swarm;
use crate::engine::filters::Filters;
use crate::engine::EngineError;

/// The node's JSON (`GET /nodes/{id}`).
pub fn to_json(c: &Cluster) -> Value {
    let n = &c.node;
    let cpus = i64::try_from(std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap_or(1);
    let memory = i64::try_from(crate::engine::containers::stats::mem_total()).unwrap_or(i64::MAX);
    let mut out = meta_json(&n.meta);
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    out.insert("Spec".into(), n.spec.clone());
    out.insert(
        "Description".into(),
        json!({
            "Hostname": hostname,
            "Platform": {"Architecture": std::env::consts::ARCH, "OS": "linux"},
            "Resources": {"NanoCPUs": cpus * 1_000_000_000, "MemoryBytes": memory},
            "Engine": {"EngineVersion": env!("CARGO_PKG_VERSION"), "Plugins": [
                {"Type": "Log", "Name": "json-file"}, {"Type": "Log", "Name": "local"},
                {"Type": "Network", "Name": "bridge"}, {"Type": "Network", "Name": "host"},
                {"Type": "Network", "Name": "null"}, {"Type": "Network", "Name": "overlay"},
                {"Type": "Volume", "Name": "local"}]},
            "TLSInfo": {"TrustRoot": "", "CertIssuerSubject": "", "CertIssuerPublicKey": ""},
        }),
    );
    out.insert("Status".into(), json!({"State": "ready", "Addr": n.addr}));
    out.insert(
        "ManagerStatus".into(),
        json!({"Leader": true, "Reachability": "reachable", "Addr": format!("{}:2377", n.addr)}),
    );
    Value::Object(out)
}

/// Whether the node matches `GET /nodes` filters.
pub fn matches(c: &Cluster, f: &Filters) -> bool {
    let (n, spec) = (&c.node, &c.node.spec);
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    f.any("id", |v| n.meta.id.starts_with(v))
        && f.any("name", |v| spec["Name"].as_str().unwrap_or(&hostname).starts_with(v) || hostname.starts_with(v))
        && f.any("role", |v| spec["Role"].as_str() == Some(v))
        && f.any("membership", |v| v == "accepted")
        && f.any("availability", |v| spec["Availability"].as_str() == Some(v))
        && f.json_labels_match("node.label", &spec["Labels"])
        && f.json_labels_match("label", &spec["Labels"])
}

/// Finds the node by id, id prefix or hostname (a 404 otherwise).
pub fn check_key(c: &Cluster, key: &str) -> Result<(), EngineError> {
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let n = &c.node;
    if !key.is_empty() && (n.meta.id.starts_with(key) || key == hostname || n.spec["Name"].as_str() == Some(key)) {
        Ok(())
    } else {
        Err(EngineError::NotFound(format!("node {key} not found")))
    }
}

impl Swarm {
    /// `POST /nodes/{id}/update?version=`.
    pub fn update_node(&self, key: &str, version: u64, spec: Value) -> Result<(), EngineError> {
        self.change(|c| {
            check_key(c, key)?;
            if version != c.node.meta.version {
                return Err(EngineError::InvalidArgument(
                    "rpc error: code = Unknown desc = update out of sequence".into(),
                ));
            }
            let role = spec["Role"].as_str().unwrap_or("");
            if role != "manager" {
                return Err(EngineError::InvalidArgument(
                    "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm"
                        .into(),
                ));
            }
            let availability = spec["Availability"].as_str().unwrap_or("");
            if !["active", "pause", "drain"].contains(&availability) {
                return Err(EngineError::InvalidArgument(format!("invalid availability {availability:?}")));
            }
            let mut node = c.node.clone();
            node.spec = spec;
            if !node.spec.get("Labels").is_some_and(Value::is_object) {
                node.spec["Labels"] = json!({});
            }
            c.touch(&mut node.meta);
            c.node = node;
            Ok(())
        })
    }

    /// `DELETE /nodes/{id}`: the only node is a manager, which swarm never removes.
    pub fn remove_node(&self, key: &str) -> Result<(), EngineError> {
        self.read(|c| check_key(c, key))??;
        Err(EngineError::InvalidArgument(
            "rpc error: code = FailedPrecondition desc = node is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal".into(),
        ))
    }
}
