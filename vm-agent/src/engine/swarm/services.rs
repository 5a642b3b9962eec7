//! Services: create, update (with the version check and `rollback`), remove, and their JSON.
//! The orchestrator (`tasks.rs`) makes the tasks follow.

use serde_json::{json, Value};

use super::objects::{self, Kind};
use super::spec;
use super::state::{meta_json, Cluster, ServiceState};
use super::Swarm;
use crate::engine::filters::Filters;
use crate::engine::EngineError;

/// Host ports swarm picks for published ports without one (its dynamic range).
const DYNAMIC_PORTS: std::ops::RangeInclusive<u64> = 30000..=32767;

/// Finds a service by id, name or unique id prefix.
pub fn find<'a>(c: &'a Cluster, key: &str) -> Result<&'a ServiceState, EngineError> {
    if let Some(s) = c.services.get(key) {
        return Ok(s);
    }
    if let Some(s) = c.services.values().find(|s| s.spec["Name"].as_str() == Some(key)) {
        return Ok(s);
    }
    let mut prefixed = c.services.values().filter(|s| !key.is_empty() && s.meta.id.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some(s), None) => Ok(s),
        _ => Err(EngineError::NotFound(format!("service {key} not found"))),
    }
}

/// Checks that the secrets and configs a spec references exist.
fn check_references(c: &Cluster, spec: &Value) -> Result<(), EngineError> {
    for kind in [Kind::Secret, Kind::Config] {
        let (field, id_field) = kind.reference_fields();
        for r in spec["TaskTemplate"]["ContainerSpec"][field].as_array().into_iter().flatten() {
            let id = r[id_field].as_str().unwrap_or("");
            let found = objects::find(c, kind, id).map_err(|_| {
                EngineError::InvalidArgument(format!(
                    "rpc error: code = InvalidArgument desc = {} not found: {id}",
                    if kind == Kind::Secret { "secret" } else { "config" }
                ))
            })?;
            if found.meta.id != id {
                return Err(EngineError::InvalidArgument(format!("{id_field} must be a full id, not {id}")));
            }
        }
    }
    Ok(())
}

/// The published ports of `spec`, with a host port chosen where none was given (kept from
/// `previous` for the same target), none clashing with another service's.
fn resolve_ports(c: &Cluster, own_id: &str, spec: &Value, previous: &[Value]) -> Result<Vec<Value>, EngineError> {
    let taken: Vec<(u64, String)> = c
        .services
        .values()
        .filter(|s| s.meta.id != own_id)
        .flat_map(|s| s.ports.iter())
        .filter_map(|p| Some((p["PublishedPort"].as_u64()?, p["Protocol"].as_str()?.to_string())))
        .collect();
    let mut out: Vec<Value> = Vec::new();
    for p in spec["EndpointSpec"]["Ports"].as_array().into_iter().flatten() {
        let target = p["TargetPort"].as_u64().filter(|t| (1..=65535).contains(t)).ok_or_else(|| {
            EngineError::InvalidArgument(format!("a published port needs a TargetPort between 1 and 65535: {p}"))
        })?;
        let proto = p["Protocol"].as_str().filter(|s| !s.is_empty()).unwrap_or("tcp").to_string();
        if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
            return Err(EngineError::InvalidArgument(format!("invalid protocol {proto:?}")));
        }
        let mode = p["PublishMode"].as_str().filter(|s| !s.is_empty()).unwrap_or("ingress").to_string();
        let mut published = p["PublishedPort"].as_u64().unwrap_or(0);
        if published == 0 && mode == "ingress" {
            let kept =
                previous.iter().find(|q| q["TargetPort"].as_u64() == Some(target) && q["Protocol"] == json!(proto));
            published = match kept.and_then(|q| q["PublishedPort"].as_u64()) {
                Some(k) => k,
                None => DYNAMIC_PORTS
                    .clone()
                    .find(|port| {
                        !taken.iter().any(|(t, pr)| t == port && *pr == proto)
                            && !out.iter().any(|o| o["PublishedPort"].as_u64() == Some(*port))
                    })
                    .ok_or_else(|| EngineError::InvalidArgument("no free port left in 30000-32767".into()))?,
            };
        }
        if published > 65535 {
            return Err(EngineError::InvalidArgument(format!("invalid published port {published}")));
        }
        if published != 0 {
            if let Some(s) = c.services.values().find(|s| {
                s.meta.id != own_id
                    && s.ports
                        .iter()
                        .any(|q| q["PublishedPort"].as_u64() == Some(published) && q["Protocol"] == json!(proto))
            }) {
                return Err(EngineError::InvalidArgument(format!(
                    "rpc error: code = InvalidArgument desc = port '{published}' is already in use by service '{}' ({})",
                    s.spec["Name"].as_str().unwrap_or(""),
                    s.meta.id
                )));
            }
        }
        out.push(json!({"Protocol": proto, "TargetPort": target, "PublishedPort": published, "PublishMode": mode}));
    }
    Ok(out)
}

