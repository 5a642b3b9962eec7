//! The orchestrator: makes each service's tasks follow its spec, one container per task.
//!
//! A loop, woken by every change and once a second, (1) reads what the task containers did
//! (running, exited with a code, gone), (2) decides per service and slot what should run:
//! a new task where a slot has none, a replacement where the service's template changed
//! (stop-first) or where a finished task's restart policy asks for one after its delay, and
//! shutdown for slots beyond the replica count, (3) carries that out: creates and starts the
//! new tasks' containers (secrets and configs written as read-only files), stops the old ones,
//! and removes the containers of tasks beyond the history limit. Only this loop changes task
//! states, so two rounds never race each other.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{json, Value};

use super::objects::{self, Kind};
use super::spec::{self, FileMount, TaskContainer};
use super::state::{meta_json, Cluster, ServiceState, TaskState};
use crate::engine::containers::record::Status;
use crate::engine::filters::Filters;
use crate::engine::{Engine, EngineError};

/// Starts the orchestrator loop (once per engine).
pub fn start(engine: &Arc<Engine>) {
    if engine.swarm_orchestrator.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let weak = Arc::downgrade(engine);
    tokio::spawn(run(weak));
}

async fn run(engine: Weak<Engine>) {
    loop {
        let Some(e) = engine.upgrade() else { return };
        if e.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if e.swarm.active() {
            if let Err(err) = reconcile(&e).await {
                tracing::warn!(error = %err, "swarm orchestration round failed");
            }
        }
        let wake = async { e.swarm.wake.notified().await };
        let _ = tokio::time::timeout(Duration::from_secs(1), wake).await;
    }
}

fn nanos(v: &Value, default: u64) -> Duration {
    Duration::from_nanos(v.as_u64().unwrap_or(default))
}

fn age(rfc3339: &str) -> Duration {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .and_then(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).to_std().ok())
        .unwrap_or(Duration::MAX)
}

/// What a task's container is doing now: (state, pid, exit code), `None` if it is gone.
fn observe(engine: &Engine, container: &str) -> Option<(Status, i64, i64)> {
    let r = engine.containers.get(container).ok()?.record();
    Some((r.state.status, i64::from(r.state.pid), i64::from(r.state.exit_code)))
}

/// One round.
pub async fn reconcile(engine: &Arc<Engine>) -> Result<(), EngineError> {
    let swarm = &engine.swarm;
    // 1. What the containers did.
    let snapshot = swarm.read(Clone::clone)?;
    let mut seen: BTreeMap<String, (String, String, i64, Option<i64>)> = BTreeMap::new();
    for t in snapshot.tasks.values().filter(|t| !t.finished()) {
        let Some(cid) = &t.container_id else { continue };
        let next = match observe(engine, cid) {
            None => ("failed".to_string(), "task: non-zero exit (container removed)".to_string(), 0, None),
            Some((Status::Running | Status::Paused | Status::Restarting, pid, _)) => {
                ("running".to_string(), "started".to_string(), pid, None)
            }
            Some((Status::Created, _, _)) => continue,
            Some((_, _, code)) if t.desired_state == "shutdown" => {
                ("shutdown".to_string(), "shutdown".to_string(), 0, Some(code))
            }
            Some((_, _, 0)) => ("complete".to_string(), "finished".to_string(), 0, Some(0)),
            Some((_, _, code)) => ("failed".to_string(), format!("task: non-zero exit ({code})"), 0, Some(code)),
        };
        if next.0 != t.state || next.2 != t.pid {
            seen.insert(t.meta.id.clone(), next);
        }
    }
    if !seen.is_empty() {
        swarm.change(|c| {
            for (id, (state, message, pid, code)) in &seen {
                let Some(mut t) = c.tasks.get(id).cloned() else { continue };
                if t.state != *state {
                    t.timestamp = crate::engine::now_rfc3339();
                }
                t.state.clone_from(state);
                t.message.clone_from(message);
                t.pid = *pid;
                t.exit_code = code.or(t.exit_code);
                if state == "failed" {
                    t.err = Some(message.clone());
                }
                c.touch(&mut t.meta);
                c.tasks.insert(id.clone(), t);
            }
            Ok(())
        })?;
    }

    // 2. What should run.
    let plan = swarm.change(plan_round)?;

    // 3. Carry it out.
    for cid in plan.stop {
        let engine = engine.clone();
        tokio::spawn(async move {
            if let Ok(c) = engine.containers.get(&cid) {
                let grace = c.record().config.stop_timeout.unwrap_or(10);
                if let Err(e) = crate::engine::containers::stop(&engine, &c, None, Some(grace)).await {
                    tracing::warn!(container.id = %cid, error = %e, "stopping a swarm task");
                }
                engine.swarm.wake.notify_one();
            }
        });
    }
    for cid in plan.remove {
        if let Ok(c) = engine.containers.get(&cid) {
            if let Err(e) = crate::engine::containers::remove::remove(engine, &c, true, false).await {
                tracing::warn!(container.id = %cid, error = %e, "removing an old swarm task's container");
            }
        }
    }
    for dir in plan.forget_files {
        let _ = std::fs::remove_dir_all(swarm.task_files(&dir));
    }
    for task_id in plan.launch {
        launch(engine, &task_id).await;
    }
    Ok(())
}

