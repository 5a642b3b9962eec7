//! Service and task endpoints: thin handlers over `engine::swarm`, and service/task logs
//! gathered from the tasks' containers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models::EventMessageTypeEnum;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::params::Params;
use super::swarm::{object_body, version};
use crate::engine::containers::io::{frame, read_log, Chunk};
use crate::engine::containers::view::LogOptions;
use crate::engine::filters::Filters;
use crate::engine::swarm::state::TaskState;
use crate::engine::swarm::{services, tasks};
use crate::engine::{Engine, EngineError};

/// A service's network: a swarm-scoped one, by name or id.
fn network_resolver(engine: &Engine) -> impl Fn(&str) -> Result<String, EngineError> + '_ {
    move |key: &str| {
        let net = engine.networks.find(key).ok_or_else(|| EngineError::NotFound(format!("network {key} not found")))?;
        if net.driver != crate::engine::networks::Driver::Overlay {
            return Err(EngineError::InvalidArgument(format!(
                "network {} is a local network: services join swarm-scoped networks (docker network create --driver overlay)",
                net.name
            )));
        }
        Ok(net.id)
    }
}

/// A service's id and name.
fn service_name(engine: &Engine, key: &str) -> Result<(String, String), EngineError> {
    engine.swarm.read(|c| {
        services::find(c, key).map(|s| (s.meta.id.clone(), s.spec["Name"].as_str().unwrap_or("").to_string()))
    })?
}

/// `GET /services?filters=&status=`.
pub async fn list(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let f = Filters::parse(p.get("filters"), &["id", "label", "mode", "name"])?;
    let status = p.bool("status");
    let out = engine.swarm.read(|c| {
        c.services
            .values()
            .filter(|s| services::matches(s, &f))
            .map(|s| services::to_json(c, s, false, status))
            .collect::<Vec<_>>()
    })?;
    Ok(Json(out).into_response())
}

/// `POST /services/create`.
pub async fn create(State(engine): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let spec = object_body(&body)?;
    let id = engine.swarm.create_service(&spec, &network_resolver(&engine))?;
    engine.events.swarm(EventMessageTypeEnum::SERVICE, "create", &id, spec["Name"].as_str().unwrap_or(""));
    Ok((StatusCode::CREATED, Json(json!({"ID": id}))).into_response())
}

/// `GET /services/{id}?insertDefaults=`.
pub async fn inspect(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let defaults = p.bool("insertDefaults");
    let out = engine.swarm.read(|c| services::find(c, &id).map(|s| services::to_json(c, s, defaults, false)))??;
    Ok(Json(out).into_response())
}

/// `POST /services/{id}/update?version=&rollback=`.
pub async fn update(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let rollback = p.get("rollback") == Some("previous");
    let spec = object_body(&body)?;
    let given = spec.as_object().is_some_and(|m| !m.is_empty()).then_some(&spec);
    engine.swarm.update_service(&id, version(&p)?, given, rollback, &network_resolver(&engine))?;
    if let Ok((sid, name)) = service_name(&engine, &id) {
        engine.events.swarm(EventMessageTypeEnum::SERVICE, "update", &sid, &name);
    }
    Ok(Json(json!({"Warnings": []})).into_response())
}

