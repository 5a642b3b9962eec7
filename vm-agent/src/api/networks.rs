//! Network endpoints: thin handlers over `engine::networks` and `engine::containers::network`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bollard_stubs::models::EndpointSettings;
use serde::Deserialize;

use super::error::ApiResult;
use super::params::{json_body, Params};
use crate::engine::containers::network;
use crate::engine::filters::Filters;
use crate::engine::networks::{self, CreateRequest, NetworkRecord, PoolRequest};
use crate::engine::{Engine, EngineError};

/// `IPAM.Config[]` entries.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    auxiliary_addresses: Option<HashMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: Option<String>,
    config: Option<Vec<IpamConfig>>,
}

/// `POST /networks/create` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    internal: Option<bool>,
    attachable: Option<bool>,
    ingress: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    labels: Option<HashMap<String, String>>,
    options: Option<HashMap<String, String>>,
}

/// `POST /networks/{id}/connect` and `/disconnect` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: Option<String>,
    endpoint_config: Option<EndpointSettings>,
}

fn sorted(m: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    m.unwrap_or_default().into_iter().collect()
}

fn json_of(engine: &Engine, rec: &NetworkRecord) -> serde_json::Value {
    networks::to_json(rec, &network::members(engine, &rec.id))
}

/// `GET /networks`.
pub async fn list(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let filters = Filters::parse(p.get("filters"), &["name", "id", "driver", "label", "type", "scope", "dangling"])?;
    let dangling = filters.bool("dangling")?;
    let mut out: Vec<serde_json::Value> = Vec::new();
    let mut all = engine.networks.all();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    for rec in all {
        if !networks::matches(&rec, &filters) {
            continue;
        }
        if let Some(d) = dangling {
            if d != (!rec.builtin && !network::referenced(&engine, &rec.id)) {
                continue;
            }
        }
        out.push(json_of(&engine, &rec));
    }
    Ok(Json(out).into_response())
}

/// `GET /networks/{id}?scope=`: a network of another scope than the one asked for is not found.
pub async fn inspect(State(engine): State<Arc<Engine>>, Path(id): Path<String>, p: Params) -> ApiResult<Response> {
    let rec = engine.networks.get(&id)?;
    if p.get("scope").is_some_and(|s| !s.is_empty() && s != rec.driver.scope()) {
        return Err(EngineError::NotFound(format!("network {id} not found")).into());
    }
    Ok(Json(json_of(&engine, &rec)).into_response())
}

/// `POST /networks/create`.
pub async fn create(State(engine): State<Arc<Engine>>, body: Bytes) -> ApiResult<Response> {
    let b: CreateBody = json_body(&body)?;
    let name = b
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| EngineError::InvalidArgument("network name is required".into()))?;
    let ipam = b.ipam.unwrap_or_default();
    if ipam.driver.as_deref().is_some_and(|d| !d.is_empty() && d != "default") {
        return Err(EngineError::NotFound(format!("plugin \"{}\" not found", ipam.driver.unwrap_or_default())).into());
    }
    let pools: Vec<PoolRequest> = ipam
        .config
        .unwrap_or_default()
        .into_iter()
        .map(|c| PoolRequest {
            subnet: c.subnet.filter(|s| !s.is_empty()),
            gateway: c.gateway.filter(|s| !s.is_empty()),
            ip_range: c.ip_range.filter(|s| !s.is_empty()),
            aux_addresses: sorted(c.auxiliary_addresses),
        })
        .collect();
    let mut pools: Vec<PoolRequest> = pools;
    // Overlay networks take their subnets from the swarm's pools, as in dockerd.
    if b.driver.as_deref() == Some("overlay")
        && !pools.iter().any(|p| p.subnet.as_deref().is_some_and(|s| !s.contains(':')))
    {
        if let Some(subnet) = crate::engine::swarm::networks::pick_subnet(&engine) {
            match pools.iter_mut().find(|p| p.subnet.is_none() && p.gateway.is_none() && p.ip_range.is_none()) {
                Some(p) => p.subnet = Some(subnet),
                None => pools.push(PoolRequest { subnet: Some(subnet), ..Default::default() }),
            }
        }
    }
    let req = CreateRequest {
        name,
        driver: b.driver.unwrap_or_default(),
        pools,
        internal: b.internal.unwrap_or(false),
        attachable: b.attachable.unwrap_or(false),
        ingress: b.ingress.unwrap_or(false),
        swarm: engine.swarm.active(),
        enable_ipv6: b.enable_ipv6.unwrap_or(false),
        labels: sorted(b.labels),
        options: sorted(b.options),
    };
    let rec = engine.networks.create(req).await?;
    crate::engine::events::network_event(&engine, "create", &rec, None);
    Ok((StatusCode::CREATED, Json(serde_json::json!({"Id": rec.id, "Warning": ""}))).into_response())
}

/// `DELETE /networks/{id}`.
pub async fn remove(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> ApiResult<Response> {
    let e = engine.clone();
    let rec = engine.networks.remove(&id, |nid| network::running_users(&e, nid)).await?;
    crate::engine::events::network_event(&engine, "destroy", &rec, None);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /networks/prune`: user-defined networks no container names.
pub async fn prune(State(engine): State<Arc<Engine>>, p: Params) -> ApiResult<Response> {
    let filters = Filters::parse(p.get("filters"), &["label", "until"])?;
    let until = filters.get("until").first().and_then(|u| crate::engine::containers::view::parse_time(u));
    let mut removed = Vec::new();
    for rec in engine.networks.all() {
        let labels: HashMap<String, String> = rec.labels.clone().into_iter().collect();
        let old_enough = crate::engine::filters::created_before(&rec.created, until);
        if rec.builtin
            || !old_enough
            || !filters.labels_match("label", Some(&labels))
            || network::referenced(&engine, &rec.id)
        {
            continue;
        }
        let e = engine.clone();
        if let Ok(r) = engine.networks.remove(&rec.id, |nid| network::running_users(&e, nid)).await {
            crate::engine::events::network_event(&engine, "destroy", &r, None);
            removed.push(r.name);
        }
    }
    Ok(Json(serde_json::json!({ "NetworksDeleted": removed })).into_response())
}

/// `POST /networks/{id}/connect`.
pub async fn connect(State(engine): State<Arc<Engine>>, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let b: ConnectBody = json_body(&body)?;
    let container = b.container.ok_or_else(|| EngineError::InvalidArgument("Container is required".into()))?;
    network::connect(&engine, &id, &container, b.endpoint_config.unwrap_or_default()).await?;
    if let (Ok(rec), Ok(c)) = (engine.networks.get(&id), engine.containers.get(&container)) {
        crate::engine::events::network_event(&engine, "connect", &rec, Some(&c.id));
    }
    Ok(StatusCode::OK.into_response())
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(State(engine): State<Arc<Engine>>, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let b: ConnectBody = json_body(&body)?;
    let container = b.container.ok_or_else(|| EngineError::InvalidArgument("Container is required".into()))?;
    network::disconnect(&engine, &id, &container).await?;
    if let (Ok(rec), Ok(c)) = (engine.networks.get(&id), engine.containers.get(&container)) {
        crate::engine::events::network_event(&engine, "disconnect", &rec, Some(&c.id));
    }
    Ok(StatusCode::OK.into_response())
}
