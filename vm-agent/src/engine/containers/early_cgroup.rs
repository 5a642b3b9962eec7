//! A container's cgroups, made right after `create` while the client gets ready to start it:
//! `docker run` attaches and asks to wait in between (3–4 ms of its own), and making the cgroups
//! takes about 1 ms on a host with a v1 hierarchy per controller. The start takes them when they
//! were made with the limits it needs, and otherwise makes them as it always did.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::{host_config, Container};
use crate::engine::Engine;
use crate::runtime::cgroup::Limits;

/// What `Cgroup::create` returns: warnings, and the files the runtime child joins.
type Made = std::io::Result<(Vec<String>, Vec<String>)>;

/// Cgroups being made, or made, ahead of a start.
#[derive(Debug)]
pub(crate) struct EarlyCgroup {
    limits: Limits,
    made: JoinHandle<Made>,
}

/// Starts making `c`'s cgroups in the background.
pub(crate) fn prepare(engine: &Arc<Engine>, c: &Container) {
    let limits = c.with_record(|r| host_config::limits_of(&r.host_config));
    let cg = c.cgroup(engine);
    let wanted = limits.clone();
    let made = tokio::task::spawn_blocking(move || cg.create(&wanted));
    *c.early_cgroup.lock().unwrap_or_else(|p| p.into_inner()) = Some(EarlyCgroup { limits, made });
}

/// The start's cgroups, when they were made ahead with `limits` (waiting for them if they are
/// still being made). `None` when none were, or they were made with other limits (`docker
/// update` in between) or could not be made: what was made is removed, and the start makes them.
pub(crate) async fn take(engine: &Arc<Engine>, c: &Container, limits: &Limits) -> Option<(Vec<String>, Vec<String>)> {
    let early = c.early_cgroup.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    let made = early.made.await.ok();
    match made {
        Some(Ok(made)) if early.limits == *limits => Some(made),
        _ => {
            let cg = c.cgroup(engine);
            let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
            None
        }
    }
}

/// For a removal: the cgroups being made ahead, if any, so that removing them waits for them.
pub(crate) fn abandon(c: &Container) -> Option<JoinHandle<Made>> {
    c.early_cgroup.lock().unwrap_or_else(|p| p.into_inner()).take().map(|e| e.made)
}
