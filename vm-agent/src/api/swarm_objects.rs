//! Secret and config endpoints: thin handlers over `engine::swarm::objects`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
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
    let id = engine.swarm.create_object(kind_of(uri.path()), object_body(&body)?)?;
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
    engine.swarm.update_object(kind_of(uri.path()), &id, version(&p)?, object_body(&body)?)?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /secrets/{id}`.
pub async fn remove(
    State(engine): State<Arc<Engine>>,
    uri: axum::http::Uri,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    engine.swarm.remove_object(kind_of(uri.path()), &id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
