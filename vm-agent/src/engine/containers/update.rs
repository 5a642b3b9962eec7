//! `POST /containers/{id}/update`.

use std::sync::Arc;

use super::host_config::{limits_of, unenforceable, validate_host_config};
use super::{event, Container};
use crate::engine::{Engine, EngineError};

/// `POST /containers/{id}/update`: new limits (applied at once if it runs) and restart policy.
pub fn update(
    engine: &Engine,
    c: &Arc<Container>,
    req: &bollard_stubs::models::ContainerUpdateBody,
) -> Result<Vec<String>, EngineError> {
    let mut host = c.record().host_config;
    if let Some(v) = req.memory {
        host.memory = Some(v);
    }
    if let Some(v) = req.memory_swap {
        host.memory_swap = Some(v);
    }
    if let Some(v) = req.nano_cpus {
        host.nano_cpus = Some(v);
    }
    if let Some(v) = req.cpu_shares {
        host.cpu_shares = Some(v);
    }
    if let Some(v) = &req.cpuset_cpus {
        host.cpuset_cpus = Some(v.clone());
    }
    if let Some(v) = req.pids_limit {
        host.pids_limit = Some(v);
    }
    if let Some(v) = &req.restart_policy {
        host.restart_policy = Some(v.clone());
    }
    validate_host_config(&host)?;
    let mut warnings = unenforceable(&engine.cgroups, &limits_of(&host));
    if c.is_running() {
        warnings.extend(
            c.cgroup(engine)
                .update(&limits_of(&host))
                .map_err(|e| EngineError::InvalidArgument(format!("Cannot update container {}: {e}", c.id)))?,
        );
    }
    c.update(|r| r.host_config = host)?;
    event(engine, "update", &c.record(), &[]);
    Ok(warnings)
}
