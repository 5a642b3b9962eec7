//! The swarm's networks: `ingress` made at `swarm init`, subnets for overlay networks from the
//! swarm's address pools, and all of them removed when the engine leaves the swarm.

use std::sync::Arc;

use ipnet::Ipv4Net;

use crate::engine::networks::{CreateRequest, Driver, PoolRequest};
use crate::engine::{Engine, EngineError};

/// The first free subnet of the swarm's size in its address pools (`None`: all taken, or not
/// in a swarm; the engine's default pools serve then).
pub fn pick_subnet(engine: &Engine) -> Option<String> {
    let (pools, size) = engine.swarm.read(|c| (c.default_addr_pool.clone(), c.subnet_size)).ok()?;
    let size = u8::try_from(size).ok()?;
    let taken: Vec<Ipv4Net> = engine.networks.all().iter().filter_map(|r| r.ipam.as_ref().map(|i| i.subnet)).collect();
    pools
        .iter()
        .filter_map(|p| p.parse::<Ipv4Net>().ok())
        .filter_map(|p| p.subnets(size.max(p.prefix_len())).ok())
        .flatten()
        .find(|s| !taken.iter().any(|t| crate::net::ipam::overlaps(s, t)))
        .map(|s| s.to_string())
}

/// Creates the `ingress` network, as `swarm init` does.
pub async fn create_ingress(engine: &Arc<Engine>) -> Result<(), EngineError> {
    if engine.networks.find("ingress").is_some() {
        return Ok(());
    }
    let req = CreateRequest {
        name: "ingress".into(),
        driver: "overlay".into(),
        pools: vec![PoolRequest { subnet: pick_subnet(engine), ..Default::default() }],
        ingress: true,
        swarm: true,
        ..Default::default()
    };
    let rec = engine.networks.create(req).await?;
    crate::engine::events::network_event(engine, "create", &rec, None);
    Ok(())
}

/// Removes every swarm-scoped network (the engine left the swarm).
pub async fn remove_all(engine: &Arc<Engine>) {
    for rec in engine.networks.all().into_iter().filter(|r| r.driver == Driver::Overlay) {
        let e = engine.clone();
        match engine.networks.remove(&rec.id, |id| crate::engine::containers::network::running_users(&e, id)).await {
            Ok(r) => crate::engine::events::network_event(engine, "destroy", &r, None),
            Err(err) => tracing::warn!(network = %rec.name, error = %err, "removing a swarm network on leave"),
        }
    }
}
