//! Swarm specs as JSON: the defaults swarmkit fills in, the normalisation a stored spec gets,
//! and the translation of a task template into a container of our engine.

use serde_json::{json, Map, Value};

use crate::engine::go_json::fold_keys;
use crate::engine::EngineError;

/// `a` with every field of `b` laid over it (objects merge key by key, anything else replaces).
pub fn merged(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = a.clone();
            for (k, v) in b {
                let next = match out.get(k) {
                    Some(old) if !v.is_null() => merged(old, v),
                    _ => v.clone(),
                };
                out.insert(k.clone(), next);
            }
            Value::Object(out)
        }
        (_, Value::Null) => a.clone(),
        _ => b.clone(),
    }
}

/// The `SwarmSpec` of a new cluster before the client's fields.
pub fn swarm_defaults() -> Value {
    json!({
        "Name": "default",
        "Labels": {},
        "Orchestration": {"TaskHistoryRetentionLimit": 5},
        "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
                 "ElectionTick": 10, "HeartbeatTick": 1},
        "Dispatcher": {"HeartbeatPeriod": 5_000_000_000u64},
        "CAConfig": {"NodeCertExpiry": 7_776_000_000_000_000u64},
        "TaskDefaults": {},
        "EncryptionConfig": {"AutoLockManagers": false},
    })
}

/// Update and rollback defaults (swarmkit's).
fn update_defaults() -> Value {
    json!({"Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000u64, "MaxFailureRatio": 0,
           "Order": "stop-first"})
}

/// A service spec with every default swarmkit would apply (`insertDefaults=true`).
pub fn with_service_defaults(spec: &Value) -> Value {
    let defaults = json!({
        "TaskTemplate": {
            "ContainerSpec": {"StopGracePeriod": 10_000_000_000u64, "PullOptions": {}, "DNSConfig": {},
                              "Isolation": "default"},
            "Resources": {"Limits": {}, "Reservations": {}},
            "RestartPolicy": {"Condition": "any", "Delay": 5_000_000_000u64, "MaxAttempts": 0},
            "Placement": {},
            "ForceUpdate": 0,
            "Runtime": "container",
        },
        "Mode": {"Replicated": {"Replicas": 1}},
        "UpdateConfig": update_defaults(),
        "RollbackConfig": update_defaults(),
        "EndpointSpec": {"Mode": "vip"},
    });
    merged(&defaults, spec)
}

