//! Volume endpoints: thin handlers over `engine::volumes`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::ApiResult;
use super::params::{json_body, Params};
use crate::engine::containers::volume_users;
use crate::engine::filters::Filters;
use crate::engine::{volumes, Engine};

/// `POST /volumes/create` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<HashMap<String, String>>,
    labels: Option<HashMap<String, String>>,
}

fn sorted(m: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    m.unwrap_or_default().into_iter().collect()
}

/// `GET /volumes`.
pub async fn list(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let filters = Filters::parse(p.get("filters"), &["name", "label", "driver", "dangling"])?;
    let found = volumes::list(&engine, &filters, &|n| volume_users(&engine, n))?;
    let listed: Vec<serde_json::Value> = found.iter().map(|v| volumes::to_json(&engine, v, None)).collect();
    Ok(Json(serde_json::json!({ "Volumes": listed, "Warnings": [] })).into_response())
}

/// `POST /volumes/create`.
pub async fn create(State(engine): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let b: CreateBody = json_body(&body)?;
    let rec = engine.volumes.create(b.name.as_deref(), b.driver.as_deref(), sorted(b.labels), sorted(b.driver_opts))?;
    crate::engine::events::volume_event(&engine, "create", &rec.name);
    Ok((StatusCode::CREATED, Json(volumes::to_json(&engine, &rec, None))).into_response())
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(engine): State<Arc<Engine>>, Path(name): Path<String>) -> ApiResult<Response> {
    let rec = engine.volumes.get(&name)?;
    Ok(Json(volumes::to_json(&engine, &rec, None)).into_response())
}

/// `DELETE /volumes/{name}`.
pub async fn remove(State(engine): State<Arc<Engine>>, Path(name): Path<String>, p: Params) -> ApiResult<Response> {
    let force = p.bool("force");
    crate::engine::blocking(move || volumes::remove(&engine, &name, force, &|n| volume_users(&engine, n))).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /volumes/prune`.
pub async fn prune(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let filters = Filters::parse(p.get("filters"), &["label", "all"])?;
    let (removed, freed) =
        crate::engine::blocking(move || volumes::prune(&engine, &filters, &|n| volume_users(&engine, n))).await?;
    Ok(Json(serde_json::json!({ "VolumesDeleted": removed, "SpaceReclaimed": freed })).into_response())
}