/// What a round decided.
#[derive(Debug, Default)]
struct Plan {
    launch: Vec<String>,
    stop: Vec<String>,
    remove: Vec<String>,
    forget_files: Vec<String>,
}

/// The decisions of a round, recorded in the cluster (new tasks, tasks told to shut down,
/// history pruned).
fn plan_round(c: &mut Cluster) -> Result<Plan, EngineError> {
    let mut plan = Plan::default();
    let availability = c.node.spec["Availability"].as_str().unwrap_or("active").to_string();
    let history = c.spec["Orchestration"]["TaskHistoryRetentionLimit"].as_u64().unwrap_or(5).max(1);
    let services: Vec<ServiceState> = c.services.values().cloned().collect();
    for s in &services {
        let (kind, count, max_concurrent) = spec::mode_of(&s.spec);
        let job = kind.ends_with("job");
        let slots: Vec<u64> = match kind {
            "global" | "global-job" => vec![0],
            _ => (1..=count).collect(),
        };
        let policy = &s.spec["TaskTemplate"]["RestartPolicy"];
        let condition = policy["Condition"].as_str().unwrap_or(if job { "on-failure" } else { "any" }).to_string();
        let delay = nanos(&policy["Delay"], 5_000_000_000);
        let max_attempts = policy["MaxAttempts"].as_u64().unwrap_or(0);
        let mut tasks: Vec<TaskState> = c.tasks.values().filter(|t| t.service_id == s.meta.id).cloned().collect();
        tasks.sort_by_key(|t| t.meta.version);
        let active = |tasks: &[TaskState]| {
            tasks
                .iter()
                .filter(|t| t.desired_state == "running" && !t.finished() && t.generation == s.generation)
                .count()
        };
        // Slots no longer wanted, tasks of an older generation, and everything on a drained node.
        for t in tasks.iter_mut() {
            let unwanted = !slots.contains(&t.slot) || t.generation != s.generation || availability == "drain";
            if unwanted && t.desired_state == "running" {
                t.desired_state = "shutdown".into();
                if let (Some(cid), false) = (&t.container_id, t.finished()) {
                    plan.stop.push(cid.clone());
                }
                if t.container_id.is_none() && !t.finished() {
                    t.state = "shutdown".into();
                    t.message = "shutdown".into();
                }
                let mut meta = t.meta.clone();
                c.touch(&mut meta);
                t.meta = meta;
                c.tasks.insert(t.meta.id.clone(), t.clone());
            }
        }
        if availability != "active" {
            continue;
        }
        let mut running_now = active(&tasks);
        for slot in &slots {
            let current = tasks.iter().rev().find(|t| t.slot == *slot && t.generation == s.generation);
            let want_new = match current {
                None => true,
                Some(t) if !t.finished() => false,
                Some(t) if t.desired_state == "shutdown" && t.state == "shutdown" => true,
                Some(t) => {
                    let restart = match condition.as_str() {
                        "none" => false,
                        "on-failure" => t.state != "complete",
                        _ => !(job && t.state == "complete"),
                    };
                    restart && (max_attempts == 0 || t.attempt < max_attempts) && age(&t.timestamp) >= delay
                }
            };
            if !want_new || (job && running_now >= usize::try_from(max_concurrent).unwrap_or(usize::MAX)) {
                continue;
            }
            // Stop-first: a slot's old task must have ended before its replacement starts (it
            // may hold the published port, or a volume the new one needs).
            if tasks.iter().any(|t| t.slot == *slot && t.generation != s.generation && !t.finished()) {
                continue;
            }
            let attempt = current.map_or(0, |t| t.attempt + 1);
            if let Some(t) = current.cloned() {
                if t.desired_state == "running" {
                    let mut t = t;
                    t.desired_state = "shutdown".into();
                    c.touch(&mut t.meta);
                    c.tasks.insert(t.meta.id.clone(), t);
                }
            }
            let meta = c.new_meta();
            let now = crate::engine::now_rfc3339();
            let task = TaskState {
                meta,
                service_id: s.meta.id.clone(),
                slot: *slot,
                generation: s.generation,
                attempt,
                spec: s.spec["TaskTemplate"].clone(),
                container_id: None,
                state: "pending".into(),
                desired_state: "running".into(),
                message: "pending task scheduling".into(),
                err: None,
                exit_code: None,
                pid: 0,
                timestamp: now,
            };
            plan.launch.push(task.meta.id.clone());
            tasks.push(task.clone());
            c.tasks.insert(task.meta.id.clone(), task);
            running_now += 1;
        }
        // History: per slot, the newest `history` tasks stay; older finished ones go.
        for slot in tasks.iter().map(|t| t.slot).collect::<std::collections::BTreeSet<_>>() {
            let of_slot: Vec<&TaskState> = tasks.iter().filter(|t| t.slot == slot).collect();
            let excess = of_slot.len().saturating_sub(usize::try_from(history).unwrap_or(5));
            for t in of_slot.into_iter().take(excess).filter(|t| t.finished()) {
                c.tasks.remove(&t.meta.id);
                plan.remove.extend(t.container_id.clone());
                plan.forget_files.push(t.meta.id.clone());
            }
        }
    }
    Ok(plan)
}

