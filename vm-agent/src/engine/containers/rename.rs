//! `POST /containers/{id}/rename`.

use std::sync::Arc;

use super::{event, names, Container};
use crate::engine::{Engine, EngineError};

/// `POST /containers/{id}/rename`.
pub fn rename(engine: &Engine, c: &Arc<Container>, new_name: &str) -> Result<(), EngineError> {
    let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
    if !names::valid(new_name) {
        return Err(EngineError::InvalidArgument(format!(
            "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let map = engine.containers.map.write().unwrap_or_else(|p| p.into_inner());
    if let Some(other) = map.values().find(|o| o.record().name == new_name && o.id != c.id) {
        return Err(EngineError::Conflict(format!("Conflict. The container name \"/{new_name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", other.id)));
    }
    let old = c.record().name;
    c.update(|r| r.name = new_name.to_string())?;
    drop(map);
    event(engine, "rename", &c.record(), &[("oldName", format!("/{old}"))]);
    Ok(())
}
