//! `POST /containers/prune`.

use std::sync::Arc;

use super::record::Status;
use super::{archive, remove, view};
use crate::engine::{blocking, Engine, EngineError};

/// `POST /containers/prune`: removes stopped containers (filters `label`, `label!`, `until`);
/// returns their ids and the bytes their writable layers held.
pub async fn prune(
    engine: &Arc<Engine>,
    filters: &crate::engine::filters::Filters,
) -> Result<(Vec<String>, u64), EngineError> {
    let until = match filters.get("until").first() {
        Some(u) => Some(
            view::parse_time(u).ok_or_else(|| EngineError::InvalidArgument(format!("invalid until filter: {u}")))?,
        ),
        None => None,
    };
    let mut deleted = Vec::new();
    let mut reclaimed = 0u64;
    for c in engine.containers.all() {
        let rec = c.record();
        if c.is_running() || matches!(rec.state.status, Status::Restarting | Status::Paused) {
            continue;
        }
        let old_enough = crate::engine::filters::created_before(&rec.created, until);
        if !old_enough
            || !filters.labels_match("label", rec.config.labels.as_ref())
            || (!filters.get("label!").is_empty() && filters.labels_match("label!", rec.config.labels.as_ref()))
        {
            continue;
        }
        let dir = engine.containers.dir_of(&c.id);
        let size = blocking(move || Ok(archive::upper_size(&dir))).await?;
        match remove(engine, &c, false, false).await {
            Ok(()) => {
                deleted.push(c.id.clone());
                reclaimed += u64::try_from(size).unwrap_or(0);
            }
            // Started or removed meanwhile: not ours to prune.
            Err(EngineError::Conflict(_) | EngineError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((deleted, reclaimed))
}