/// The name of a task's container: `service.slot.taskid` (`service.nodeid.taskid` for a
/// global service), as swarm names them.
fn task_name(service: &str, t: &TaskState, node_id: &str) -> String {
    if t.slot == 0 {
        format!("{service}.{node_id}.{}", t.meta.id)
    } else {
        format!("{service}.{}.{}", t.slot, t.meta.id)
    }
}

/// Writes a task's secret and config files; returns where they mount.
fn write_files(dir: &std::path::Path, c: &Cluster, template: &Value) -> Result<Vec<FileMount>, EngineError> {
    let mut out = Vec::new();
    for kind in [Kind::Secret, Kind::Config] {
        let (field, id_field) = kind.reference_fields();
        for r in template["ContainerSpec"][field].as_array().into_iter().flatten() {
            let id = r[id_field].as_str().unwrap_or("");
            let o = objects::find(c, kind, id)?;
            let file = &r["File"];
            let name = file["Name"].as_str().filter(|n| !n.is_empty()).or(o.spec["Name"].as_str()).unwrap_or(id);
            let target = match (kind, name.starts_with('/')) {
                (_, true) => name.to_string(),
                (Kind::Secret, false) => format!("/run/secrets/{name}"),
                (Kind::Config, false) => format!("/{name}"),
            };
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::Internal(format!("creating {}: {e}", dir.display())))?;
            // Only the engine reads them on the host; the container sees just its bind-mounted file.
            for d in [dir, dir.parent().unwrap_or(dir)] {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| EngineError::Internal(format!("protecting {}: {e}", d.display())))?;
            }
            let host = dir.join(format!("{}-{}", if kind == Kind::Secret { "secret" } else { "config" }, o.meta.id));
            std::fs::write(&host, objects::data(o))
                .map_err(|e| EngineError::Internal(format!("writing {}: {e}", host.display())))?;
            let mode = file["Mode"].as_u64().and_then(|m| u32::try_from(m).ok()).unwrap_or(0o444);
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| EngineError::Internal(format!("setting the mode of {}: {e}", host.display())))?;
            let id_of = |k: &str| file[k].as_str().and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
            std::os::unix::fs::chown(&host, Some(id_of("UID")), Some(id_of("GID")))
                .map_err(|e| EngineError::Internal(format!("setting the owner of {}: {e}", host.display())))?;
            out.push(FileMount { host, target });
        }
    }
    Ok(out)
}