/// Checks a service spec and gives it the shape swarmkit stores: `Labels` and `ForceUpdate`
/// always present, a mode (one replica by default), a job's `MaxConcurrent`, and network
/// targets as ids (`resolve_network` turns a name or id into the id).
pub fn normalise_service(
    spec: &Value,
    resolve_network: &dyn Fn(&str) -> Result<String, EngineError>,
) -> Result<Value, EngineError> {
    let bad = |m: &str| EngineError::InvalidArgument(m.to_string());
    let mut spec = spec.clone();
    strip_nulls(&mut spec);
    let obj = spec.as_object_mut().ok_or_else(|| bad("service spec must be a JSON object"))?;
    let name = obj.get("Name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        return Err(bad("rpc error: code = InvalidArgument desc = name must be valid as a DNS name component"));
    }
    if !crate::engine::containers::network::valid_dns_name(&name) || name.contains('.') || name.len() > 63 {
        return Err(EngineError::InvalidArgument(format!(
            "rpc error: code = InvalidArgument desc = name must be valid as a DNS name component: {name:?}"
        )));
    }
    if !obj.get("Labels").is_some_and(Value::is_object) {
        obj.insert("Labels".into(), json!({}));
    }
    // The deprecated top-level Networks belong to the task template.
    let legacy_networks = obj.remove("Networks");
    let template = obj.entry("TaskTemplate").or_insert_with(|| json!({}));
    let template = template.as_object_mut().ok_or_else(|| bad("TaskTemplate must be an object"))?;
    let image =
        template.get("ContainerSpec").and_then(|c| c.get("Image")).and_then(Value::as_str).unwrap_or("").to_string();
    if image.is_empty() {
        return Err(bad("rpc error: code = InvalidArgument desc = ContainerSpec: image reference must be provided"));
    }
    if !template.get("ForceUpdate").is_some_and(Value::is_u64) {
        template.insert("ForceUpdate".into(), json!(0));
    }
    if let (Some(n), false) = (legacy_networks, template.contains_key("Networks")) {
        template.insert("Networks".into(), n);
    }
    if let Some(nets) = template.get_mut("Networks").and_then(Value::as_array_mut) {
        for n in nets.iter_mut() {
            let target = n.get("Target").and_then(Value::as_str).unwrap_or("").to_string();
            if target.is_empty() {
                return Err(bad("a service network needs a Target"));
            }
            n["Target"] = json!(resolve_network(&target)?);
        }
    }
    for key in ["UpdateConfig", "RollbackConfig"] {
        if let Some(m) = obj.get_mut(key).and_then(Value::as_object_mut) {
            fold_keys(m, &["Parallelism", "Delay", "FailureAction", "Monitor", "MaxFailureRatio", "Order"]);
        }
    }
    let mode = obj.entry("Mode").or_insert_with(|| json!({}));
    let mode = mode.as_object_mut().ok_or_else(|| bad("Mode must be an object"))?;
    // Go's decoder takes `{"global": {}}` (docker-py's spelling) as `Global`.
    fold_keys(mode, &["Replicated", "Global", "ReplicatedJob", "GlobalJob"]);
    for inner in mode.values_mut().filter_map(Value::as_object_mut) {
        fold_keys(inner, &["Replicas", "MaxConcurrent", "TotalCompletions"]);
    }
    let kinds: Vec<&String> = mode.keys().filter(|k| !mode[k.as_str()].is_null()).collect();
    match kinds.as_slice() {
        [] => {
            mode.clear();
            mode.insert("Replicated".into(), json!({"Replicas": 1}));
        }
        [k] if k.as_str() == "Replicated" => {
            let r = object_mut_or_insert(mode, "Replicated");
            r.entry("Replicas").or_insert(json!(1));
            check_count(r, "Replicas")?;
        }
        [k] if k.as_str() == "ReplicatedJob" => {
            let r = object_mut_or_insert(mode, "ReplicatedJob");
            r.entry("MaxConcurrent").or_insert(json!(1));
            let max = r.get("MaxConcurrent").cloned().unwrap_or(json!(1));
            r.entry("TotalCompletions").or_insert(max);
            check_count(r, "MaxConcurrent")?;
            check_count(r, "TotalCompletions")?;
        }
        [k] if k.as_str() == "Global" || k.as_str() == "GlobalJob" => {}
        _ => return Err(bad("Mode must be one of Replicated, Global, ReplicatedJob, GlobalJob")),
    }
    Ok(spec)
}

/// The most tasks one service may ask of this one node at a time.
pub const MAX_REPLICAS: u64 = 1000;

/// Checks that `m[key]` is a task count this node can run.
fn check_count(m: &Map<String, Value>, key: &str) -> Result<(), EngineError> {
    match m.get(key).and_then(Value::as_u64) {
        Some(n) if n <= MAX_REPLICAS => Ok(()),
        Some(n) => Err(EngineError::InvalidArgument(format!(
            "{key} {n} is more than the {MAX_REPLICAS} tasks a service may run on this one-node swarm"
        ))),
        None => Err(EngineError::InvalidArgument(format!("{key} must be a whole number"))),
    }
}

/// Removes every `null` member, at any depth (a field sent as `null` is a field not sent).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `m[key]` as an object (an object replaces whatever else is there).
fn object_mut_or_insert<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(o) => o,
        // Just made an object above.
        _ => unreachable!("{key} was set to an object"),
    }
}

