//! Swarm and node endpoints: thin handlers over `engine::swarm`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::params::{json_body, Params};
use crate::engine::filters::Filters;
use crate::engine::swarm::{nodes, InitRequest, Rotate};
use crate::engine::{Engine, EngineError};

/// `?version=`, which every swarm update needs.
pub(crate) fn version(p: &Params) -> Result<u64, ApiError> {
    p.int::<u64>("version")?.ok_or_else(|| ApiError::bad_request("invalid swarm version: a version is required"))
}

/// A JSON object body (`{}` when empty).
pub(crate) fn object_body(body: &Bytes) -> Result<Value, ApiError> {
    let v: Value = json_body(body)?;
    match v {
        Value::Null => Ok(json!({})),
        Value::Object(_) => Ok(v),
        _ => Err(ApiError::bad_request("the request body must be a JSON object")),
    }
}

/// `GET /swarm`.
pub async fn inspect(State(engine): State<Arc<Engine>>) -> ApiResult<Response> {
    Ok(Json(engine.swarm.inspect()?).into_response())
}

/// `POST /swarm/init`: also creates the `ingress` network, as dockerd does.
pub async fn init(State(engine): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let req: InitRequest = json_body(&body)?;
    let node = engine.swarm.init(req)?;
    if let Err(e) = crate::engine::swarm::networks::create_ingress(&engine).await {
        tracing::warn!(error = %e, "creating the ingress network");
    }
    crate::engine::swarm::tasks::start(&engine);
    Ok(Json(json!(node)).into_response())
}

/// `POST /swarm/join`: a one-node swarm has nobody to join.
pub async fn join(State(engine): State<Arc<Engine>>) -> ApiResult<Response> {
    if engine.swarm.active() {
        return Err(EngineError::Unavailable(
            "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."
                .into(),
        )
        .into());
    }
    Err(ApiError {
        status: StatusCode::NOT_IMPLEMENTED,
        message: "Skiff runs a one-node swarm: joining a swarm of other machines is not supported (use \"docker swarm init\")".into(),
    })
}

/// `POST /swarm/leave?force=`: stops and removes every task's container and the swarm's networks.
pub async fn leave(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let cluster = engine.swarm.leave(p.bool("force"))?;
    for cid in cluster.tasks.values().filter_map(|t| t.container_id.clone()) {
        if let Ok(c) = engine.containers.get(&cid) {
            if let Err(e) = crate::engine::containers::remove(&engine, &c, true, false).await {
                tracing::warn!(container.id = %cid, error = %e, "removing a task's container on leave");
            }
        }
    }
    crate::engine::swarm::networks::remove_all(&engine).await;
    Ok(StatusCode::OK.into_response())
}

/// `POST /swarm/update?version=&rotate…=`.
pub async fn update(State(engine): State<Arc<Engine>>, p: Params, body: Bytes) -> ApiResult<Response> {
    let spec = object_body(&body)?;
    let rotate = Rotate {
        worker_token: p.bool("rotateWorkerToken"),
        manager_token: p.bool("rotateManagerToken"),
        unlock_key: p.bool("rotateManagerUnlockKey"),
    };
    let given = spec.as_object().is_some_and(|m| !m.is_empty()).then_some(&spec);
    engine.swarm.update(version(&p)?, given, rotate)?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /swarm/unlockkey`.
pub async fn unlock_key(State(engine): State<Arc<Engine>>) -> ApiResult<Response> {
    Ok(Json(json!({"UnlockKey": engine.swarm.unlock_key()?})).into_response())
}

/// `POST /swarm/unlock`.
pub async fn unlock(State(engine): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let v = object_body(&body)?;
    engine.swarm.unlock(v["UnlockKey"].as_str().unwrap_or(""))?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /nodes`.
pub async fn list_nodes(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let f =
        Filters::parse(p.get("filters"), &["id", "label", "membership", "name", "node.label", "role", "availability"])?;
    let out = engine.swarm.read(|c| if nodes::matches(c, &f) { vec![nodes::to_json(c)] } else { Vec::new() })?;
    Ok(Json(out).into_response())
}

/// `GET /nodes/{id}`.
pub async fn inspect_node(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let out = engine.swarm.read(|c| nodes::check_key(c, &id).map(|()| nodes::to_json(c)))??;
    Ok(Json(out).into_response())
}

/// `POST /nodes/{id}/update?version=`.
pub async fn update_node(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    engine.swarm.update_node(&id, version(&p)?, object_body(&body)?)?;
    if let Ok((nid, name)) =
        engine.swarm.read(|c| (c.node.meta.id.clone(), c.node.spec["Name"].as_str().unwrap_or("").to_string()))
    {
        engine.events.swarm(bollard_stubs::models::EventMessageTypeEnum::NODE, "update", &nid, &name);
    }
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /nodes/{id}`.
pub async fn remove_node(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    engine.swarm.remove_node(&id)?;
    Ok(StatusCode::OK.into_response())
}
