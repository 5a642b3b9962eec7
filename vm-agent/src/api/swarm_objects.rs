//! Secret and config endpoints: thin handlers over `engine::swarm::objects`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models::EventMessageTypeEnum;
use serde_json::json;

use super::error::ApiResult;
use super::params::Params;
use super::swarm::{object_body, version};
use crate::engine::filters::Filters;
use crate::engine::swarm::objects::{self, Kind};
use crate::engine::Engine;

fn kind_of(path: &str) -> Kind {
    if path.starts_with("/configs") {
        Kind::Config
    } else {
        Kind::Secret
    }
}

fn event_type(kind: Kind) -> EventMessageTypeEnum {
    if kind == Kind::Secret {
        EventMessageTypeEnum::SECRET
    } else {
        EventMessageTypeEnum::CONFIG
    }
}

/// An object's id and name.
fn id_and_name(engine: &Engine, kind: Kind, key: &str) -> Result<(String, String), crate::engine::EngineError> {
    engine.swarm.read(|c| {
        objects::find(c, kind, key).map(|o| (o.meta.id.clone(), o.spec["Name"].as_str().unwrap_or("").to_string()))
    })?
}

/// `GET /secrets`, `GET /configs`.
pub async fn list(State(engine): State<Arc<Engine>>, uri: axum::http::Uri, p: Params) -> ApiResult<Response> {
    let kind = kind_of(uri.path());
    let f = Filters::parse(p.get("filters"), &["id", "label", "name", "names"])?;
    let out = engine.swarm.read(|c| {
        let map = if kind == Kind::Secret { &c.secrets } else { &c.configs };
        map.values().filter(|o| objects::matches(o, &f)).map(|o| objects::to_json(kind, o)).collect::<Vec<_>>()
    })?;
    Ok(Json(out).into_response())
}

/// `POST /secrets/create`, `POST /configs/create`.
pub async fn create(State(engine): State<Arc<Engine>>, uri: axum::http::Uri, body: Bytes) -> ApiResult<Response> {
    let kind = kind_of(uri.path());
    let spec = object_body(&body)?;
    let id = engine.swarm.create_object(kind, spec.clone())?;
    engine.events.swarm(event_type(kind), "create", &id, spec["Name"].as_str().unwrap_or(""));
    Ok((StatusCode::CREATED, Json(json!({"ID": id}))).into_response())
}

/// `GET /secrets/{id}`, `GET /configs/{id}`.
pub async fn inspect(
    State(engine): State<Arc<Engine>>,
    uri: axum::http::Uri,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let kind = kind_of(uri.path());
    let out = engine.swarm.read(|c| objects::find(c, kind, &id).map(|o| objects::to_json(kind, o)))??;
    Ok(Json(out).into_response())
}

/// `POST /secrets/{id}/update?version=`.
pub async fn update(
    State(engine): State<Arc<Engine>>,
    uri: axum::http::Uri,
    Path(id): Path<String>,
    p: Params,
    body: Bytes,
) -> ApiResult<Response> {
    let kind = kind_of(uri.path());
    engine.swarm.update_object(kind, &id, version(&p)?, object_body(&body)?)?;
    if let Ok((oid, name)) = id_and_name(&engine, kind, &id) {
        engine.events.swarm(event_type(kind), "update", &oid, &name);
    }
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /secrets/{id}`.
pub async fn remove(
    State(engine): State<Arc<Engine>>,
    uri: axum::http::Uri,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let kind = kind_of(uri.path());
    let (oid, name) = id_and_name(&engine, kind, &id)?;
    engine.swarm.remove_object(kind, &oid)?;
    engine.events.swarm(event_type(kind), "remove", &oid, &name);
    Ok(StatusCode::NO_CONTENT.into_response())
}