/// The service's JSON; `status` adds `ServiceStatus` (running, desired and completed tasks).
pub fn to_json(c: &Cluster, s: &ServiceState, insert_defaults: bool, status: bool) -> Value {
    let mut out = meta_json(&s.meta);
    let show = |v: &Value| if insert_defaults { spec::with_service_defaults(v) } else { v.clone() };
    out.insert("Spec".into(), show(&s.spec));
    if let Some(p) = &s.previous_spec {
        out.insert("PreviousSpec".into(), show(p));
    }
    let mut endpoint = json!({"Spec": s.spec.get("EndpointSpec").cloned().unwrap_or(json!({}))});
    if !s.ports.is_empty() {
        endpoint["Ports"] = json!(s.ports);
        endpoint["VirtualIPs"] = json!([]);
    }
    out.insert("Endpoint".into(), endpoint);
    if status {
        let (kind, replicas, _) = spec::mode_of(&s.spec);
        let tasks = c.tasks.values().filter(|t| t.service_id == s.meta.id);
        let (mut running, mut completed) = (0u64, 0u64);
        for t in tasks {
            running += u64::from(t.state == "running");
            completed += u64::from(t.state == "complete");
        }
        let desired = match kind {
            "replicated" | "global" => replicas,
            _ => replicas.saturating_sub(completed),
        };
        let mut st = json!({"RunningTasks": running, "DesiredTasks": desired});
        if kind.ends_with("job") {
            st["CompletedTasks"] = json!(completed);
        }
        out.insert("ServiceStatus".into(), st);
    }
    Value::Object(out)
}

/// Whether `s` passes `GET /services` filters (`id`, `name` prefix, `label`, `mode`).
pub fn matches(s: &ServiceState, f: &Filters) -> bool {
    let name = s.spec["Name"].as_str().unwrap_or("");
    f.any("id", |v| s.meta.id.starts_with(v))
        && f.any("name", |v| name.starts_with(v))
        && f.any("mode", |v| spec::mode_of(&s.spec).0 == v)
        && f.json_labels_match("label", &s.spec["Labels"])
}

impl Swarm {
    /// `POST /services/create`: returns the id. `resolve_network` maps a name or id to the id of
    /// a swarm-scoped network.
    pub fn create_service(
        &self,
        spec: &Value,
        resolve_network: &dyn Fn(&str) -> Result<String, EngineError>,
    ) -> Result<String, EngineError> {
        let spec = spec::normalise_service(spec, resolve_network)?;
        let name = spec["Name"].as_str().unwrap_or("").to_string();
        self.change(|c| {
            if c.services.values().any(|s| s.spec["Name"].as_str() == Some(name.as_str())) {
                return Err(EngineError::Conflict(format!(
                    "rpc error: code = AlreadyExists desc = name conflicts with an existing object: service {name} already exists"
                )));
            }
            check_references(c, &spec)?;
            let meta = c.new_meta();
            let ports = resolve_ports(c, &meta.id, &spec, &[])?;
            let id = meta.id.clone();
            c.services.insert(id.clone(), ServiceState { meta, spec, previous_spec: None, ports, generation: 1 });
            Ok(id)
        })
    }

    /// `POST /services/{id}/update?version=[&rollback=previous]`.
    pub fn update_service(
        &self,
        key: &str,
        version: u64,
        spec: Option<&Value>,
        rollback: bool,
        resolve_network: &dyn Fn(&str) -> Result<String, EngineError>,
    ) -> Result<(), EngineError> {
        let given = spec.map(|s| spec::normalise_service(s, resolve_network)).transpose()?;
        self.change(|c| {
            let mut s = find(c, key)?.clone();
            if version != s.meta.version {
                return Err(EngineError::InvalidArgument(
                    "rpc error: code = Unknown desc = update out of sequence".into(),
                ));
            }
            let next = if rollback {
                s.previous_spec.clone().ok_or_else(|| {
                    EngineError::InvalidArgument(format!(
                        "rpc error: code = FailedPrecondition desc = service {} does not have a previous spec",
                        s.meta.id
                    ))
                })?
            } else {
                given.ok_or_else(|| EngineError::InvalidArgument("a service update needs a spec".into()))?
            };
            if next["Name"] != s.spec["Name"] {
                return Err(EngineError::InvalidArgument(
                    "rpc error: code = Unimplemented desc = renaming services is not supported".into(),
                ));
            }
            if spec::mode_of(&next).0 != spec::mode_of(&s.spec).0 {
                return Err(EngineError::InvalidArgument(
                    "rpc error: code = Unimplemented desc = service mode change is not allowed".into(),
                ));
            }
            check_references(c, &next)?;
            s.ports = resolve_ports(c, &s.meta.id, &next, &s.ports)?;
            if next["TaskTemplate"] != s.spec["TaskTemplate"] || next["EndpointSpec"] != s.spec["EndpointSpec"] {
                s.generation += 1;
            }
            s.previous_spec = Some(std::mem::replace(&mut s.spec, next));
            c.touch(&mut s.meta);
            c.services.insert(s.meta.id.clone(), s);
            Ok(())
        })
    }

    /// `DELETE /services/{id}`: returns the containers of its tasks (the caller removes them).
    pub fn remove_service(&self, key: &str) -> Result<Vec<String>, EngineError> {
        self.change(|c| {
            let id = find(c, key)?.meta.id.clone();
            c.services.remove(&id);
            let containers =
                c.tasks.values().filter(|t| t.service_id == id).filter_map(|t| t.container_id.clone()).collect();
            c.tasks.retain(|_, t| t.service_id != id);
            c.bump();
            Ok(containers)
        })
    }
}