/// Creates and starts the container of new task `task_id`; records the outcome.
async fn launch(engine: &Arc<Engine>, task_id: &str) {
    let result = create_container(engine, task_id).await;
    let outcome = match result {
        Ok(cid) => {
            let started = match engine.containers.get(&cid) {
                Ok(c) => crate::engine::containers::start(engine, &c).await.map(|_| ()),
                Err(e) => Err(e),
            };
            (Some(cid), started.err())
        }
        Err(e) => (None, Some(e)),
    };
    let kept = engine.swarm.change(|c| {
        let Some(mut t) = c.tasks.get(task_id).cloned() else { return Ok(false) };
        t.container_id.clone_from(&outcome.0);
        match &outcome.1 {
            None => {
                t.state = "starting".into();
                t.message = "starting".into();
            }
            Some(e) => {
                t.state = if outcome.0.is_some() { "failed" } else { "rejected" }.into();
                t.message = "task: start failed".into();
                t.err = Some(e.to_string());
                tracing::warn!(task.id = %task_id, error = %e, "a swarm task could not start");
            }
        }
        t.timestamp = crate::engine::now_rfc3339();
        c.touch(&mut t.meta);
        c.tasks.insert(task_id.to_string(), t);
        Ok(true)
    });
    // The service went while its task was being made: its container goes too.
    if !matches!(kept, Ok(true)) {
        if let Some(cid) = outcome.0 {
            if let Ok(c) = engine.containers.get(&cid) {
                let _ = crate::engine::containers::remove::remove(engine, &c, true, false).await;
            }
        }
        let _ = std::fs::remove_dir_all(engine.swarm.task_files(task_id));
    }
}