/// `DELETE /services/{id}`: its tasks' containers go with it.
pub async fn remove(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let (sid, name) = service_name(&engine, &id)?;
    let containers = engine.swarm.remove_service(&sid)?;
    engine.events.swarm(EventMessageTypeEnum::SERVICE, "remove", &sid, &name);
    for cid in containers {
        if let Ok(c) = engine.containers.get(&cid) {
            if let Err(e) = crate::engine::containers::remove(&engine, &c, true, false).await {
                tracing::warn!(container.id = %cid, error = %e, "removing a removed service's task");
            }
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// `GET /tasks?filters=`.
pub async fn list_tasks(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let f =
        Filters::parse(p.get("filters"), &["id", "label", "name", "node", "service", "desired-state", "_up-to-date"])?;
    let out = engine.swarm.read(|c| {
        c.tasks.values().filter(|t| tasks::matches(c, t, &f)).map(|t| tasks::to_json(c, t)).collect::<Vec<_>>()
    })?;
    Ok(Json(out).into_response())
}

/// `GET /tasks/{id}`.
pub async fn inspect_task(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let out = engine.swarm.read(|c| tasks::find(c, &id).map(|t| tasks::to_json(c, t)))??;
    Ok(Json(out).into_response())
}

/// Which tasks' logs a request reads: all of a service's (now and, with `follow`, later ones)
/// or one task's.
#[derive(Debug, Clone)]
enum Source {
    Service(String),
    Task(String),
}

/// The tasks of `source` (oldest first), the node id, and whether they have a terminal.
fn tasks_of(engine: &Engine, source: &Source) -> Result<(Vec<TaskState>, String, bool), EngineError> {
    engine.swarm.read(|c| match source {
        Source::Service(key) => services::find(c, key).map(|s| {
            let mut ts: Vec<TaskState> = c.tasks.values().filter(|t| t.service_id == s.meta.id).cloned().collect();
            ts.sort_by_key(|t| t.meta.version);
            let tty = s.spec["TaskTemplate"]["ContainerSpec"]["TTY"].as_bool().unwrap_or(false);
            (ts, c.node.meta.id.clone(), tty)
        }),
        Source::Task(key) => tasks::find(c, key).map(|t| {
            let tty = t.spec["ContainerSpec"]["TTY"].as_bool().unwrap_or(false);
            (vec![t.clone()], c.node.meta.id.clone(), tty)
        }),
    })?
}

/// `GET /services/{id}/logs`: the logs of all its tasks' containers, oldest first.
pub async fn service_logs(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    logs_of(&engine, Source::Service(id), &p)
}

/// `GET /tasks/{id}/logs`.
pub async fn task_logs(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    logs_of(&engine, Source::Task(id), &p)
}

/// How one task's lines go out: with `details`, each starts with the node, service and task it
/// came from (the docker CLI reads them to name the task); framed unless the task has a terminal.
#[derive(Debug, Clone)]
struct Encoder {
    opts: LogOptions,
    prefix: Option<String>,
    tty: bool,
}

impl Encoder {
    fn new(opts: &LogOptions, details: bool, tty: bool, node_id: &str, t: &TaskState) -> Self {
        let prefix = details.then(|| {
            format!(
                "com.docker.swarm.node.id={node_id},com.docker.swarm.service.id={},com.docker.swarm.task.id={} ",
                t.service_id, t.meta.id
            )
        });
        Self { opts: opts.clone(), prefix, tty }
    }

    fn encode(&self, ch: &Chunk) -> Option<Bytes> {
        if !self.opts.wants(ch) {
            return None;
        }
        let mut data = self.prefix.clone().map(String::into_bytes).unwrap_or_default();
        data.extend_from_slice(&self.opts.render(ch));
        Some(if self.tty { Bytes::from(data) } else { frame(ch.stream, &data) })
    }
}

/// The stored logs of the tasks' containers merged by time, then (with `follow`) their live
/// output and that of tasks started later, until the client goes or the service does.
fn logs_of(engine: &Arc<Engine>, source: Source, p: &Params) -> ApiResult<Response> {
    let opts = super::containers::log_options(p);
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let (details, follow) = (p.bool("details"), p.bool("follow"));
    let (tasks, node_id, tty) = tasks_of(engine, &source)?;
    let mut past: Vec<(String, Bytes)> = Vec::new();
    let mut live = Vec::new();
    let mut followed = std::collections::HashSet::new();
    for t in &tasks {
        let Some(c) = t.container_id.as_ref().and_then(|cid| engine.containers.get(cid).ok()) else { continue };
        let enc = Encoder::new(&opts, details, tty, &node_id, t);
        let chunks = match (follow, c.io()) {
            (true, Some(hub)) => {
                let (chunks, rx) = hub.snapshot();
                followed.insert(c.id.clone());
                live.push((hub, rx, enc.clone()));
                chunks
            }
            _ => read_log(&c.log_path()),
        };
        past.extend(opts.select(chunks).iter().filter_map(|ch| enc.encode(ch).map(|b| (ch.time.clone(), b))));
    }
    past.sort_by(|a, b| a.0.cmp(&b.0));
    let content_type =
        if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    let header = [(axum::http::header::CONTENT_TYPE, content_type)];
    if !follow {
        let body: Vec<u8> = past.into_iter().flat_map(|(_, b)| b.to_vec()).collect();
        return Ok((header, Body::from(body)).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(256);
    let engine = engine.clone();
    tokio::spawn(async move {
        for (_, b) in past {
            if tx.send(Ok(b)).await.is_err() {
                return;
            }
        }
        let mut forwarders = tokio::task::JoinSet::new();
        let follow_one = |set: &mut tokio::task::JoinSet<()>,
                          hub: Arc<crate::engine::containers::io::IoHub>,
                          mut rx,
                          enc: Encoder| {
            let tx = tx.clone();
            set.spawn(async move {
                super::live_output::forward_live(&hub, &mut rx, |ch| enc.encode(ch), &tx).await;
            });
        };
        for (hub, rx, enc) in live {
            follow_one(&mut forwarders, hub, rx, enc);
        }
        // Tasks started later (restarts, scaling, updates) join the stream.
        while !tx.is_closed() {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let Ok((tasks, node_id, tty)) = tasks_of(&engine, &source) else { return };
            for t in &tasks {
                let Some(c) = t.container_id.as_ref().and_then(|cid| engine.containers.get(cid).ok()) else { continue };
                let Some(hub) = c.io() else { continue };
                if !followed.insert(c.id.clone()) {
                    continue;
                }
                let enc = Encoder::new(&opts, details, tty, &node_id, t);
                let (early, rx) = hub.from_start();
                for ch in early {
                    if let Some(b) = enc.encode(&ch) {
                        if tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                }
                follow_one(&mut forwarders, hub, rx, enc);
            }
            while forwarders.try_join_next().is_some() {}
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    Ok((header, Body::from_stream(stream)).into_response())
}
