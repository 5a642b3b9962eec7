//! Service and task endpoints: thin handlers over `engine::swarm`, and service/task logs
//! gathered from the tasks' containers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::{ApiError, ApiResult};
use super::params::Params;
use super::swarm::{object_body, version};
use crate::engine::containers::io::{frame, read_log};
use crate::engine::filters::Filters;
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
    Ok(Json(json!({"Warnings": []})).into_response())
}

/// `DELETE /services/{id}`: its tasks' containers go with it.
pub async fn remove(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let containers = engine.swarm.remove_service(&id)?;
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

/// `GET /services/{id}/logs`: the logs of all its tasks' containers, oldest first.
pub async fn service_logs(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let picked = engine.swarm.read(|c| {
        services::find(c, &id).map(|s| {
            let mut ts: Vec<_> = c.tasks.values().filter(|t| t.service_id == s.meta.id).cloned().collect();
            ts.sort_by_key(|t| t.meta.version);
            let tty = s.spec["TaskTemplate"]["ContainerSpec"]["TTY"].as_bool().unwrap_or(false);
            (ts, c.node.meta.id.clone(), tty)
        })
    })??;
    logs_of(&engine, picked, &p)
}

/// `GET /tasks/{id}/logs`.
pub async fn task_logs(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let picked = engine.swarm.read(|c| {
        tasks::find(c, &id).map(|t| {
            let tty = t.spec["ContainerSpec"]["TTY"].as_bool().unwrap_or(false);
            (vec![t.clone()], c.node.meta.id.clone(), tty)
        })
    })??;
    logs_of(&engine, picked, &p)
}

/// The stored logs of `tasks`' containers, merged by time; with `details`, each line starts
/// with the node, service and task it came from (the docker CLI reads them to name the task).
fn logs_of(
    engine: &Engine,
    (tasks, node_id, tty): (Vec<crate::engine::swarm::state::TaskState>, String, bool),
    p: &Params,
) -> ApiResult<Response> {
    let opts = super::containers::log_options(p);
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let details = p.bool("details");
    let mut lines: Vec<(String, u8, Bytes)> = Vec::new();
    for t in &tasks {
        let Some(c) = t.container_id.as_ref().and_then(|cid| engine.containers.get(cid).ok()) else { continue };
        let prefix = details.then(|| {
            format!(
                "com.docker.swarm.node.id={node_id},com.docker.swarm.service.id={},com.docker.swarm.task.id={} ",
                t.service_id, t.meta.id
            )
        });
        for ch in opts.select(read_log(&c.log_path())) {
            let mut data = prefix.clone().map(String::into_bytes).unwrap_or_default();
            data.extend_from_slice(&opts.render(&ch));
            lines.push((ch.time.clone(), ch.stream, Bytes::from(data)));
        }
    }
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<u8> = Vec::new();
    for (_, stream, data) in lines {
        if tty {
            out.extend_from_slice(&data);
        } else {
            out.extend_from_slice(&frame(stream, &data));
        }
    }
    let content_type =
        if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    Ok(([(axum::http::header::CONTENT_TYPE, content_type)], Body::from(out)).into_response())
}