/// The kind of a service's mode and its replica count (`None`: one per node).
pub fn mode_of(spec: &Value) -> (&'static str, u64, u64) {
    let mode = &spec["Mode"];
    if let Some(r) = mode.get("Replicated") {
        ("replicated", r["Replicas"].as_u64().unwrap_or(1), 0)
    } else if let Some(j) = mode.get("ReplicatedJob") {
        ("replicated-job", j["TotalCompletions"].as_u64().unwrap_or(1), j["MaxConcurrent"].as_u64().unwrap_or(1).max(1))
    } else if mode.get("GlobalJob").is_some() {
        ("global-job", 1, 1)
    } else {
        ("global", 1, 0)
    }
}

/// What a task's container mounts besides the spec's own mounts: a secret or config file
/// (`host` on the engine's disk) at `target` in the container.
#[derive(Debug, Clone)]
pub struct FileMount {
    /// The file on the engine's disk.
    pub host: std::path::PathBuf,
    /// Where it appears in the container.
    pub target: String,
}

/// Everything a task's container is made from.
#[derive(Debug)]
pub struct TaskContainer<'a> {
    /// The task template.
    pub template: &'a Value,
    /// The service's name and id, the task's id, name and node.
    pub service_name: &'a str,
    /// Service id.
    pub service_id: &'a str,
    /// Task id.
    pub task_id: &'a str,
    /// `service.slot.taskid`.
    pub task_name: &'a str,
    /// Node id.
    pub node_id: &'a str,
    /// Network names to join (with the service's name as an alias on each).
    pub networks: Vec<(String, Vec<String>, Value)>,
    /// Host ports to publish: (target port, protocol, host port).
    pub ports: Vec<(u64, String, u64)>,
    /// Secret and config files.
    pub files: Vec<FileMount>,
}

