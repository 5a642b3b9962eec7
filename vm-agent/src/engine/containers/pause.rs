//! `POST /containers/{id}/pause` and `/unpause`.

use std::sync::Arc;

use super::record::Status;
use super::{event, Container};
use crate::engine::{Engine, EngineError};

/// `POST /containers/{id}/pause` and `/unpause`.
pub async fn set_paused(engine: &Arc<Engine>, c: &Arc<Container>, paused: bool) -> Result<(), EngineError> {
    let rec = c.record();
    match (rec.state.status, paused) {
        (Status::Running, true) | (Status::Paused, false) => {}
        (Status::Paused, true) => return Err(EngineError::Conflict(format!("container {} is already paused", c.id))),
        (Status::Running, false) => return Err(EngineError::Conflict(format!("container {} is not paused", c.id))),
        _ => return Err(EngineError::Conflict(format!("container {} is not running", c.id))),
    }
    c.cgroup(engine).freeze(paused).map_err(|e| {
        // Its process exited meanwhile: the exit monitor is removing its cgroup.
        if crate::runtime::cgroup::is_gone(&e) {
            EngineError::Conflict(format!("container {} is not running", c.id))
        } else {
            EngineError::Internal(e.to_string())
        }
    })?;
    c.update(|r| r.state.status = if paused { Status::Paused } else { Status::Running })?;
    event(engine, if paused { "pause" } else { "unpause" }, &c.record(), &[]);
    Ok(())
}