async fn create_container(engine: &Arc<Engine>, task_id: &str) -> Result<String, EngineError> {
    let (cluster, task) = engine.swarm.read(|c| (c.clone(), c.tasks.get(task_id).cloned()))?;
    let task = task.ok_or_else(|| EngineError::NotFound(format!("task {task_id} not found")))?;
    let service = cluster
        .services
        .get(&task.service_id)
        .ok_or_else(|| EngineError::NotFound(format!("service {} not found", task.service_id)))?;
    let service_name = service.spec["Name"].as_str().unwrap_or("");
    let node_id = cluster.node.meta.id.clone();
    let files = write_files(&engine.swarm.task_files(task_id), &cluster, &task.spec)?;
    let mut networks = Vec::new();
    for n in task.spec["Networks"].as_array().into_iter().flatten() {
        let target = n["Target"].as_str().unwrap_or("");
        let net = engine.networks.get(target)?;
        let mut aliases = vec![service_name.to_string()];
        aliases.extend(n["Aliases"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string));
        networks.push((net.name, aliases, n.get("DriverOpts").cloned().unwrap_or(json!({}))));
    }
    // Ingress ports come from the first slot's task (one node: no mesh to spread them);
    // host-mode ports from every task.
    let first_slot = task.slot <= 1;
    let ports = service
        .ports
        .iter()
        .filter(|p| p["PublishedPort"].as_u64().unwrap_or(0) != 0)
        .filter(|p| first_slot || p["PublishMode"] == json!("host"))
        .filter_map(|p| {
            Some((p["TargetPort"].as_u64()?, p["Protocol"].as_str()?.to_string(), p["PublishedPort"].as_u64()?))
        })
        .collect();
    let name = task_name(service_name, &task, &node_id);
    // The swarm's task defaults fill in a log driver the service does not name.
    let mut template = task.spec.clone();
    if template.get("LogDriver").is_none() {
        if let Some(d) = cluster.spec["TaskDefaults"].get("LogDriver").filter(|d| d.is_object()) {
            template["LogDriver"] = d.clone();
        }
    }
    let body = spec::container_body(&TaskContainer {
        template: &template,
        service_name,
        service_id: &service.meta.id,
        task_id,
        task_name: &name,
        node_id: &node_id,
        networks,
        ports,
        files,
    });
    let body: bollard_stubs::models::ContainerCreateBody = serde_json::from_value(body)
        .map_err(|e| EngineError::InvalidArgument(format!("the service's container spec is invalid: {e}")))?;
    let (id, _) = crate::engine::containers::create(engine, Some(&name), None, body).await?;
    Ok(id)
}

/// Finds a task by id or unique id prefix.
pub fn find<'a>(c: &'a Cluster, key: &str) -> Result<&'a TaskState, EngineError> {
    if let Some(t) = c.tasks.get(key) {
        return Ok(t);
    }
    let mut prefixed = c.tasks.values().filter(|t| !key.is_empty() && t.meta.id.starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some(t), None) => Ok(t),
        _ => Err(EngineError::NotFound(format!("task {key} not found"))),
    }
}

/// The task's JSON (`GET /tasks/{id}`).
pub fn to_json(c: &Cluster, t: &TaskState) -> Value {
    let mut out = meta_json(&t.meta);
    let service = c.services.get(&t.service_id);
    out.insert("Labels".into(), json!({}));
    out.insert("Spec".into(), t.spec.clone());
    out.insert("ServiceID".into(), json!(t.service_id));
    if t.slot > 0 {
        out.insert("Slot".into(), json!(t.slot));
    }
    out.insert("NodeID".into(), json!(c.node.meta.id));
    let mut status = json!({"Timestamp": t.timestamp, "State": t.state, "Message": t.message});
    if let Some(e) = &t.err {
        status["Err"] = json!(e);
    }
    if let Some(cid) = &t.container_id {
        status["ContainerStatus"] = json!({"ContainerID": cid, "PID": t.pid, "ExitCode": t.exit_code.unwrap_or(0)});
    }
    out.insert("Status".into(), status);
    out.insert("DesiredState".into(), json!(t.desired_state));
    if let Some(s) = service {
        out.insert("ServiceAnnotations".into(), json!({"Name": s.spec["Name"]}));
    }
    Value::Object(out)
}

/// Whether `t` passes `GET /tasks` filters (`id`, `name`, `service` id or name, `node`,
/// `desired-state`, `label`).
pub fn matches(c: &Cluster, t: &TaskState, f: &Filters) -> bool {
    let service = c.services.get(&t.service_id);
    let service_name = service.and_then(|s| s.spec["Name"].as_str()).unwrap_or("");
    let name = task_name(service_name, t, &c.node.meta.id);
    f.any("id", |v| t.meta.id.starts_with(v))
        && f.any("name", |v| name.starts_with(v))
        && f.any("service", |v| t.service_id.starts_with(v) || service_name == v)
        && f.any("node", |v| c.node.meta.id.starts_with(v))
        && f.any("desired-state", |v| v == t.desired_state || (v == "accepted" && t.desired_state == "running"))
        // Tasks carry no labels of their own.
        && f.json_labels_match("label", &serde_json::Value::Null)
}