/// The `POST /containers/create` body of a task's container.
pub fn container_body(t: &TaskContainer<'_>) -> Value {
    let cs = &t.template["ContainerSpec"];
    let mut labels = cs.get("Labels").and_then(Value::as_object).cloned().unwrap_or_default();
    for (k, v) in [
        ("com.docker.swarm.service.id", t.service_id),
        ("com.docker.swarm.service.name", t.service_name),
        ("com.docker.swarm.task", ""),
        ("com.docker.swarm.task.id", t.task_id),
        ("com.docker.swarm.task.name", t.task_name),
        ("com.docker.swarm.node.id", t.node_id),
    ] {
        labels.insert(k.into(), json!(v));
    }
    let mut body = json!({
        "Image": cs["Image"],
        "Labels": labels,
        "Tty": cs.get("TTY").cloned().unwrap_or(json!(false)),
        "OpenStdin": cs.get("OpenStdin").cloned().unwrap_or(json!(false)),
    });
    // Swarm's Command replaces the image's entrypoint and Args its command, as in dockerd.
    for (from, to) in [
        ("Command", "Entrypoint"),
        ("Args", "Cmd"),
        ("Env", "Env"),
        ("Dir", "WorkingDir"),
        ("User", "User"),
        ("Hostname", "Hostname"),
        ("StopSignal", "StopSignal"),
        ("Healthcheck", "Healthcheck"),
    ] {
        if let Some(v) = cs.get(from).filter(|v| !v.is_null()) {
            body[to] = v.clone();
        }
    }
    if let Some(g) = cs.get("StopGracePeriod").and_then(Value::as_u64) {
        body["StopTimeout"] = json!(g / 1_000_000_000);
    }
    let mut host = json!({"RestartPolicy": {"Name": "no"}});
    let mut mounts: Vec<Value> = cs.get("Mounts").and_then(Value::as_array).cloned().unwrap_or_default();
    for f in &t.files {
        mounts.push(json!({"Type": "bind", "Source": f.host.to_string_lossy(), "Target": f.target, "ReadOnly": true}));
    }
    if !mounts.is_empty() {
        host["Mounts"] = json!(mounts);
    }
    for (from, to) in [
        ("ReadOnly", "ReadonlyRootfs"),
        ("Groups", "GroupAdd"),
        ("Init", "Init"),
        ("Sysctls", "Sysctls"),
        ("CapabilityAdd", "CapAdd"),
        ("CapabilityDrop", "CapDrop"),
        ("Ulimits", "Ulimits"),
    ] {
        if let Some(v) = cs.get(from).filter(|v| !v.is_null()) {
            host[to] = v.clone();
        }
    }
    // "IP name [name…]" (swarm) → "name:IP" (containers).
    let hosts: Vec<String> = cs
        .get("Hosts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .flat_map(|h| {
            let mut parts = h.split_whitespace();
            let ip = parts.next().unwrap_or("").to_string();
            parts.map(move |name| format!("{name}:{ip}")).collect::<Vec<_>>()
        })
        .collect();
    if !hosts.is_empty() {
        host["ExtraHosts"] = json!(hosts);
    }
    let dns = &cs["DNSConfig"];
    for (from, to) in [("Nameservers", "Dns"), ("Search", "DnsSearch"), ("Options", "DnsOptions")] {
        if let Some(v) = dns.get(from).filter(|v| !v.is_null()) {
            host[to] = v.clone();
        }
    }
    let limits = &t.template["Resources"]["Limits"];
    for (from, to) in [("NanoCPUs", "NanoCpus"), ("MemoryBytes", "Memory"), ("Pids", "PidsLimit")] {
        if let Some(v) = limits.get(from).and_then(Value::as_i64).filter(|v| *v > 0) {
            host[to] = json!(v);
        }
    }
    if let Some(name) = t.template["LogDriver"].get("Name").and_then(Value::as_str) {
        host["LogConfig"] =
            json!({"Type": name, "Config": t.template["LogDriver"].get("Options").cloned().unwrap_or(json!({}))});
    }
    if !t.ports.is_empty() {
        let mut bindings = Map::new();
        let mut exposed = Map::new();
        for (target, proto, published) in &t.ports {
            let key = format!("{target}/{proto}");
            exposed.insert(key.clone(), json!({}));
            let entry = bindings.entry(key).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(json!({"HostIp": "", "HostPort": published.to_string()}));
            }
        }
        host["PortBindings"] = Value::Object(bindings);
        body["ExposedPorts"] = Value::Object(exposed);
    }
    let mut endpoints = Map::new();
    match t.networks.first() {
        Some((first, _, _)) => host["NetworkMode"] = json!(first),
        None => host["NetworkMode"] = json!("bridge"),
    }
    for (name, aliases, opts) in &t.networks {
        endpoints.insert(name.clone(), json!({"Aliases": aliases, "DriverOpts": opts}));
    }
    body["HostConfig"] = host;
    if !endpoints.is_empty() {
        body["NetworkingConfig"] = json!({"EndpointsConfig": endpoints});
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: &str) -> Result<String, EngineError> {
        Ok(format!("id-of-{n}"))
    }

    #[test]
    fn normalising_fills_what_swarmkit_stores_and_checks_the_rest() -> Result<(), EngineError> {
        let spec = json!({"Name": "web", "TaskTemplate": {"ContainerSpec": {"Image": "busybox"},
                          "Networks": [{"Target": "front"}]}});
        let n = normalise_service(&spec, &ids)?;
        assert_eq!(n["Labels"], json!({}));
        assert_eq!(n["TaskTemplate"]["ForceUpdate"], json!(0));
        assert_eq!(n["Mode"], json!({"Replicated": {"Replicas": 1}}));
        assert_eq!(n["TaskTemplate"]["Networks"], json!([{"Target": "id-of-front"}]));
        let job = json!({"Name": "j", "Mode": {"ReplicatedJob": {"TotalCompletions": 5}},
                         "TaskTemplate": {"ContainerSpec": {"Image": "busybox"}}});
        assert_eq!(
            normalise_service(&job, &ids)?["Mode"]["ReplicatedJob"],
            json!({"MaxConcurrent": 1, "TotalCompletions": 5})
        );
        assert!(normalise_service(&json!({"Name": "x", "TaskTemplate": {"ContainerSpec": {}}}), &ids).is_err());
        let huge = json!({"Name": "h", "Mode": {"Replicated": {"Replicas": 1u64 << 62}},
                          "TaskTemplate": {"ContainerSpec": {"Image": "i"}}});
        assert!(normalise_service(&huge, &ids).is_err());
        assert!(normalise_service(&json!({"Name": "a b", "TaskTemplate": {"ContainerSpec": {"Image": "i"}}}), &ids)
            .is_err());
        let global = json!({"Name": "g", "Mode": {"global": {}}, "Labels": null, "EndpointSpec": null,
                            "TaskTemplate": {"ContainerSpec": {"Image": "i", "Args": null}}});
        let g = normalise_service(&global, &ids)?;
        assert_eq!((g["Mode"].clone(), g.get("EndpointSpec")), (json!({"Global": {}}), None));
        assert_eq!(g["TaskTemplate"]["ContainerSpec"], json!({"Image": "i"}));
        assert!(normalise_service(
            &json!({"Name": "m", "Mode": {"Replicated": {}, "Global": {}},
                                          "TaskTemplate": {"ContainerSpec": {"Image": "i"}}}),
            &ids
        )
        .is_err());
        Ok(())
    }

    #[test]
    fn defaults_lie_under_the_spec() {
        let spec = json!({"Name": "web", "UpdateConfig": {"Parallelism": 3}});
        let d = with_service_defaults(&spec);
        assert_eq!(d["UpdateConfig"]["Parallelism"], json!(3));
        assert_eq!(d["UpdateConfig"]["Order"], json!("stop-first"));
        assert_eq!(d["RollbackConfig"]["FailureAction"], json!("pause"));
        assert_eq!(merged(&json!({"a": {"b": 1, "c": 2}}), &json!({"a": {"c": 3}})), json!({"a": {"b": 1, "c": 3}}));
    }

    #[test]
    fn a_task_template_becomes_a_container() {
        let template = json!({
            "ContainerSpec": {"Image": "busybox", "Command": ["sleep"], "Args": ["60"], "Hosts": ["127.0.0.1 foo bar"],
                              "DNSConfig": {"Nameservers": ["8.8.8.8"]}, "Groups": ["wheel"], "StopGracePeriod": 3_000_000_000u64,
                              "Labels": {"c": "1"}},
            "Resources": {"Limits": {"MemoryBytes": 1_048_576}},
        });
        let t = TaskContainer {
            template: &template,
            service_name: "web",
            service_id: "s1",
            task_id: "t1",
            task_name: "web.1.t1",
            node_id: "n1",
            networks: vec![("front".into(), vec!["web".into()], json!({}))],
            ports: vec![(80, "tcp".into(), 8080)],
            files: vec![FileMount { host: "/x/secret".into(), target: "/run/secrets/s".into() }],
        };
        let b = container_body(&t);
        assert_eq!((b["Entrypoint"].clone(), b["Cmd"].clone()), (json!(["sleep"]), json!(["60"])));
        assert_eq!(b["HostConfig"]["ExtraHosts"], json!(["foo:127.0.0.1", "bar:127.0.0.1"]));
        assert_eq!(b["HostConfig"]["Dns"], json!(["8.8.8.8"]));
        assert_eq!(b["HostConfig"]["Memory"], json!(1_048_576));
        assert_eq!(b["HostConfig"]["NetworkMode"], json!("front"));
        assert_eq!(b["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"], json!("8080"));
        assert_eq!(b["HostConfig"]["Mounts"][0]["Target"], json!("/run/secrets/s"));
        assert_eq!(b["StopTimeout"], json!(3));
        assert_eq!(b["Labels"]["com.docker.swarm.task.name"], json!("web.1.t1"));
        assert_eq!(b["Labels"]["c"], json!("1"));
        assert_eq!(b["NetworkingConfig"]["EndpointsConfig"]["front"]["Aliases"], json!(["web"]));
    }
}
